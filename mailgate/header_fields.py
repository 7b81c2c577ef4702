"""Header-field stage of parsing: decoded header values to typed fields.

Addresses, Message-IDs, dates and the return path come out of the values the
message stage decoded; what cannot be read becomes empty or None, never an error.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from email.utils import getaddresses, parsedate_to_datetime

from core.mail import Address
from mailgate.charsets import collapse

_MSG_ID = re.compile(r"<([^<>]*)>")


def addresses(headers: list[tuple[str, str]], name: str) -> tuple[Address, ...]:
    """The valid addresses of every `name` header, in order."""
    values = [value for key, value in headers if key == name]
    found = []
    for display, addr in getaddresses(values):
        if valid_address(addr):
            found.append(Address(email=addr.lower(), name=collapse(display)))
    return tuple(found)


def valid_address(addr: str) -> bool:
    """A local part and a domain, and nothing that cannot be in an addr-spec."""
    local, _, domain = addr.rpartition("@")
    return bool(local and domain) and not re.search(r"[\s\x00-\x1f\x7f<>]", addr)


def message_ids(value: str | None) -> tuple[str, ...]:
    """The distinct Message-IDs of a header value, brackets and comments removed."""
    if not value:
        return ()
    found = [_clean_id(m) for m in _MSG_ID.findall(value)]
    if not found:
        found = [token.strip("<>") for token in value.split() if "@" in token]
    return tuple(dict.fromkeys(i for i in found if i))


def first_id(value: str | None) -> str | None:
    """The first Message-ID of a value, or its first token when it holds none."""
    ids = message_ids(value)
    if ids:
        return ids[0]
    token = value.split()[0].strip("<>") if value and value.split() else ""
    return token or None


def _clean_id(text: str) -> str:
    return re.sub(r"\([^()]*\)|\s+", "", text)


def mail_date(value: str | None) -> datetime | None:
    """The Date header as an aware datetime (UTC when it names no zone)."""
    if not value:
        return None
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def return_path(value: str | None) -> str | None:
    """The Return-Path address, lower case; "" for the null sender `<>`."""
    if value is None:
        return None
    ids = _MSG_ID.findall(value)
    return (ids[0] if ids else value).strip().lower()
