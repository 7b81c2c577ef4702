"""Signed reply tokens carried in Reply-To addresses (`support+TOKEN@example.com`).

Outbound notifications get a token naming the ticket, its version at sending
time and the recipient; an inbound reply whose token verifies for its sender
is matched to the ticket without trusting the subject. The token holds the
ticket id and version in plain sight and an 80-bit HMAC-SHA256 tag that also
covers the recipient, so it verifies only when that recipient writes back.
Base32 in lower case, no padding: mail systems may change the case of a
local part, and decoding ignores it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import struct
from dataclasses import dataclass

_MAC_BYTES = 10
_MAX_VALUE = 2**63 - 1
_DOMAIN = b"ticketd reply token v1\x00"
# Two varints of at most 9 bytes each (values below 2**63) plus the tag.
_MAX_TOKEN_LEN = -(-(9 + 9 + _MAC_BYTES) * 8 // 5)
_MIN_TOKEN_LEN = -(-(1 + 1 + _MAC_BYTES) * 8 // 5)
_BASE32_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz234567")


@dataclass(frozen=True, slots=True)
class TokenClaims:
    """What a verified token says: the ticket, its version when sent, and to whom."""

    ticket_id: int
    version: int
    recipient: str


def issue_token(secret: bytes, ticket_id: int, version: int, recipient: str) -> str:
    """A token for mail about `ticket_id` at `version` sent to `recipient`."""
    for name, value in (("ticket_id", ticket_id), ("version", version)):
        if not 0 <= value <= _MAX_VALUE:
            raise ValueError(f"{name} must be between 0 and 2**63 - 1, not {value}")
    payload = _varint(ticket_id) + _varint(version)
    tag = _tag(secret, ticket_id, version, recipient)
    return base64.b32encode(payload + tag).decode("ascii").rstrip("=").lower()


def verify_token(secret: bytes, token: str, sender: str) -> TokenClaims | None:
    """The claims of `token` if it was issued with `secret` to `sender`, else None."""
    decoded = _decode(token)
    if decoded is None:
        return None
    ticket_id, version = decoded
    expected = issue_token(secret, ticket_id, version, sender)
    if not hmac.compare_digest(expected, token.lower()):
        return None
    return TokenClaims(ticket_id, version, _normalise(sender))


def reply_address(department_email: str, token: str) -> str:
    """`department_email` with `+token` added to its local part."""
    local, at, domain = department_email.rpartition("@")
    if not at or not local:
        raise ValueError(f"not an e-mail address: {department_email!r}")
    return f"{local}+{token}@{domain}"


def split_reply_address(address: str) -> tuple[str, str | None]:
    """Split `address` into the department address and the token it carries, if any.

    Only the last `+part` is considered, and only when it looks like a token, so
    `support+eu@example.com` stays whole and `support+eu+TOKEN@...` gives
    `support+eu@...`. Whether the token is genuine is `verify_token`'s question.
    """
    local, at, domain = address.rpartition("@")
    base, plus, candidate = local.rpartition("+")
    if not at or not plus or not base or not _looks_like_token(candidate):
        return address, None
    return f"{base}@{domain}", candidate


def _looks_like_token(text: str) -> bool:
    lowered = text.lower()
    return (
        text.isascii()
        and _MIN_TOKEN_LEN <= len(lowered) <= _MAX_TOKEN_LEN
        and set(lowered) <= _BASE32_CHARS
    )


def _decode(token: str) -> tuple[int, int] | None:
    if not _looks_like_token(token):
        return None
    padded = token.upper() + "=" * (-len(token) % 8)
    try:
        raw = base64.b32decode(padded)
    except (binascii.Error, ValueError):
        return None
    ticket_id, rest = _read_varint(raw)
    version, rest = _read_varint(rest)
    if ticket_id is None or version is None or len(rest) != _MAC_BYTES:
        return None
    return ticket_id, version


def _tag(secret: bytes, ticket_id: int, version: int, recipient: str) -> bytes:
    message = _DOMAIN + struct.pack(">QQ", ticket_id, version)
    message += _normalise(recipient).encode("utf-8", "surrogatepass")
    return hmac.new(secret, message, hashlib.sha256).digest()[:_MAC_BYTES]


def _normalise(address: str) -> str:
    return address.strip().lower()


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        out.append(low | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _read_varint(data: bytes) -> tuple[int | None, bytes]:
    value = 0
    for index, byte in enumerate(data[:9]):
        value |= (byte & 0x7F) << (7 * index)
        if not byte & 0x80:
            return value, data[index + 1 :]
    return None, data
