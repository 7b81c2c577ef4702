"""Header text decoding: encoded words that real mailers write against RFC 2047."""

from __future__ import annotations

import pytest

from mailgate.parse import parse_message


def _mail_with_subject(subject: bytes) -> bytes:
    return b"From: a@x.test\r\nSubject: " + subject + b"\r\n\r\nbody\r\n"


@pytest.mark.parametrize(
    ("subject", "expected"),
    [
        (b"=?us-ascii?Q?Invoice / March / North?=", "Invoice / March / North"),
        (b"=?iso-8859-1?Q?Gr=FC=DFe aus Bonn?=", "Gr\u00fc\u00dfe aus Bonn"),
        (b"  =?utf-8?q?caf=C3=A9 au lait?=  ", "caf\u00e9 au lait"),
    ],
)
def test_a_whole_subject_in_one_word_with_raw_spaces_is_decoded(
    subject: bytes, expected: str
) -> None:
    assert parse_message(_mail_with_subject(subject)).subject == expected


def test_a_spaced_word_beside_plain_text_stays_as_written() -> None:
    subject = b"Re: =?us-ascii?Q?a b?= c"
    assert parse_message(_mail_with_subject(subject)).subject == subject.decode()
