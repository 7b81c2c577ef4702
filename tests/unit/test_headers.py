"""The outbound header guard: no value from inbound mail can add or split a header."""

from __future__ import annotations

import base64
import email
import email.policy
import unicodedata
from email.header import decode_header, make_header
from email.message import EmailMessage

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.errors import InvalidAddress, TicketdError
from mailgate.headers import clean_header_text, format_address, safe_headers, valid_email

ENCODED_NEWLINE = "=?utf-8?q?a=0D=0ABcc:_x@evil?="


def _decoded(header: str) -> str:
    """What a mail parser makes of an inbound header: its RFC 2047 words decoded."""
    return str(make_header(decode_header(header)))


def _b_word(text: str) -> str:
    return f"=?utf-8?b?{base64.b64encode(text.encode()).decode()}?="


HOSTILE = [
    "Help\r\nBcc: victim@evil.example",
    "Help\nBcc: victim@evil.example",
    "Help\rBcc: victim@evil.example",
    "Help\r\n\r\nInjected body",
    "Help\r\n Bcc: folded@evil.example",
    _decoded(ENCODED_NEWLINE),
    ENCODED_NEWLINE,
    _b_word(ENCODED_NEWLINE),
    _decoded(_b_word(ENCODED_NEWLINE)),
    _b_word("x\r\nBcc: y@evil.example"),
    "=?utf-8?q?x?=abc=?utf-8?q?=0ABcc:_y@evil.example?=",
    "Help\x00Bcc: x@evil.example",
    "Help\x85Bcc: x@evil.example",
    "Help\u2028Bcc: x@evil.example",
    "Help\u2029Bcc: x@evil.example",
    "Help\x0bBcc:\x0cx@evil.example",
    "Ünïcödé\r\nBcc: x@evil.example",
    "\udcff\udcfe surrogate-escaped bytes",
    "x" * 5000,
    "word " * 2000,
    "a" * 998 + "\r\nBcc: x@evil.example",
    "Bcc: x@evil.example",
    "",
]


@pytest.mark.parametrize("value", HOSTILE)
def test_cleaned_text_is_one_safe_line(value: str) -> None:
    cleaned = clean_header_text(value)
    assert len(cleaned) <= 900
    assert "=?" not in cleaned
    assert cleaned == cleaned.strip()
    assert "  " not in cleaned
    for char in cleaned:
        assert unicodedata.category(char) not in {"Cc", "Zl", "Zp", "Cs"}


def test_cleaning_keeps_ordinary_text() -> None:
    assert clean_header_text("  Re:  Printer\tbroken  ") == "Re: Printer broken"
    assert clean_header_text("Ünïcödé ✓ 日本") == "Ünïcödé ✓ 日本"
    assert clean_header_text("line\r\nbreak") == "line break"


def test_length_is_bounded() -> None:
    assert clean_header_text("abc def", max_len=5) == "abc d"
    assert clean_header_text("abcd efg", max_len=5) == "abcd"
    with pytest.raises(ValueError, match="max_len"):
        clean_header_text("x", max_len=0)


@given(st.text())
def test_cleaning_never_leaves_a_line_break(value: str) -> None:
    cleaned = clean_header_text(value, max_len=200)
    assert len(cleaned) <= 200
    assert "=?" not in cleaned
    assert not any(unicodedata.category(c) in {"Cc", "Zl", "Zp", "Cs"} for c in cleaned)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("alice@example.com", "alice@example.com"),
        ("  Alice@Example.COM ", "alice@example.com"),
        ("a.b+tag@sub.example.co.uk", "a.b+tag@sub.example.co.uk"),
        ("o'brien@example.ie", "o'brien@example.ie"),
        ("x@bücher.de", "x@xn--bcher-kva.de"),
        ("x@a-b.example", "x@a-b.example"),
    ],
)
def test_valid_email_normalises(text: str, expected: str) -> None:
    assert valid_email(text) == expected


BAD_ADDRESSES = [
    "",
    "alice",
    "alice@",
    "@example.com",
    "a@@example.com",
    "a@b@example.com",
    "a b@example.com",
    "a@exa mple.com",
    "a@example.com\r\nBcc: x@evil.example",
    "a@example.com\nx",
    "a\x00@example.com",
    "<a@example.com>",
    "a@example.com>",
    "a@example.com,b@example.com",
    "a@example.com;b@example.com",
    '"a b"@example.com',
    "a(comment)@example.com",
    "a\\b@example.com",
    ".a@example.com",
    "a.@example.com",
    "a..b@example.com",
    "a@example..com",
    "a@example.com.",
    "a@-example.com",
    "a@example-.com",
    "a@exa_mple.com",
    "a@[127.0.0.1]",
    "a@1.2.3.4",
    "ä@example.com",
    "=?utf-8?q?x=0D=0ABcc=3A_y?=@evil.example",
    "a" * 65 + "@example.com",
    "a@" + "b" * 64 + ".com",
    "a@" + ("b" * 60 + ".") * 5 + "com",
    "root@localhost",
]


