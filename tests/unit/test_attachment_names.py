"""Raw 8-bit attachment names are read in the charset the message declares, as its
subject is, and not guessed as Latin text."""

from __future__ import annotations

import pytest

from mailgate.parse import parse_message

NAME = "\u62a5\u544a.xls"


def _mail(container_charset: bytes, body_charset: bytes) -> bytes:
    return (
        b"From: a@example.com\r\nSubject: x\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: multipart/mixed;" + container_charset + b" boundary=B\r\n\r\n"
        b"--B\r\nContent-Type: text/plain"
        + body_charset
        + b"\r\n\r\n"
        + "\u4f60\u597d".encode("gbk")
        + b"\r\n--B\r\nContent-Type: application/octet-stream\r\n"
        b'Content-Disposition: attachment; filename="' + NAME.encode("gbk") + b'"\r\n\r\n'
        b"xx\r\n--B--\r\n"
    )


@pytest.mark.parametrize(
    ("container", "body"),
    [(b"", b"; charset=gb2312"), (b' charset="gb2312";', b"")],
    ids=["charset of the text part", "charset of the multipart (Outlook Express)"],
)
def test_a_raw_gbk_file_name_is_read_in_the_declared_charset(container: bytes, body: bytes) -> None:
    [attachment] = parse_message(_mail(container, body)).attachments
    assert attachment.filename == NAME


def test_a_utf8_file_name_stays_utf8_whatever_the_message_declares() -> None:
    raw = _mail(b"", b"; charset=gb2312").replace(
        NAME.encode("gbk"), "r\u00e9sum\u00e9.pdf".encode()
    )
    [attachment] = parse_message(raw).attachments
    assert attachment.filename == "r\u00e9sum\u00e9.pdf"
