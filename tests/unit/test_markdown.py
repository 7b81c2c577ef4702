"""Markdown rendering, HTML sanitising and HTML-to-text, with hostile input."""

from __future__ import annotations

import html
import re
from html.parser import HTMLParser

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from core.markdown import html_to_text, render_markdown, sanitise_html, url_scheme

SAFE_TAGS = {"p", "br", "strong", "em", "b", "i", "h1", "h2", "h3", "h4", "h5", "h6", "ul"}
SAFE_TAGS |= {"ol", "li", "pre", "code", "blockquote", "a", "hr", "img", "table", "thead"}
SAFE_TAGS |= {"tbody", "tfoot", "tr", "th", "td", "div", "span", "font", "u", "s", "strike"}
SAFE_TAGS |= {"sub", "sup", "small", "center", "caption"}
URL_ATTRIBUTES = {"href", "src", "srcset", "action", "formaction", "background", "cite", "poster"}
FORBIDDEN = re.compile(r"<script|\son\w+\s*=|javascript:|data:text|vbscript:|<iframe|<svg|style=")


class _Markup(HTMLParser):
    """Every tag of a document with its attribute values decoded, as a browser sees them."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, list[tuple[str, str | None]]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, attrs))


def assert_harmless(output: str) -> None:
    """No dangerous tag, attribute or URL anywhere in the markup of `output`.

    Text content may still *mention* `javascript:` or show an escaped `<script>`:
    it is text, never markup, and the escaping is checked by the parser here.
    """
    parser = _Markup()
    parser.feed(output)
    parser.close()
    for tag, attrs in parser.tags:
        assert tag in SAFE_TAGS, output
        # Names, and the values a browser acts on; a title's value is only text.
        active = [(name, value if name in URL_ATTRIBUTES else "") for name, value in attrs]
        rendered = f"<{tag} " + " ".join(f"{name}={value or ''}" for name, value in active)
        squeezed = re.sub(r"[\x00-\x20]+", "", html.unescape(rendered)).lower()
        assert not FORBIDDEN.search(rendered.lower()), output
        assert not FORBIDDEN.search(squeezed.replace("=", " =")), output
        for name, value in attrs:
            assert not name.startswith("on") and name != "style", output
            if name == "href":
                assert url_scheme(value or "") in {"http", "https", "mailto"}, output
            if name == "src":
                assert url_scheme(value or "") in {"http", "https", "cid"}, output
    assert "<script" not in output.lower()


@pytest.mark.parametrize(
    "dangerous",
    [
        "<script>x</script>",
        '<img src="https://x.example/a.png" onerror="x">',
        '<a href="java&#x09;script:x">x</a>',
        '<a href="/relative">x</a>',
        '<p style="color:red">x</p>',
        "<iframe></iframe>",
    ],
)
def test_the_checker_catches_what_it_should(dangerous: str) -> None:
    with pytest.raises(AssertionError):
        assert_harmless(dangerous)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("**bold**", "<strong>bold</strong>"),
        ("*italic* and _this_", "<em>italic</em> and <em>this</em>"),
        ("# Title", "<h1>Title</h1>"),
        ("### Small", "<h3>Small</h3>"),
        ("- one\n- two", "<ul>\n<li>one</li>\n<li>two</li>\n</ul>"),
        ("1. one\n2. two", "<ol>\n<li>one</li>\n<li>two</li>\n</ol>"),
        ("3. three", '<ol start="3">'),
        ("```\nx < y\n```", "<pre><code>x &lt; y\n</code></pre>"),
        ("    indented", "<pre><code>indented\n</code></pre>"),
        ("`inline`", "<code>inline</code>"),
        ("> quoted", "<blockquote>\n<p>quoted</p>\n</blockquote>"),
        ("[site](https://example.com)", '<a href="https://example.com" rel="noopener noreferrer">'),
        ("<https://example.com>", '<a href="https://example.com" rel="noopener noreferrer">'),
        ("[mail](mailto:a@example.com)", '<a href="mailto:a@example.com"'),
        ("![logo](cid:logo@x)", '<img src="cid:logo@x" alt="logo">'),
        ("![pic](https://example.com/a.png)", '<img src="https://example.com/a.png"'),
        ("line one\nline two", "line one<br>\nline two"),
        ("---", "<hr>"),
        ("| a | b |\n|---|---|\n| 1 | 2 |", "<td>1</td>"),
    ],
)
def test_markdown_features(source: str, expected: str) -> None:
    output = render_markdown(source)
    assert expected in output
    assert_harmless(output)


def test_raw_html_is_shown_as_text() -> None:
    expected = "<p>use &lt;b&gt;bold&lt;/b&gt; &amp; co</p>\n"
    assert render_markdown("use <b>bold</b> & co") == expected


def test_relative_and_other_scheme_links_lose_their_target() -> None:
    for source in ["[a](/relative)", "[a](ftp://x.org/f)", "[a](#top)", "![i](x.png)"]:
        assert "href" not in render_markdown(source)
        assert "src" not in render_markdown(source)


HOSTILE_HTML = [
    "<script>alert(1)</script>",
    "<SCRIPT SRC=https://evil.example/x.js></SCRIPT>",
    "<scr<script>ipt>alert(1)</scr</script>ipt>",
    "<img src=x onerror=alert(1)>",
    '<img src="https://ok.example/a.png" onerror="alert(1)">',
    "<svg onload=alert(1)>",
    "<svg><script>alert(1)</script></svg>",
    "<math><mtext><table><mglyph><style><img src=x onerror=alert(1)>",
    '<a href="javascript:alert(1)">x</a>',
    '<a href="JaVaScRiPt:alert(1)">x</a>',
    '<a href="java&#x09;script:alert(1)">x</a>',
    '<a href="java\tscript:alert(1)">x</a>',
    '<a href="&#106;avascript:alert(1)">x</a>',
    '<a href="&#x6A;&#x61;&#x76;&#x61;&#x73;&#x63;&#x72;&#x69;&#x70;&#x74;&#x3A;alert(1)">x</a>',
    '<a href=" \x01javascript:alert(1)">x</a>',
    '<a href="data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==">x</a>',
    '<a href="vbscript:msgbox(1)">x</a>',
    '<img src="data:text/html,<script>alert(1)</script>">',
    '<p style="background:url(javascript:alert(1))">x</p>',
    '<div style="x:expression(alert(1))">x</div>',
    '<iframe src="https://evil.example"></iframe>',
    '<iframe srcdoc="<script>alert(1)</script>"></iframe>',
    '<form action="https://evil.example"><input name=p><button>go</button></form>',
    '<object data="https://evil.example/x.swf"></object><embed src="x.swf">',
    '<body onload="alert(1)">',
    '<meta http-equiv="refresh" content="0;url=javascript:alert(1)">',
    '<base href="javascript:alert(1)//">',
    '<a href="https://ok.example" onmouseover="alert(1)">x</a>',
    '<a href="https://ok.example" style="position:fixed">x</a>',
    "<details open ontoggle=alert(1)>",
    '<!--<img src="--><img src=x onerror=alert(1)//">',
    '<style>@import "https://evil.example/x.css";</style>',
    '<table background="javascript:alert(1)"><tr><td>x</td></tr></table>',
    '<font color="red" onclick="alert(1)" face="Arial">x</font>',
    '<noscript><p title="</noscript><img src=x onerror=alert(1)>">',
]
HOSTILE_MARKDOWN = [
    "[x](javascript:alert(1))",
    "[x](JaVaScRiPt:alert(1))",
    "[x](java&#x09;script:alert(1))",
    "[x](&#106;avascript:alert(1))",
    "[x](data:text/html,<script>alert(1)</script>)",
    "[x](vbscript:msgbox(1))",
    "![x](javascript:alert(1))",
    "<javascript:alert(1)>",
    "[x]: javascript:alert(1)\n\n[x]",
]
HOSTILE = HOSTILE_HTML + HOSTILE_MARKDOWN


def test_there_are_enough_hostile_cases() -> None:
    assert len(HOSTILE) >= 25


@pytest.mark.parametrize("source", HOSTILE)
def test_hostile_markdown_is_harmless(source: str) -> None:
    assert_harmless(render_markdown(source))


@pytest.mark.parametrize("source", HOSTILE)
def test_hostile_html_is_harmless(source: str) -> None:
    assert_harmless(sanitise_html(source))


@pytest.mark.parametrize("source", HOSTILE_HTML)
def test_hostile_markup_leaves_no_trace_in_the_text(source: str) -> None:
    # The hostile parts of these are all markup, so even the text must be free of them.
    output = sanitise_html(source)
    unescaped = html.unescape(output).lower()
    for pattern in ["<script", "javascript:", "data:text", "vbscript:"]:
        assert pattern not in unescaped, output
    assert not re.search(r"\son\w+=", unescaped), output


def test_sanitise_keeps_layout_and_cid_images() -> None:
    source = (
        '<div><table border="1"><tr><td colspan="2" valign="top">cell</td></tr></table>'
        '<font color="red" face="Arial" size="2">f</font><span>s</span>'
        '<img src="cid:part1@x" alt="logo" width="10"></div>'
    )
    output = sanitise_html(source)
    for kept in ['border="1"', 'colspan="2"', 'valign="top"', 'color="red"', "<span>s</span>"]:
        assert kept in output
    assert '<img src="cid:part1@x" alt="logo" width="10">' in output


def test_sanitise_drops_script_and_style_content() -> None:
    output = sanitise_html("<p>keep</p><script>var x</script><style>p{}</style><title>t</title>")
    assert output == "<p>keep</p>"


def test_links_get_rel() -> None:
    assert 'rel="noopener noreferrer"' in sanitise_html('<a href="https://x.example">x</a>')


FRAGMENTS = st.sampled_from(
    [fragment for case in HOSTILE for fragment in re.split(r"(?<=>)|(?=<)", case)]
    + ["<", ">", "&", "&#", "javascript:", "](", "[", "`", "\n", "\n\n", "> ", "- ", '"', "'"]
)
HOSTILE_TEXT = st.lists(st.one_of(FRAGMENTS, st.text(max_size=8)), max_size=20).map("".join)


@given(HOSTILE_TEXT)
@example('<p title="<script><img src="data:text/html,<script>')
def test_no_mixture_of_fragments_gets_through(source: str) -> None:
    assert_harmless(render_markdown(source))
    assert_harmless(sanitise_html(source))
    html_to_text(source)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("<p>Hello&nbsp;<b>World</b> &amp; co</p>", "Hello World & co"),
        ("<p>one</p><p>two</p>", "one\n\ntwo"),
        ("a<br>b<br/>c", "a\nb\nc"),
        ("<div>a</div><div>b</div>", "a\nb"),
        ("<ul><li>one</li><li>two</li></ul>", "- one\n- two"),
        ('<a href="https://x.example/a">the site</a>', "the site (https://x.example/a)"),
        ('<a href="https://x.example/">https://x.example/</a>', "https://x.example/"),
        ('<a href="mailto:a@x.example">write</a>', "write (a@x.example)"),
        ('<a href="javascript:alert(1)">click</a>', "click"),
        ("<blockquote><p>said</p></blockquote><p>reply</p>", "> said\n\nreply"),
        ("<pre>  keep\n    indent</pre>", "  keep\n    indent"),
        ("<h1>Title</h1>text", "Title\n\ntext"),
        ("<table><tr><td>1</td><td>2</td></tr><tr><td>3</td></tr></table>", "1 2\n3"),
        ("<html><head><title>t</title><style>p {}</style></head><body>b</body></html>", "b"),
        ("<script>alert(1)</script>visible", "visible"),
        ("<html><head><meta charset=utf-8><title>t</title><body>unclosed head", "unclosed head"),
        ("<pre>a\rb\r\nc</pre>", "a\nb\nc"),
        ("<blockquote>" * 50 + "deep", "> " * 10 + "deep"),
        ("  lots   of\n\n  space  ", "lots of space"),
        ("&lt;not a tag&gt; &#169; &eacute;", "<not a tag> © é"),
        ("", ""),
        ("<p>unclosed <b>bold", "unclosed bold"),
    ],
)
def test_html_to_text(source: str, expected: str) -> None:
    assert html_to_text(source) == expected


@pytest.mark.parametrize(
    ("url", "scheme"),
    [
        ("https://x", "https"),
        (" JaVa\tScript:x", "javascript"),
        ("\x00mailto:a@b", "mailto"),
        ("/relative", None),
        ("no-scheme", None),
        ("1http://x", None),
    ],
)
def test_url_scheme(url: str, scheme: str | None) -> None:
    assert url_scheme(url) == scheme
