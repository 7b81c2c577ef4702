"""Uuencoded parts: decoded with or without the `begin` line some mailers leave out."""

from __future__ import annotations

import binascii

import pytest

from mailgate.parse import parse_message
from mailgate.skeleton import CUT_SIZE


def _uu_lines(data: bytes) -> bytes:
    return b"".join(binascii.b2a_uu(data[i : i + 45]) for i in range(0, len(data), 45))


def _mail(encoded: bytes) -> bytes:
    return (
        b'From: a@x.test\r\nSubject: s\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n'
        b"--b\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n"
        b'--b\r\nContent-Type: application/octet-stream; name="notes.txt"\r\n'
        b"Content-Transfer-Encoding: x-uuencode\r\n\r\n" + encoded + b"--b--\r\n"
    )


@pytest.mark.parametrize("size", [12, 1000, CUT_SIZE * 2])
def test_uuencoded_lines_without_begin_are_decoded(size: int) -> None:
    data = bytes(range(256)) * (size // 256) + b"Hello there!"[: size % 256]
    mail = parse_message(_mail(_uu_lines(data) + b"`\n"))
    assert [(a.filename, a.data) for a in mail.attachments] == [("notes.txt", data)]


def test_uuencoded_body_with_begin_and_end_is_decoded() -> None:
    encoded = b"begin 644 notes.txt\n" + _uu_lines(b"Hello there") + b"`\nend\n"
    mail = parse_message(_mail(encoded))
    assert mail.attachments[0].data == b"Hello there"


def test_text_that_is_not_uuencoded_is_kept_as_sent() -> None:
    mail = parse_message(_mail(b"not ~~~ uuencoded at all\n"))
    assert mail.attachments[0].data == b"not ~~~ uuencoded at all"
