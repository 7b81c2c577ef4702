"""Limits stage of parsing: refuse, with a cheap scan of the raw bytes, a message
too big, too deep or with too many parts before any parser builds a tree of it.

`check_limits` raises `MalformedMail` or returns; it hands nothing on.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from core.errors import MalformedMail

_MULTIPART_DECL = re.compile(
    rb"content-type:[ \t]*multipart/[^\r\n]*(?:\r?\n[ \t][^\r\n]*)*", re.IGNORECASE
)
_MESSAGE_DECL = re.compile(rb"content-type:[ \t]*message/", re.IGNORECASE)
_BOUNDARY_PARAM = re.compile(rb'boundary\s*=\s*(?:"([^"\r\n]*)"|([^\s;]+))', re.IGNORECASE)
_DELIMITER = re.compile(rb"^--([^\r\n]*?)[ \t]*\r?$", re.MULTILINE)


@dataclass(frozen=True, slots=True)
class MessageLimits:
    """Bounds checked on the raw bytes before the message is parsed."""

    max_bytes: int = 26_214_400
    max_headers: int = 1000
    max_header_bytes: int = 1_048_576
    max_depth: int = 20
    max_parts: int = 500


def check_limits(raw: bytes, limits: MessageLimits) -> None:
    """Refuse, with a cheap scan, messages too big, too deep or with too many parts."""
    if len(raw) > limits.max_bytes:
        raise MalformedMail("too_large", f"{len(raw)} bytes > {limits.max_bytes}")
    head = _header_block(raw)
    if len(head) > limits.max_header_bytes:
        raise MalformedMail("too_large", f"header block of {len(head)} bytes")
    count = len(re.findall(rb"^[^ \t\r\n]", head, re.MULTILINE))
    if count > limits.max_headers:
        raise MalformedMail("malformed", f"{count} header lines > {limits.max_headers}")
    depth, parts = _structure_size(raw)
    if depth > limits.max_depth:
        raise MalformedMail("malformed", f"MIME nesting depth {depth} > {limits.max_depth}")
    if parts > limits.max_parts:
        raise MalformedMail("malformed", f"{parts} MIME parts > {limits.max_parts}")


def _header_block(raw: bytes) -> bytes:
    match = re.search(rb"\r?\n\r?\n", raw)
    return raw if match is None else raw[: match.start()]


def _structure_size(raw: bytes) -> tuple[int, int]:
    """Upper bounds of nesting depth and part count from declarations and delimiters."""
    events: list[tuple[int, bytes | None]] = []
    for decl in _MULTIPART_DECL.finditer(raw):
        param = _BOUNDARY_PARAM.search(decl.group())
        if param and (param.group(1) or param.group(2)):
            events.append((decl.start(), param.group(1) or param.group(2)))
    events.extend((m.start(), None) for m in _MESSAGE_DECL.finditer(raw))
    boundaries = {b for _, b in events if b}
    events.extend((m.start(), b"--" + m.group(1)) for m in _DELIMITER.finditer(raw))
    stack: list[bytes | None] = []
    depth = parts = 0
    for _, item in sorted(events, key=lambda e: e[0]):
        if item is None or not item.startswith(b"--"):
            stack.append(item)
            depth = max(depth, len(stack))
            continue
        name = item[2:]
        closing = name.endswith(b"--") and name[:-2] in boundaries and name[:-2] in stack
        key = name[:-2] if closing else name
        if key in boundaries and key in stack:
            while stack and stack[-1] != key:
                stack.pop()
            parts += 0 if closing else 1
            if closing:
                stack.pop()
    return depth + 1, parts
