"""Header-field stage of parsing: decoded header values to typed fields.

Addresses, Message-IDs, dates and the return path come out of the values the
message stage decoded; what cannot be read becomes empty or None, never an error.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from email.message import Message
from email.utils import getaddresses, parsedate_to_datetime

from core.mail import Address
from mailgate.charsets import collapse, decode_words, fix_8bit

_MSG_ID = re.compile(r"<([^<>]*)>")
_WORD = r"=\?[^?\s]+\?[bBqQ]\?[^?\s]*\?="
_ENCODED_RUN = re.compile(rf"{_WORD}(?:\s+{_WORD})*")
_QUOTED = re.compile(r'("(?:[^"\\]|\\.)*")')
_UNESCAPE = re.compile(r"\\(.)")
_COMMENT = re.compile(r"\([^()]*\)")
_NAME_THEN_ADDRESS = re.compile(r"([^<>]*[^\s<>][^<>]*?)\s*<\s*([^<>\s]+)\s*>")
_LEADING_ADDRESS = re.compile(
    r"\s*<?([^\s<>()\[\],;:@\"]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+)>?(?=[\s,;]|$)"
)


def addresses(msg: Message, name: str, hint: str | None = None) -> tuple[Address, ...]:
    """The valid addresses of every `name` header, in order.

    Encoded words become quoted strings before the header is split into
    mailboxes, so an encoded display name (`=?utf-8?q?a_b@evil?=`) stays a
    name and can never turn into an address or a group of its own.
    """
    values = [
        _protect_words(collapse(fix_8bit(str(value), hint)))
        for key, value in msg.raw_items()
        if key.strip().lower() == name
    ]
    # Text outside quoted strings and comments: an address must be written there,
    # or getaddresses has made it out of a (decoded) display name.
    bare = "".join(_COMMENT.sub("", _QUOTED.sub(" ", value)) for value in values)
    written = "".join(bare.lower().split())
    found = tuple(
        Address(email=addr.lower(), name=collapse(display))
        for display, addr in getaddresses(values)
        if valid_address(addr) and addr.lower() in written
    )
    if len(found) == 1 and not found[0].name and len(values) == 1:
        return (Address(email=found[0].email, name=_name_before(values[0], found[0].email)),)
    if found:
        return found
    # `a@x.test b@x.test`: the grammar fails, but a header that starts with an
    # address names that mailbox first, as RFC 5322 parsers read it. Quoted strings
    # (decoded words among them) stay in place, so none can lend an address its tail.
    leading = _LEADING_ADDRESS.match(_COMMENT.sub("", " ".join(values)))
    if leading is None or not valid_address(leading.group(1)):
        return ()
    return (Address(email=leading.group(1).lower()),)


def _name_before(value: str, email: str) -> str:
    """The display name of a lone `name <addr>` that the mailbox grammar broke up
    (`Max Kohl [ACME] <max@x.test>`: brackets and bars outside quotes), else ""."""
    match = _NAME_THEN_ADDRESS.fullmatch(value.strip())
    if match is None or match.group(2).lower() != email:
        return ""
    return collapse(_UNESCAPE.sub(r"\1", match.group(1).strip().strip('"')))


def _protect_words(value: str) -> str:
    """Encoded words, in or out of quotes, as decoded quoted strings."""
    parts = _QUOTED.split(value)
    for index, part in enumerate(parts):
        if index % 2:
            parts[index] = _quote(decode_words(_UNESCAPE.sub(r"\1", part[1:-1])))
        else:
            parts[index] = _ENCODED_RUN.sub(lambda m: _quote(decode_words(m.group(0))), part)
    return "".join(parts)


def _quote(text: str) -> str:
    """`text` on one line as a quoted string."""
    text = collapse(text)
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def valid_address(addr: str) -> bool:
    """A local part and a domain, and nothing that cannot be in an addr-spec."""
    local, _, domain = addr.rpartition("@")
    unsafe = re.search(r"[\s\x00-\x1f\x7f<>\"]", addr) or "=?" in addr
    return bool(local and domain) and not unsafe


def message_ids(value: str | None) -> tuple[str, ...]:
    """The distinct Message-IDs an In-Reply-To or References value points to, brackets
    and comments removed. Only `id@domain` counts: `<yes>` (an old git-send-email
    slip) would otherwise thread unrelated mail together."""
    return tuple(i for i in _bracketed_ids(value) if "@" in i)


def _bracketed_ids(value: str | None) -> tuple[str, ...]:
    if not value:
        return ()
    found = [_clean_id(m) for m in _MSG_ID.findall(value)]
    if not found:
        found = [token.strip("<>") for token in value.split() if "@" in token]
    return tuple(dict.fromkeys(i for i in found if i))


def first_id(value: str | None) -> str | None:
    """A message's own Message-ID: its first bracketed id, or its first token."""
    ids = _bracketed_ids(value)
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
