"""Parsing hostile and mangled input: an InboundMail or MalformedMail, never anything else."""

from __future__ import annotations

import base64

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.errors import MalformedMail
from core.mail import InboundMail
from mailgate.parse import MessageLimits, parse_message

LIMITS = MessageLimits()
FAST = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

HEADER_NAMES = st.sampled_from(
    [
        b"Subject",
        b"From",
        b"To",
        b"Cc",
        b"Reply-To",
        b"Message-ID",
        b"References",
        b"Date",
        b"Content-Type",
        b"Content-Transfer-Encoding",
        b"Content-Disposition",
        b"X-Whatever",
    ]
)
ENCODED_WORDS = st.sampled_from(
    [
        b"=?utf-8?q?a=0D=0Ab?=",
        b"=?utf-8?b?YQ0KYg==?=",
        b"=?x-unknown?q?caf=E9?=",
        b"=?utf-8?b?trunc",
        b"=?iso-8859-1?q?=85=0A?=",
        b"=?utf-8?B?4pyT?=",
        b"=?*?q?x?=",
    ]
)
LINE_ENDS = st.sampled_from([b"\r\n", b"\n", b"\r"])


def _outcome(raw: bytes) -> InboundMail | None:
    try:
        mail = parse_message(raw, LIMITS)
    except MalformedMail as err:
        assert err.reason in ("malformed", "too_large")
        return None
    _assert_single_lines(mail)
    return mail


def _assert_single_lines(mail: InboundMail) -> None:
    values = [mail.subject, *(v for _, v in mail.headers)]
    for address in (mail.sender, *mail.to, *mail.cc, *mail.reply_to):
        if address is not None:
            values += [address.email, address.name]
    for value in values:
        assert "\r" not in value and "\n" not in value, value


@st.composite
def header_blocks(draw: st.DrawFn) -> bytes:
    lines = []
    for _ in range(draw(st.integers(0, 8))):
        name = draw(HEADER_NAMES)
        value = draw(st.one_of(st.binary(max_size=200), ENCODED_WORDS, st.just(b"x" * 5000)))
        lines.append(name + b": " + value)
    return draw(LINE_ENDS).join(lines)


@st.composite
def multiparts(draw: st.DrawFn) -> bytes:
    boundary = draw(st.sampled_from([b"b1", b"", b"--", b"a b", b"x" * 80]))
    declared = draw(st.sampled_from([boundary, b"other", None]))
    charset = draw(st.sampled_from([b"utf-8", b"x-bogus", b"us-ascii", b"charset=utf-8", b"\xff"]))
    cte = draw(st.sampled_from([b"base64", b"quoted-printable", b"8bit", b"x-uuencode", b"bogus"]))
    body = draw(st.binary(max_size=300))
    if cte == b"base64" and draw(st.booleans()):
        body = base64.b64encode(body)[: draw(st.integers(0, 200))]
    head = b"Content-Type: multipart/mixed"
    if declared is not None:
        head += b'; boundary="' + declared + b'"'
    part = b"Content-Type: text/plain; charset=" + charset + b"\nContent-Transfer-Encoding: "
    part += cte + b"\n\n" + body
    closing = b"--" + boundary + b"--\n" if draw(st.booleans()) else b""
    return head + b"\nSubject: x\n\n--" + boundary + b"\n" + part + b"\n" + closing


@FAST
@given(header_blocks(), st.binary(max_size=500), st.booleans())
def test_mangled_headers_never_escape(head: bytes, body: bytes, mbox: bool) -> None:
    raw = (b"From someone@example.com Sat Jan  3 01:05:34 1996\n" if mbox else b"") + head
    _outcome(raw + b"\n\n" + body)


@FAST
@given(multiparts())
def test_broken_multiparts_never_escape(raw: bytes) -> None:
    _outcome(raw)


@FAST
@given(st.binary(max_size=2000))
def test_random_bytes_never_escape(raw: bytes) -> None:
    _outcome(raw)


@FAST
@given(st.lists(ENCODED_WORDS, min_size=1, max_size=6), LINE_ENDS)
def test_encoded_words_with_line_breaks_stay_on_one_line(words: list[bytes], end: bytes) -> None:
    subject = (end + b" ").join(words)
    raw = b"From: =?utf-8?q?A=0D=0AB?= <a@example.com>\r\nSubject: " + subject + b"\r\n\r\nbody"
    mail = _outcome(raw)
    assert mail is not None


