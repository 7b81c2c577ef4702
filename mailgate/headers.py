"""The guard every outbound header value passes, so inbound text cannot forge headers.

Subjects and names from inbound mail are re-used in notifications. A newline
in them, or an RFC 2047 word that decodes to one (CVE-2024-6923: the email
package re-emits decoded words unencoded), would start a new header such as
Bcc. Values are flattened to one line here, and `=?` is broken up so no
parser can decode anything from them; addresses must be plain addr-specs.
"""

from __future__ import annotations

import re
import unicodedata
from email.headerregistry import Address

from core.addresses import valid_email
from core.errors import InvalidAddress

_LINE_BREAKING = frozenset({"Cc", "Zl", "Zp"})
_HEADER_NAME = re.compile(r"[\x21-\x39\x3b-\x7e]{1,76}")


def clean_header_text(value: str, max_len: int = 900) -> str:
    """`value` as one line of at most `max_len` characters, safe in any header."""
    if max_len < 1:
        raise ValueError("max_len must be at least 1")
    if value.isascii() and value.isprintable():
        text = value  # no control, line-breaking or surrogate characters to replace
    else:
        text = "".join(_clean_char(char) for char in value)
    text = " ".join(text.split()).replace("=?", "= ?")
    return text[:max_len].rstrip()


def format_address(name: str, email: str) -> str:
    """A `Name <addr>` header value with the name cleaned and quoted as needed.

    Non-ASCII names stay readable here; `EmailMessage` RFC 2047-encodes them
    when it serialises. The result passes `clean_header_text` unchanged, so it
    may go through `safe_headers` too.
    """
    address = valid_email(email)
    if address is None:
        raise InvalidAddress(f"not a usable e-mail address: {email!r}")
    local, _, domain = address.partition("@")
    display_name = clean_header_text(name, max_len=200)
    return str(Address(display_name=display_name, username=local, domain=domain))


def safe_headers(pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """`pairs` with every value cleaned; a malformed header name raises ValueError."""
    for name, _ in pairs:
        if not _HEADER_NAME.fullmatch(name):
            raise ValueError(f"not a valid header name: {name!r}")
    return [(name, clean_header_text(value)) for name, value in pairs]


def _clean_char(char: str) -> str:
    category = unicodedata.category(char)
    if category in _LINE_BREAKING:
        return " "
    return "\ufffd" if category == "Cs" else char
