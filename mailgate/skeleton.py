"""Skeleton stage of parsing: the message with its large leaf bodies cut out.

The stdlib parser keeps several copies of every body (lines, joined, encoded);
so before it runs, `cut_bodies` follows the MIME structure as its feedparser
will (lines end at CR, LF or CRLF; a line matching any enclosing boundary ends
a part) and cuts out each leaf body over `CUT_SIZE`, leaving a stub header
whose name carries a nonce drawn per message, which no sender can forge. It
hands on a `Skeleton`: the small message for the stdlib parser, and `payload`,
which decodes a cut body straight from the original bytes.
"""

from __future__ import annotations

import binascii
import re
import secrets
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from email.policy import compat32
from itertools import dropwhile, takewhile
from typing import Any

CUT_SIZE = 65_536
STUB_PREFIX = "X-Ticketd-Cut-"
_LINE_END = re.compile(rb"\r\n|\r|\n")
_DASHES = re.compile(rb"[\r\n]--")
_HEADER_LINE = re.compile(rb"From |[\x21-\x39\x3b-\x7e]*:|[\t ]")  # feedparser.headerRE
_BOUNDARY_TAIL = re.compile(rb"(--)?[ \t]*(?:\r\n|\r|\n)?$")
_CLEAN_BASE64 = re.compile(rb"[A-Za-z0-9+/\r\n]*(?:=[\r\n]*){0,2}")
_UUENCODE = frozenset({"x-uuencode", "uuencode", "uue", "x-uue"})


@dataclass(frozen=True, slots=True)
class Skeleton:
    """The bytes for the stdlib parser, and where the bodies cut out of them are."""

    message: bytes
    source: bytes
    stub: str
    spans: tuple[tuple[int, int], ...]

    def payload(self, part: Message) -> Any:
        """The part's body decoded, as `part.get_payload(decode=True)` gives it
        (uuencoded bodies also without their `begin` line: see `uudecode`)."""
        index = part.get(self.stub)
        cte = str(part.get("content-transfer-encoding", "")).lower()
        if cte in _UUENCODE and not part.is_multipart():
            if index is None:
                return uudecode(str(part.get_payload()).encode("ascii", "surrogateescape"))
            return uudecode(self.source[slice(*self.spans[int(index)])])
        if index is None:
            return part.get_payload(decode=True)
        start, end = self.spans[int(index)]
        with memoryview(self.source)[start:end] as body:
            if cte == "quoted-printable":
                return binascii.a2b_qp(body)
            if cte == "base64" and _clean_base64(self.source, start, end):
                return binascii.a2b_base64(body)
            if cte != "base64":
                return bytes(body)
        del part[self.stub]  # odd encodings: the stdlib decodes them, defects and all
        part.set_payload(self.source[start:end].decode("ascii", "surrogateescape"))
        return part.get_payload(decode=True)

    def encoded(self, part: Message) -> bytes:
        """The part's body as written, before any transfer decoding (its 8-bit bytes
        too, which `get_payload()` would already have decoded)."""
        index = part.get(self.stub)
        if index is not None:
            return self.source[slice(*self.spans[int(index)])]
        return part.as_bytes(policy=compat32).partition(b"\n\n")[2]


def uudecode(body: bytes) -> bytes:
    """A uuencoded body's bytes, with or without its `begin` and `end` lines.

    Some mailers label a part `x-uuencode` and send only the encoded lines; the
    stdlib then hands the encoded text on as the attachment, so the lines are
    decoded here. Lines a broken encoder padded wrongly are cut to their length.
    """
    lines = body.splitlines()
    if any(line.startswith(b"begin ") for line in lines):
        lines = list(dropwhile(lambda line: not line.startswith(b"begin "), lines))[1:]
    decoded: list[bytes] = []
    for line in takewhile(lambda line: line.strip() != b"end", lines):
        if not line.strip():
            continue
        try:
            decoded.append(binascii.a2b_uu(line))
        except binascii.Error:
            size = (((line[0] - 32) & 63) * 4 + 5) // 3
            try:
                decoded.append(binascii.a2b_uu(line[:size]))
            except binascii.Error:
                return body  # not uuencoded after all: kept as sent
    return b"".join(decoded)


def cut_bodies(head: bytes, source: bytes, body: int, max_depth: int) -> Skeleton:
    """The message `head + source[body:]` with its large leaf bodies cut out.

    `head` is the top-level header block with its blank line; when the stdlib
    parser would not end the headers exactly there, nothing is cut.
    """
    stub = f"{STUB_PREFIX}{secrets.token_hex(8)}"
    cutter = _Cutter(source, max_depth)
    blank, start = _header_end(head, 0, len(head))
    if blank is None or start != len(head):
        return cutter.skeleton(head, body, stub)
    leaf = cutter.entity(_headers(head[:blank], digest=False), body, len(source), 0)
    if not (leaf and len(source) - body > CUT_SIZE):
        return cutter.skeleton(head, body, stub)
    message = head[:blank] + _stub_line(stub, 0) + head[blank:]
    return Skeleton(message, source, stub, ((body, len(source)),))