@pytest.mark.parametrize("text", BAD_ADDRESSES)
def test_valid_email_refuses(text: str) -> None:
    assert valid_email(text) is None


def test_single_label_domains_only_when_allowed() -> None:
    assert valid_email("root@localhost", allow_single_label=True) == "root@localhost"
    assert valid_email("root@", allow_single_label=True) is None


@pytest.mark.parametrize("text", BAD_ADDRESSES)
def test_format_address_refuses_bad_addresses(text: str) -> None:
    with pytest.raises(InvalidAddress) as caught:
        format_address("Name", text)
    assert isinstance(caught.value, TicketdError)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Alice Admin", "Alice Admin <alice@example.com>"),
        ("", "alice@example.com"),
        ("Doe, John", '"Doe, John" <alice@example.com>'),
        ('Say "hi"', '"Say \\"hi\\"" <alice@example.com>'),
        ("Jöhn", "Jöhn <alice@example.com>"),
        ("J. R.\r\nBcc: x@evil.example", '"J. R. Bcc: x@evil.example" <alice@example.com>'),
        ("Back\\slash", '"Back\\\\slash" <alice@example.com>'),
    ],
)
def test_format_address(name: str, expected: str) -> None:
    assert format_address(name, "Alice@Example.com") == expected


@given(st.text(max_size=300))
def test_formatted_addresses_pass_the_guard_unchanged(name: str) -> None:
    formatted = format_address(name, "alice@example.com")
    assert clean_header_text(formatted) == formatted


def test_non_ascii_names_are_encoded_on_the_wire() -> None:
    parsed, raw = _send_and_parse("Grüße", "Jöhn Dœ")
    assert b"=?utf-8?" in raw
    assert raw.isascii()
    assert parsed["To"].addresses[0].display_name == "Jöhn Dœ"


def test_safe_headers_cleans_values() -> None:
    pairs = [("X-Ticket", "1\r\nBcc: x@evil.example"), ("Auto-Submitted", "auto-replied")]
    assert safe_headers(pairs) == [
        ("X-Ticket", "1 Bcc: x@evil.example"),
        ("Auto-Submitted", "auto-replied"),
    ]


@pytest.mark.parametrize(
    "name", ["", "Bad Name", "X:Y", "X-A\r\nBcc", "Bcc:", "Ünï", "X\x00", "X" * 77]
)
def test_safe_headers_refuses_bad_names(name: str) -> None:
    with pytest.raises(ValueError, match="not a valid header name"):
        safe_headers([(name, "value")])


def _send_and_parse(subject: str, name: str) -> tuple[EmailMessage, bytes]:
    message = EmailMessage(policy=email.policy.SMTP)
    for header, value in safe_headers(
        [
            ("From", format_address("Support", "support@example.com")),
            ("To", format_address(name, "customer@example.com")),
            ("Reply-To", format_address(name, "support+abc@example.com")),
            ("Subject", f"[Ticket #482913] {subject}"),
            ("X-Ticketd-Note", subject),
        ]
    ):
        message[header] = value
    message.set_content("body\n")
    raw = message.as_bytes()
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed, raw


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_subjects_and_names_never_add_a_header(value: str) -> None:
    parsed, raw = _send_and_parse(value, value)
    expected = ["From", "To", "Reply-To", "Subject", "X-Ticketd-Note"]
    expected += ["Content-Type", "Content-Transfer-Encoding", "MIME-Version"]
    assert parsed.keys() == expected
    assert "Bcc" not in parsed
    assert parsed.get_payload() == "body\r\n"
    # strip(): Python may fold right after "Subject:", which reads back as a leading space.
    assert str(parsed["Subject"]).strip() == clean_header_text(f"[Ticket #482913] {value}")
    to = parsed["To"].addresses
    assert [address.addr_spec for address in to] == ["customer@example.com"]
    assert to[0].display_name == clean_header_text(value, max_len=200)
    header_block = raw.split(b"\r\n\r\n", 1)[0]
    for line in header_block.split(b"\r\n"):
        assert line[:1] in (b" ", b"\t") or line.split(b":", 1)[0].decode() in expected
        assert b"\r" not in line and b"\n" not in line and b"\x00" not in line
        assert len(line) <= 998


@given(st.text(max_size=300))
def test_no_text_adds_a_header(value: str) -> None:
    parsed, _ = _send_and_parse(value, value)
    assert len(parsed.keys()) == 8
    assert [address.addr_spec for address in parsed["To"].addresses] == ["customer@example.com"]
