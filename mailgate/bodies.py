"""Body stage of parsing: the text a person wrote, out of the decoded body parts.

HTML becomes readable text (for HTML-only mail) or sanitised HTML (nh3), and
a reply is cut down to its new part: quoted history, the reply header and the
signature removed (mail-parser-reply finds the latest fragment).
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

REPLY_LANGUAGES = ("en", "de", "fr", "es", "it", "nl", "sv", "da", "pl", "cs", "ja", "ko", "zh")
_SPACES = re.compile(r"[ \t\r\n\f]+")
_SIG_DELIMITER = re.compile(r"^-- ?$", re.MULTILINE)
_DEVICE_LINE = re.compile(r"^(?:Sent from my |Get Outlook for |Envoyé de mon |Von meinem ).*$")


class _TextExtractor(HTMLParser):
    """Readable text of an HTML document: blocks become lines, scripts vanish."""

    _SKIP = frozenset({"script", "style", "head", "title"})
    _BLOCK = frozenset(
        {"p", "div", "br", "tr", "li", "table", "hr", "blockquote", "pre", "ul", "ol", "dt", "dd"}
        | {"h1", "h2", "h3", "h4", "h5", "h6", "section", "article", "header", "footer", "center"}
    )

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.chunks: list[str] = []
        self.skipping = 0
        self.preformatted = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "body":
            self.skipping = 0  # a <head> or <title> left open ends here
        self.skipping += tag in self._SKIP
        self.preformatted += tag == "pre"
        if tag in self._BLOCK:
            self.chunks.append("\n")

    def handle_endtag(self, tag: str) -> None:
        self.skipping -= tag in self._SKIP and self.skipping > 0
        self.preformatted -= tag == "pre" and self.preformatted > 0
        if tag in self._BLOCK:
            self.chunks.append("\n")

    def handle_data(self, data: str) -> None:
        """Line breaks in the source are spaces, as a browser shows them, except in <pre>."""
        if not self.skipping:
            self.chunks.append(data if self.preformatted else _SPACES.sub(" ", data))


def html_to_text(markup: str) -> str:
    """HTML converted to plain text with one blank-free line per block."""
    parser = _TextExtractor()
    parser.feed(markup)
    parser.close()
    lines = (" ".join(line.split()) for line in "".join(parser.chunks).splitlines())
    return "\n".join(line for line in lines if line)  # entities: decoded once, by the parser


def sanitise_html(markup: str) -> str:
    """HTML safe to show: nh3's allow-list, plus `cid:` links to inline parts."""
    import nh3  # imported on use, like the other optional helpers

    return nh3.clean(markup, url_schemes=nh3.ALLOWED_URL_SCHEMES | {"cid"})


def reply_text(text: str) -> str:
    """The new part of a reply: quoted history, reply header and signature removed.

    Top posts keep what precedes the reply header; bottom posts keep the lines
    that are not quoted. Falls back to the whole text when nothing is left.
    """
    if not text.strip():
        return ""
    latest = _latest_reply(text) or _unquoted(text)
    lines = _strip_signature(latest).splitlines()
    while lines and (lines[-1].startswith(">") or not lines[-1].strip()):
        lines.pop()
    while lines and (lines[0].startswith(">") or not lines[0].strip()):
        lines.pop(0)
    if any(line.startswith(">") for line in lines):
        return text.strip()
    return "\n".join(lines).strip() or text.strip()


def _latest_reply(text: str) -> str:
    """mail-parser-reply's latest fragment, or "" when it is only a cut reply header."""
    from mailparser_reply.parser import EmailMessage  # 25 ms to import: only with text

    message = EmailMessage(text=text, languages=list(REPLY_LANGUAGES), keep_hyphen_lists=True)
    replies = message.read().replies
    latest = str(replies[0].full_body) if replies else ""
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    stub = first.startswith(latest) and first.endswith(":") and len(latest) <= len(first)
    return "" if stub else latest


def _unquoted(text: str) -> str:
    lines = [line for line in text.splitlines() if not line.lstrip().startswith(">")]
    first = next((i for i, line in enumerate(lines) if line.strip()), None)
    if first is not None and lines[first].rstrip().endswith(":"):
        del lines[first]
    return "\n".join(lines)


def _strip_signature(text: str) -> str:
    starts = [m.start() for m in _SIG_DELIMITER.finditer(text)]
    if starts and starts[-1] > 0:
        text = text[: starts[-1]]
    lines = text.rstrip().splitlines()
    while lines and _DEVICE_LINE.match(lines[-1].strip()):
        lines.pop()
    return "\n".join(lines)
