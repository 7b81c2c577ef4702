"""Japanese mail as mailers really send it: ISO-2022-JP with cp932's extension
characters, and Shift_JIS or UTF-8 under the ISO-2022-JP label."""

from __future__ import annotations

import base64

from mailgate.charsets import decode_bytes
from mailgate.parse import parse_message

CIRCLED_ONE = b"\x1b$B-!\x1b(B"  # NEC row 13: refused by Python's ISO-2022-JP codecs
KONNICHIWA = b"\x1b$B$3$s$K$A$O\x1b(B"


def _mail(headers: bytes, body: bytes) -> bytes:
    return b"From: a@x.test\r\n" + headers + b"\r\n\r\n" + body + b"\r\n"


def test_a_body_with_an_extension_character_is_decoded_whole() -> None:
    body = KONNICHIWA + b" " + CIRCLED_ONE + b" abc"
    mail = parse_message(
        _mail(b"Subject: x\r\nContent-Type: text/plain; charset=ISO-2022-JP", body)
    )
    assert mail.text.strip() == "\u3053\u3093\u306b\u3061\u306f \u2460 abc"


def test_every_jis_x_0208_character_reads_as_the_strict_codec_reads_it() -> None:
    # cp932 maps six JIS codes to other look-alikes (the wave dash and its kin)
    look_alikes = {"\u301c", "\u2016", "\u2212", "\u00a2", "\u00a3", "\u00ac"}
    for lead in range(0x21, 0x7F):
        for trail in range(0x21, 0x7F):
            data = b"\x1b$B" + bytes((lead, trail)) + b"\x1b(B" + CIRCLED_ONE
            try:
                expected = data[:5].decode("iso2022_jp")
            except UnicodeError:
                continue
            got = decode_bytes(data, "iso-2022-jp")
            assert got.endswith("\u2460")
            assert got[:-1] == expected or expected in look_alikes


def test_shift_jis_under_the_iso_2022_jp_label_is_read_as_shift_jis() -> None:
    word = base64.b64encode("\u30c4\u30fc\u30eb".encode("cp932"))
    mail = parse_message(
        _mail(b"Subject: =?ISO-2022-JP?B?" + word + b"?=", b"body").replace(
            b"From: a@x.test", b"From: =?ISO-2022-JP?B?" + word + b"?= <a@x.test>"
        )
    )
    assert mail.subject == "\u30c4\u30fc\u30eb"
    assert mail.sender is not None and mail.sender.name == "\u30c4\u30fc\u30eb"


def test_utf8_under_the_iso_2022_jp_label_stays_utf8() -> None:
    assert decode_bytes("\u65e5\u672c\u8a9e".encode(), "iso-2022-jp") == "\u65e5\u672c\u8a9e"


def test_a_raw_iso_2022_jp_subject_with_an_extension_character() -> None:
    mail = parse_message(_mail(b"Subject: " + KONNICHIWA + CIRCLED_ONE, b"body"))
    assert mail.subject == "\u3053\u3093\u306b\u3061\u306f\u2460"


def test_half_width_katakana_shift_in() -> None:
    assert decode_bytes(b"\x1b(I12\x1b(B" + CIRCLED_ONE, "iso-2022-jp") == "\uff71\uff72\u2460"
