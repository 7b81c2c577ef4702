"""Rich text for mail: markdown to safe HTML, inbound HTML made safe, HTML made plain.

Admin replies are written in markdown and rendered for the HTML part of
notifications; inbound HTML-only mail is sanitised before it is shown and
flattened to text for the thread. Every HTML output passes one allow-list
(nh3): no scripts, no event or style attributes, links only to http, https
and mailto, images only from http, https and cid. markdown-it is imported on
first use because it is slow to import.
"""

from __future__ import annotations

import functools
import html
import re
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import nh3
    from markdown_it import MarkdownIt

_LINK_SCHEMES = frozenset({"http", "https", "mailto"})
_IMAGE_SCHEMES = frozenset({"http", "https", "cid"})
_MARKDOWN_TAGS = frozenset(
    {"p", "br", "strong", "em", "b", "i", "h1", "h2", "h3", "h4", "h5", "h6", "ul", "ol"}
    | {"li", "pre", "code", "blockquote", "a", "hr", "img"}
    | {"table", "thead", "tbody", "tr", "th", "td"}
)
_MARKDOWN_ATTRIBUTES = {"a": {"href", "title"}, "img": {"src", "alt", "title"}, "ol": {"start"}}
_MAIL_TAGS = _MARKDOWN_TAGS | frozenset(
    {"div", "span", "font", "u", "s", "strike", "sub", "sup", "small", "center", "caption", "tfoot"}
)
_MAIL_ATTRIBUTES = {
    **_MARKDOWN_ATTRIBUTES,
    "*": {"dir", "lang", "title"},
    "img": {"src", "alt", "title", "width", "height"},
    "table": {"border", "cellpadding", "cellspacing", "width", "align"},
    "td": {"colspan", "rowspan", "align", "valign", "width"},
    "th": {"colspan", "rowspan", "align", "valign", "width"},
    "font": {"color", "face", "size"},
}
_DROPPED_WITH_CONTENT = frozenset(
    {"script", "style", "title", "head", "iframe", "object", "embed", "template", "noscript"}
    | {"textarea", "select", "svg", "math", "frameset", "noembed", "xmp", "applet"}
)
_URL_JUNK = re.compile(r"[\x00-\x20\x7f]+")
_SCHEME = re.compile(r"([a-z][a-z0-9+.\-]*):")


def render_markdown(source: str) -> str:
    """HTML for markdown `source`; raw HTML in it is shown as text, never interpreted."""
    return _markdown_cleaner().clean(_markdown_parser().render(source))


def sanitise_html(html: str) -> str:
    """`html` from an inbound message, reduced to the allow-list (layout tags kept)."""
    return _mail_cleaner().clean(html)


def html_to_text(html: str) -> str:
    """Readable plain text of `html`: blocks on their own lines, links as `text (url)`."""
    parser = _TextParser()
    parser.feed(html)
    parser.close()
    return parser.text()


def url_scheme(url: str) -> str | None:
    """The lower-case scheme of `url` as a browser would read it, or None if relative."""
    match = _SCHEME.match(_URL_JUNK.sub("", url).lower())
    return match.group(1) if match else None


def _filter_attribute(tag: str, attribute: str, value: str) -> str | None:
    if attribute == "href":
        return value if url_scheme(value) in _LINK_SCHEMES else None
    if attribute == "src":
        return value if url_scheme(value) in _IMAGE_SCHEMES else None
    return value


def _cleaner(tags: frozenset[str], attributes: dict[str, set[str]]) -> nh3.Cleaner:
    import nh3

    return nh3.Cleaner(
        tags=set(tags),
        clean_content_tags=set(_DROPPED_WITH_CONTENT),
        attributes=attributes,
        attribute_filter=_filter_attribute,
        url_schemes=set(_LINK_SCHEMES | _IMAGE_SCHEMES),
        url_relative="deny",
        link_rel="noopener noreferrer",
    )


@functools.cache
def _markdown_cleaner() -> nh3.Cleaner:
    return _cleaner(_MARKDOWN_TAGS, _MARKDOWN_ATTRIBUTES)


@functools.cache
def _mail_cleaner() -> nh3.Cleaner:
    return _cleaner(_MAIL_TAGS, _MAIL_ATTRIBUTES)