@dataclass(slots=True)
class _Cutter:
    """Walks the parts as the stdlib feedparser will, noting the leaf bodies to cut."""

    source: bytes
    max_depth: int
    cuts: list[tuple[int, int, int]] = field(default_factory=list)

    def entity(self, headers: Message, body: int, end: int, depth: int) -> bool:
        """Scan a multipart's parts; whether this entity is a leaf whose body may be cut."""
        if headers.get_content_maintype() != "multipart":
            return headers.get_content_maintype() != "message"
        separator = _separator(headers)
        if separator is not None and depth < self.max_depth:
            digest = headers.get_content_type() == "multipart/digest"
            self.multipart(body, end, separator, digest, depth + 1)
        return False

    def multipart(self, start: int, end: int, separator: bytes, digest: bool, depth: int) -> None:
        """The parts between `separator` lines; `end` is where an outer boundary ends it."""
        pos = self.boundary(start, end, separator)
        while pos < end and not self.closes(pos, separator):
            pos = _line_end(self.source, pos)
            while pos < end and self.tail(pos, separator):  # repeated boundary lines
                pos = _line_end(self.source, pos)
            part_end = self.boundary(pos, end, separator)
            self.part(pos, part_end, digest, depth)
            pos = part_end

    def part(self, start: int, end: int, digest: bool, depth: int) -> None:
        blank, body = _header_end(self.source, start, end)
        headers = _headers(self.source[start : body if blank is None else blank], digest=digest)
        if self.entity(headers, body, end, depth) and blank is not None:
            stop = _without_line_end(self.source, body, end)
            if stop - body > CUT_SIZE:
                self.cuts.append((blank, body, stop))

    def boundary(self, pos: int, end: int, separator: bytes) -> int:
        """The first `separator` line in [pos, end), else `end`."""
        if pos < end and self.tail(pos, separator):
            return pos
        for candidate in _DASHES.finditer(self.source, pos, end):
            if self.tail(candidate.start() + 1, separator):
                return candidate.start() + 1
        return end

    def tail(self, pos: int, separator: bytes) -> re.Match[bytes] | None:
        """What follows `separator` on a boundary line at `pos` (feedparser's boundaryre)."""
        if not self.source.startswith(separator, pos):
            return None
        return _BOUNDARY_TAIL.match(self.source, pos + len(separator), _line_end(self.source, pos))

    def closes(self, pos: int, separator: bytes) -> bool:
        tail = self.tail(pos, separator)
        return tail is not None and tail.group(1) is not None

    def skeleton(self, head: bytes, body: int, stub: str) -> Skeleton:
        """Head, then the source from `body` with a stub header for each cut body."""
        if not self.cuts and len(head) == body and self.source.startswith(head):
            return Skeleton(self.source, self.source, stub, ())
        view = memoryview(self.source)
        pieces: list[bytes | memoryview] = [head]
        pos = body
        for index, (blank, start, end) in enumerate(self.cuts):
            pieces += [view[pos:blank], _stub_line(stub, index), view[blank:start]]
            pos = end
        pieces.append(view[pos:])
        spans = tuple((start, end) for _, start, end in self.cuts)
        return Skeleton(b"".join(pieces), self.source, stub, spans)


def _header_end(data: bytes, pos: int, end: int) -> tuple[int | None, int]:
    """Where the feedparser ends the header block at `pos`: its blank line, and
    the start of the body. The blank line is None when there is none, or when
    the last header is a `From ` line (the feedparser gives that to the body).
    """
    first = last = pos
    while pos < end:
        if not _HEADER_LINE.match(data, pos):
            if data[pos] not in b"\r\n":
                return None, pos
            envelope = last != first and data.startswith(b"From ", last)
            return None if envelope else pos, _line_end(data, pos)
        last, pos = pos, _line_end(data, pos)
    return None, end


def _headers(block: bytes, *, digest: bool) -> Message:
    headers = message_from_bytes(block, policy=compat32)
    if digest:
        headers.set_default_type("message/rfc822")
    return headers


def _separator(headers: Message) -> bytes | None:
    """`--boundary` as bytes, or None when no line of the message can match it."""
    boundary = headers.get_boundary()
    if boundary is None:
        return None
    try:
        separator = ("--" + boundary).encode("ascii", "surrogateescape")
    except UnicodeEncodeError:
        return None
    return None if b"\r" in separator or b"\n" in separator else separator


def _line_end(data: bytes, pos: int) -> int:
    match = _LINE_END.search(data, pos)
    return len(data) if match is None else match.end()


def _without_line_end(data: bytes, start: int, end: int) -> int:
    """`end` less the line end that belongs to the next boundary (RFC 2046)."""
    if data.endswith(b"\r\n", start, end):
        return end - 2
    return end - 1 if data.endswith((b"\r", b"\n"), start, end) else end


def _stub_line(stub: str, index: int) -> bytes:
    return f"{stub}: {index}\n".encode("ascii")


def _clean_base64(data: bytes, start: int, end: int) -> bool:
    """Whether the stdlib would decode the body strictly: base64 lines, padding at the end."""
    if not _CLEAN_BASE64.fullmatch(data, start, end):
        return False
    breaks = data.count(b"\r", start, end) + data.count(b"\n", start, end)
    return (end - start - breaks) % 4 == 0
