"""Parsing large messages: bodies cut out before the stdlib parser, decoded from the raw bytes.

Attachments come out byte for byte, the result is the one the stdlib alone
gives, peak memory stays near the size of the decoded attachments, and a stub
header forged by a sender does nothing.
"""

from __future__ import annotations

import base64
import hashlib
import quopri
import random
import tracemalloc

import pytest

from core.mail import InboundMail
from mailgate import skeleton
from mailgate.parse import parse_message

FORGED = f"{skeleton.STUB_PREFIX}0123456789abcdef"


def _blob(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


def _text(size: int) -> bytes:
    line = "Grüße aus Köln: the printer log says paper jam = tray 2 ½\r\n".encode()
    return (line * (size // len(line) + 1))[:size]


FILES = {
    "logs.zip": _blob(2_400_000, 1),
    "scan.pdf": _blob(1_900_000, 2),
    "photo.jpg": _blob(1_500_000, 3),
    "trace.log": _text(700_000),
    "small.bin": _blob(3_000, 4),
}


def _part(name: str, data: bytes, extra: str = "") -> bytes:
    if name.endswith(".log"):
        encoding, body = "quoted-printable", quopri.encodestring(data)
    else:
        encoding, body = "base64", base64.encodebytes(data).replace(b"\n", b"\r\n")
    head = (
        f"Content-Type: application/octet-stream\r\n{extra}"
        f'Content-Disposition: attachment; filename="{name}"\r\n'
        f"Content-Transfer-Encoding: {encoding}\r\n\r\n"
    )
    return head.encode() + body


def _message(files: dict[str, bytes], extra: dict[str, str] | None = None) -> bytes:
    extra = extra or {}
    parts = [_part(name, data, extra.get(name, "")) for name, data in files.items()]
    body = (
        b'--A\r\nContent-Type: multipart/alternative; boundary="B"\r\n\r\n'
        b"--B\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nThe files, as promised.\r\n"
        b"--B\r\nContent-Type: text/html\r\n\r\n<p>The files, as promised.</p>\r\n--B--\r\n"
    )
    for part in parts:
        body += b"--A\r\n" + part + b"\r\n"
    return (
        b"From: Big <big@client.test>\r\nTo: support@example.com\r\nSubject: big files\r\n"
        b"Message-ID: <big@client.test>\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="A"\r\n\r\n' + body + b"--A--\r\n"
    )


def _digests(mail: InboundMail) -> dict[str, str]:
    return {a.filename: hashlib.sha256(a.data).hexdigest() for a in mail.attachments}


def test_attachments_of_a_large_message_come_out_byte_for_byte() -> None:
    raw = _message(FILES)
    assert len(raw) > 8_000_000

    mail = parse_message(raw)

    assert _digests(mail) == {n: hashlib.sha256(d).hexdigest() for n, d in FILES.items()}
    assert mail.text == "The files, as promised."
    assert mail.defects == ()


def test_cutting_bodies_gives_what_the_stdlib_alone_gives(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    raw = _message(FILES)
    cut = parse_message(raw)
    monkeypatch.setattr(skeleton, "CUT_SIZE", len(raw))

    assert parse_message(raw) == cut


def test_a_large_single_part_message_is_cut_and_decoded() -> None:
    data = _blob(3_000_000, 5)
    raw = (
        b"From: a@client.test\r\nSubject: one part\r\nContent-Type: application/pdf\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n" + base64.encodebytes(data)
    )

    (attachment,) = parse_message(raw).attachments

    assert attachment.data == data


def test_peak_memory_stays_near_the_decoded_attachments() -> None:
    raw = _message(FILES)
    decoded = sum(len(d) for d in FILES.values())
    tracemalloc.start()
    try:
        parse_message(raw)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert peak < decoded + len(raw) // 2


def test_a_forged_stub_header_has_no_effect() -> None:
    files = {"big.bin": _blob(200_000, 6), "small.bin": _blob(500, 7)}
    forged = {name: f"{FORGED}: 0\r\n" for name in files}
    raw = _message(files, forged)

    mail = parse_message(raw)

    assert _digests(mail) == {n: hashlib.sha256(d).hexdigest() for n, d in files.items()}


def test_a_forged_stub_header_has_no_effect_when_nothing_is_cut() -> None:
    files = {"small.bin": _blob(500, 8)}
    raw = _message(files, {"small.bin": f"{FORGED}: 5\r\n"})

    (attachment,) = parse_message(raw).attachments

    assert attachment.data == files["small.bin"]