@functools.cache
def _markdown_parser() -> MarkdownIt:
    from markdown_it import MarkdownIt

    # "breaks": a line break typed in a mail client is meant as one.
    return MarkdownIt("commonmark", {"html": False, "breaks": True}).enable("table")


_PARAGRAPH_TAGS = frozenset(
    {"p", "h1", "h2", "h3", "h4", "h5", "h6", "ul", "ol", "pre", "blockquote", "hr", "table"}
    | {"dl", "address", "center"}
)
_LINE_TAGS = frozenset(
    {"div", "li", "tr", "thead", "tbody", "tfoot", "caption", "dt", "dd", "section"}
    | {"article", "header", "footer", "form"}
)
_SKIPPED_TAGS = frozenset({"script", "style", "title", "template", "noscript"})
_MAX_QUOTE_DEPTH = 10


@dataclass(frozen=True, slots=True)
class _Line:
    text: str
    quote: int
    pre: bool

    def render(self) -> str:
        text = self.text.rstrip() if self.pre else " ".join(self.text.split())
        return ("> " * min(self.quote, _MAX_QUOTE_DEPTH) + text).rstrip()


class _TextParser(HTMLParser):
    """Collects the lines of an HTML document as text, links and quotes kept readable."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self._lines: list[_Line] = []
        self._current: list[str] = []
        self._pre = 0
        self._quote = 0
        self._skip = 0
        self._links: list[tuple[str | None, int]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._skip += tag in _SKIPPED_TAGS
        self._block(tag)
        self._pre += tag == "pre"
        self._quote += tag == "blockquote"
        if tag == "li":
            self._current.append("- ")
        elif tag in ("td", "th"):
            self._current.append(" ")
        elif tag == "a":
            self._links.append((dict(attrs).get("href"), len(self._current)))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "br":
            self._newline(force=True)
        else:
            self._block(tag)

    def handle_endtag(self, tag: str) -> None:
        self._skip = max(0, self._skip - (tag in _SKIPPED_TAGS))
        if tag == "a" and self._links:
            self._end_link(*self._links.pop())
        if tag in _PARAGRAPH_TAGS:
            self._newline()
        self._pre = max(0, self._pre - (tag == "pre"))
        self._quote = max(0, self._quote - (tag == "blockquote"))
        self._block(tag)

    def handle_data(self, data: str) -> None:
        if self._skip:
            return
        if not self._pre:
            self._current.append(data)
            return
        first, *rest = re.split(r"\r\n|[\r\n]", data)
        self._current.append(first)
        for line in rest:
            self._newline(force=True)
            self._current.append(line)

    def text(self) -> str:
        self._newline()
        rendered: list[str] = []
        for text in (line.render() for line in self._lines):
            if not _is_blank(text) or (rendered and not _is_blank(rendered[-1])):
                rendered.append(text)
            elif rendered:
                # Of two blank lines keep the less quoted one: it ends the quote.
                rendered[-1] = min(rendered[-1], text, key=len)
        while rendered and _is_blank(rendered[-1]):
            rendered.pop()
        return "\n".join(rendered)

    def _block(self, tag: str) -> None:
        if tag == "br":
            self._newline(force=True)
        elif tag in _PARAGRAPH_TAGS:
            self._newline()
            self._lines.append(_Line("", self._quote, pre=False))
        elif tag in _LINE_TAGS:
            self._newline()

    def _newline(self, *, force: bool = False) -> None:
        text = "".join(self._current)
        if force or text.strip():
            self._lines.append(_Line(text, self._quote, bool(self._pre)))
        self._current = []

    def _end_link(self, href: str | None, start: int) -> None:
        if href is None or url_scheme(href) not in _LINK_SCHEMES:
            return
        label = " ".join("".join(self._current[start:]).split())
        target = href.strip()
        if target.lower().startswith("mailto:"):
            target = target[len("mailto:") :]
        if not label:
            self._current.append(target)
        elif target != label:
            self._current.append(f" ({target})")


def _is_blank(line: str) -> bool:
    return not line.strip("> ")


def text_to_html(text: str) -> str:
    """Plain mail text as safe HTML: escaped, with its line breaks kept."""
    escaped = html.escape(text.strip())
    return f'<div style="white-space: pre-wrap">{escaped}</div>' if escaped else ""
