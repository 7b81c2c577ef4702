"""Address headers: encoded display names stay names, whatever they decode to."""

from __future__ import annotations

import pytest

from mailgate.parse import parse_message


@pytest.mark.parametrize(
    ("from_header", "email", "name"),
    [
        (
            b"=?utf-8?q?Eve_Bcc:_evil@x.test?= <eve@guest.test>",
            "eve@guest.test",
            "Eve Bcc: evil@x.test",
        ),
        (b"=?utf-8?q?a=40b.test?= <real@x.test>", "real@x.test", "a@b.test"),
        (b"=?utf-8?q?=3Cevil@x.test=3E?= <real@x.test>", "real@x.test", "<evil@x.test>"),
        (b"=?utf-8?q?J=C3=B6hn?= =?utf-8?q?_Doe?= <j@x.test>", "j@x.test", "J\u00f6hn Doe"),
        (b'"=?utf-8?q?a=22b?=" <q@x.test>', "q@x.test", 'a"b'),
        (b'"Smith, J\\"r" <s@x.test>', "s@x.test", 'Smith, J"r'),
        (b"=?utf-8?q?Eve=0D=0ABcc:_x?= <eve@x.test>", "eve@x.test", "Eve Bcc: x"),
        (b"plain@x.test", "plain@x.test", ""),
    ],
)
def test_sender_comes_from_the_address_never_the_name(
    from_header: bytes, email: str, name: str
) -> None:
    mail = parse_message(b"From: " + from_header + b"\r\nSubject: s\r\n\r\nbody\r\n")
    assert mail.sender is not None
    assert (mail.sender.email, mail.sender.name) == (email, name)


def test_encoded_word_cannot_be_an_address() -> None:
    mail = parse_message(b"From: =?utf-8?q?x?=@evil.test\r\nSubject: s\r\n\r\nbody\r\n")
    assert mail.sender is None


@pytest.mark.parametrize(
    "from_header",
    [b'"eve@evil.test" nothing', b"(eve@evil.test) nothing", b"=?utf-8?q?eve=40evil.test?= x"],
)
def test_addresses_never_come_from_names_or_comments(from_header: bytes) -> None:
    assert parse_message(b"From: " + from_header + b"\r\nSubject: s\r\n\r\nbody\r\n").sender is None


@pytest.mark.parametrize(
    ("from_header", "email"),
    [(b"tim@power.test concierge@power.test", "tim@power.test"), (b"Big Bug bb@bug.test", None)],
)
def test_unsplittable_from_gives_its_leading_address_only(
    from_header: bytes, email: str | None
) -> None:
    sender = parse_message(b"From: " + from_header + b"\r\nSubject: s\r\n\r\nbody\r\n").sender
    assert (sender.email if sender else None) == email


@pytest.mark.parametrize(
    ("from_header", "name"),
    [
        (b"Max Kohl [ACME] <max@example.com>", "Max Kohl [ACME]"),
        (b"Max Kohl | [example.com] <max@example.com>", "Max Kohl | [example.com]"),
        (b'"Kohl, Max" <max@example.com>', "Kohl, Max"),
        (b"<max@example.com>", ""),
    ],
)
def test_a_name_with_brackets_outside_quotes_is_kept(from_header: bytes, name: str) -> None:
    mail = parse_message(b"From: " + from_header + b"\r\nSubject: x\r\n\r\nbody\r\n")
    assert mail.sender is not None
    assert (mail.sender.email, mail.sender.name) == ("max@example.com", name)


@pytest.mark.parametrize(
    "from_header",
    [
        b"=?utf-8?Q?a?Q?b?=@example.com",  # not a valid addr-spec
        b"a\x7fb@example.com",  # a control character
        b"=?utf-8?Q?x?=y@example.com",  # a decoded word must not lend an address its tail
    ],
)
def test_the_fallback_for_an_unsplittable_from_checks_the_address(from_header: bytes) -> None:
    mail = parse_message(b"From: " + from_header + b"\r\nSubject: x\r\n\r\nbody\r\n")
    assert mail.sender is None


def test_an_indented_first_header_line_is_still_a_header() -> None:
    mail = parse_message(b" From: Ann <ann@example.com>\r\nSubject: hi\r\n\r\nbody\r\n")
    assert mail.sender is not None and mail.sender.email == "ann@example.com"
    assert mail.subject == "hi"


def test_reply_ids_without_a_domain_are_not_threading_ids() -> None:
    mail = parse_message(
        b"From: joe@example.org\r\nSubject: x\r\nMessage-ID: <3@example.org>\r\n"
        b"In-Reply-To: <yes>\r\nReferences: <yes> <1@example.org>\r\n\r\npatch\r\n"
    )
    assert mail.in_reply_to == ()
    assert mail.references == ("1@example.org",)
