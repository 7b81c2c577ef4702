"""Decoding stage of parsing: bytes and header values to text, never failing.

Every charset falls back rather than fails: the declared one, UTF-8, a guess
between Western and Cyrillic single-byte sets, latin-1 last. RFC 2047 encoded
words, raw 8-bit header bytes and whitespace runs are handled here, so the
message, part and bounce stages hand on readable one-line header text.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import re

_ENCODED_WORD = re.compile(r"=\?([^?\s*]+)(?:\*[^?\s]*)?\?([bBqQ])\?([^?\s]*)\?=")
_ONLY_ENCODED_WORDS = re.compile(rf"(?:{_ENCODED_WORD.pattern}\s*)+")
# One encoded word making up a whole value, its text written with raw spaces.
_SPACED_WORD = re.compile(r"=\?([^?\s*]+)(?:\*[^?\s]*)?\?([bBqQ])\?([^?]*\s[^?]*)\?=")
_UTF8_SEQUENCE = re.compile(
    rb"[\xc2-\xdf][\x80-\xbf]|[\xe0-\xef][\x80-\xbf]{2}|[\xf0-\xf4][\x80-\xbf]{3}"
)
_ISO_2022_JP = re.compile(r"\x1b\$[@B]")
_ALIASES = {"gb_2312-80": "gb2312", "windows-31j": "cp932", "csgb2312": "gb2312"}
# Labels mail clients use for what is really the larger Microsoft or national set.
_SUPERSETS = {
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "shift_jis": "cp932",
    "euc_kr": "cp949",
    "tis-620": "cp874",
    "iso8859-11": "cp874",
    "big5": "big5hkscs",
}
_LATIN = frozenset({"ascii", "iso8859-1", "iso8859-15", "cp1252"})
_MIXED_ERRORS = "ticketd-stray-cp1252"


def header_text(value: str, hint: str | None = None) -> str:
    """A header value as readable text: 8-bit bytes and RFC 2047 words decoded, one line.

    `hint` is the charset the message's text declares, the likeliest one for raw
    8-bit header bytes that are not UTF-8.
    """
    return collapse(decode_words(fix_8bit(value, hint)))


def collapse(text: str) -> str:
    """Whitespace runs (CR, LF, NEL included) to one space, stripped."""
    return " ".join(text.split())


def fix_8bit(value: str, hint: str | None = None) -> str:
    """Undo the parser's surrogate escapes: raw 8-bit header bytes as UTF-8 (RFC 6532),
    else in the `hint` charset, else by guessing. Raw ISO-2022-JP (7-bit, with escape
    sequences, as old Japanese mailers write headers) is decoded too."""
    if "\x1b" in value and _ISO_2022_JP.search(value) and value.isascii():
        return _decode_iso2022_jp(value.encode("ascii"))
    if value.isascii() or not re.search("[\udc80-\udcff]", value):
        return value
    data = value.encode("utf-8", "surrogateescape")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return decode_bytes(data, hint)


def decode_bytes(data: bytes, declared: str | None) -> str:
    """Decode with the declared charset, then UTF-8, a single-byte guess, then latin-1.

    Valid UTF-8 wins over a declared Latin charset (the usual mislabelling), and
    mostly-UTF-8 text keeps its UTF-8 with stray bytes read as cp1252. A declared
    charset is read as its superset (GB2312 as GB18030, Shift_JIS as cp932, ...),
    and a declared non-Latin one that still fails keeps its characters with the
    odd byte replaced: a guess between Latin and Cyrillic sets would garble them all.
    """
    charset = _charset(declared)
    if charset is None and b"\x1b$B" in data:  # undeclared ISO-2022-JP
        charset = "iso2022_jp"
    if charset == "iso2022_jp":
        return _decode_iso2022_jp(data)
    for candidate in ("utf-8", charset) if charset in _LATIN else (charset, "utf-8"):
        if candidate is not None:
            try:
                return data.decode(candidate)
            except UnicodeError:
                pass
    if charset is not None and charset not in _LATIN and charset != "utf-8":
        return data.decode(charset, errors="replace")
    if _UTF8_SEQUENCE.search(data):
        return data.decode("utf-8", errors=_MIXED_ERRORS)
    try:
        return data.decode(_guess_8bit(data))
    except UnicodeError:
        return data.decode("latin-1", errors="replace")


def _decode_iso2022_jp(data: bytes) -> str:
    """ISO-2022-JP as Japanese mailers write it: with cp932's NEC and IBM characters
    (circled digits, Roman numerals) that the strict codec refuses, and at times
    really UTF-8 or Shift_JIS under the 7-bit label."""
    try:
        return data.decode("iso2022_jp")
    except UnicodeError:
        pass
    if data.isascii():
        return _jis_as_shift_jis(data).decode("cp932", errors="replace")
    for candidate in ("utf-8", "cp932"):
        try:
            return data.decode(candidate)
        except UnicodeError:
            pass
    return data.decode("cp932", errors="replace")


_JIS_MODES = {b"$B": "jis", b"$@": "jis", b"(B": "ascii", b"(J": "ascii", b"(I": "kana"}


def _jis_as_shift_jis(data: bytes) -> bytes:
    """The same text in Shift_JIS, whose cp932 reading knows every extension character:
    each JIS X 0208 pair maps arithmetically to its Shift_JIS pair."""
    out = bytearray()
    mode, i = "ascii", 0
    while i < len(data):
        byte = data[i]
        if byte == 0x1B and data[i + 1 : i + 3] in _JIS_MODES:
            mode, i = _JIS_MODES[data[i + 1 : i + 3]], i + 3
            continue
        second = data[i + 1] if i + 1 < len(data) else 0
        if mode == "jis" and 0x21 <= byte <= 0x7E and 0x21 <= second <= 0x7E:
            lead = ((byte + 1) >> 1) + 0x70
            trail = second + 0x1F + (second >= 0x60) if byte & 1 else second + 0x7E
            out += bytes((lead + 0x40 if lead >= 0xA0 else lead, trail))
            i += 2
            continue
        out.append(byte + 0x80 if mode == "kana" and 0x21 <= byte <= 0x5F else byte)
        i += 1
    return bytes(out)


def _stray_bytes_as_cp1252(err: UnicodeError) -> tuple[str, int]:
    if not isinstance(err, UnicodeDecodeError):
        raise err
    chunk = err.object[err.start : err.end]
    return bytes(chunk).decode("cp1252", errors="replace"), err.end


codecs.register_error(_MIXED_ERRORS, _stray_bytes_as_cp1252)


def _charset(declared: str | None) -> str | None:
    """The codec to read a declared charset with: its superset where mail needs one."""
    if not declared:
        return None
    name = declared.strip().strip("\"'").rsplit("=", 1)[-1].strip("\"' ").lower()
    for label in (name, *_relabel(name)):
        try:
            found = codecs.lookup(label).name
        except LookupError:
            continue
        return _SUPERSETS.get(found, found)
    return None


def _relabel(name: str) -> list[str]:
    """Other spellings of a label Python does not know: `x-gbk`, `iso-8859-8-i`,
    `windows-874`, `x-x-big5`, `gb_2312-80`."""
    if name in _ALIASES:
        return [_ALIASES[name]]
    bare = re.sub(r"^(?:x-)+", "", name)
    bare = re.sub(r"^(iso-?8859-\d+)-[ie]$", r"\1", bare)
    return [bare, re.sub(r"^windows-(\d+)$", r"cp\1", bare), bare.replace("_", "").replace("-", "")]


def _guess_8bit(data: bytes) -> str:
    """cp1251 or koi8-r for text written mostly in high bytes (Cyrillic words, where
    every letter is one), else cp1252: Latin text has a few accented letters among
    many ASCII ones, even where they cluster (`Mäöüß`)."""
    high = re.findall(rb"[\xc0-\xff]", data)
    ascii_letters = len(re.findall(rb"[A-Za-z]", data))
    if not re.search(rb"[\xc0-\xff]{4}", data) or len(high) < ascii_letters:
        return "cp1252"
    lower_cp1251 = sum(1 for b in high if b >= b"\xe0")
    return "cp1251" if lower_cp1251 * 2 >= len(high) else "koi8_r"


def decode_words(text: str, *, strict: bool = False) -> str:
    """Decode RFC 2047 encoded words; with `strict`, only a value made of them alone."""
    if "=?" not in text:
        return text
    spaced = _SPACED_WORD.fullmatch(text.strip())
    if spaced:
        return _spaced_word(spaced)
    if strict and not _ONLY_ENCODED_WORDS.fullmatch(text.strip()):
        return text
    pieces: list[str] = []
    pending: list[tuple[str, bytes]] = []
    pos = 0
    for match in _ENCODED_WORD.finditer(text):
        gap = text[pos : match.start()]
        if gap and not (pending and gap.isspace()):
            pieces.append(_flush(pending) + gap)
        charset, data = match.group(1).lower(), _word_bytes(match.group(2), match.group(3))
        if pending and pending[-1][0] == charset:
            pending[-1] = (charset, pending[-1][1] + data)
        else:
            pending.append((charset, data))
        pos = match.end()
    pieces.append(_flush(pending) + text[pos:])
    return "".join(pieces)


def _spaced_word(match: re.Match[str]) -> str:
    """A value that is one encoded word with raw spaces in its text.

    RFC 2047 forbids the spaces, but some mailers wrap a whole subject this way
    (`=?us-ascii?Q?A / B?=`); the word's bounds are certain when it is the whole
    value, so it is decoded rather than shown with its `=?...?=` wrapping.
    """
    charset, encoding, payload = match.group(1).lower(), match.group(2), match.group(3)
    return decode_bytes(_word_bytes(encoding, payload), charset)


def _flush(pending: list[tuple[str, bytes]]) -> str:
    text = "".join(decode_bytes(data, charset) for charset, data in pending)
    pending.clear()
    return text


def _word_bytes(encoding: str, payload: str) -> bytes:
    if encoding in "qQ":
        data = payload.replace("_", " ").encode("ascii", "replace")
        return binascii.a2b_qp(data)
    clean = re.sub(r"[^A-Za-z0-9+/]", "", payload)
    clean = clean[: len(clean) - len(clean) % 4 if len(clean) % 4 == 1 else len(clean)]
    return base64.b64decode(clean + "=" * (-len(clean) % 4))