def _nested(depth: int) -> bytes:
    raw = b"plain"
    for level in range(depth):
        boundary = b"b%d" % level
        raw = (
            b'Content-Type: multipart/mixed; boundary="'
            + boundary
            + b'"\n\n--'
            + boundary
            + b"\n"
            + raw
            + b"\n--"
            + boundary
            + b"--\n"
        )
    return b"Subject: deep\n" + raw


def test_nesting_within_the_limit_parses() -> None:
    assert parse_message(_nested(10), LIMITS).text == "plain"


def test_nesting_beyond_the_limit_is_malformed() -> None:
    with pytest.raises(MalformedMail) as caught:
        parse_message(_nested(LIMITS.max_depth + 5), LIMITS)
    assert caught.value.reason == "malformed"


def test_deep_message_rfc822_chain_is_malformed() -> None:
    raw = b"body"
    for _ in range(400):
        raw = b"Content-Type: message/rfc822\n\n" + raw
    with pytest.raises(MalformedMail) as caught:
        parse_message(b"Subject: chain\n" + raw, LIMITS)
    assert caught.value.reason == "malformed"


def test_oversized_message_is_too_large() -> None:
    with pytest.raises(MalformedMail) as caught:
        parse_message(b"Subject: big\n\n" + b"x" * 2000, MessageLimits(max_bytes=1000))
    assert caught.value.reason == "too_large"


def test_oversized_header_block_is_too_large() -> None:
    raw = b"X-Long: " + b"y" * 5000 + b"\n\nbody"
    with pytest.raises(MalformedMail) as caught:
        parse_message(raw, MessageLimits(max_header_bytes=1000))
    assert caught.value.reason == "too_large"


def test_too_many_headers_is_malformed() -> None:
    raw = b"".join(b"X-H%d: v\n" % i for i in range(50)) + b"\nbody"
    with pytest.raises(MalformedMail) as caught:
        parse_message(raw, MessageLimits(max_headers=20))
    assert caught.value.reason == "malformed"


def test_too_many_parts_is_malformed() -> None:
    parts = b"".join(b"--b\nContent-Type: text/plain\n\npart\n" for _ in range(30))
    raw = b'Content-Type: multipart/mixed; boundary="b"\n\n' + parts + b"--b--\n"
    with pytest.raises(MalformedMail) as caught:
        parse_message(raw, MessageLimits(max_parts=10))
    assert caught.value.reason == "malformed"


def test_lying_charset_still_decodes() -> None:
    raw = "Subject: x\nContent-Type: text/plain; charset=us-ascii\n\nGrüße".encode()
    assert parse_message(raw, LIMITS).text == "Grüße"


def test_unknown_charset_falls_back() -> None:
    raw = (
        b"Subject: =?x-nonsense?q?caf=E9?=\nContent-Type: text/plain; charset=x-nonsense\n\ncaf\xe9"
    )
    mail = parse_message(raw, LIMITS)
    assert mail.subject == "café" and mail.text == "café"


def test_html_is_sanitised() -> None:
    raw = (
        b"Subject: x\nContent-Type: text/html\n\n<p onclick='x()'>Hi <a href='javascript:alert(1)'>"
        b"there</a><img src='data:image/png;base64,AAAA'></p><script>evil()</script>"
    )
    mail = parse_message(raw, LIMITS)
    assert mail.html is not None
    for bad in ("onclick", "javascript:", "data:", "<script", "evil"):
        assert bad not in mail.html
    assert mail.text == "Hi there"


def test_unsafe_attachment_names_are_made_safe() -> None:
    raw = (
        b'Content-Type: multipart/mixed; boundary="b"\n\n--b\nContent-Type: text/plain\n\nhi\n'
        b"--b\nContent-Type: application/pdf\nContent-Disposition: attachment; "
        b'filename="..\\\\..\\\\.evil\x01.pdf"\n\n%PDF-1.4\n--b\nContent-Type: image/png\n\n'
        b"\x89PNG\r\n\x1a\n\n--b--\n"
    )
    first, second = parse_message(raw, LIMITS).attachments
    assert first.filename == "evil.pdf"
    assert second.filename == "attachment_1.png"
