"""E-mail address validation shared by the directory, intake and outbound mail."""

from __future__ import annotations

import re

_LOCAL_PART = re.compile(r"[a-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[a-z0-9!#$%&'*+/=?^_`{|}~-]+)*")
_DOMAIN_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")


def valid_email(text: str, *, allow_single_label: bool = False) -> str | None:
    """`text` as a lower-case addr-spec, or None if it is not a plain, safe one.

    Accepted: a dot-atom local part (no quoted strings, no comments, no `=?`)
    of at most 64 characters, `@`, and a domain name of letter-digit-hyphen labels with at
    least one dot, at most 254 characters in all. International domains are
    turned into their `xn--` form. A single-label domain (`root@localhost`)
    passes only with `allow_single_label`.
    """
    local, at, domain = text.strip().lower().partition("@")
    ascii_domain = _ascii_domain(domain)
    if not at or ascii_domain is None or not _safe_local_part(local):
        return None
    labels = ascii_domain.split(".")
    if len(labels) < 2 and not allow_single_label:
        return None
    if labels[-1].isdigit() or not all(_DOMAIN_LABEL.fullmatch(label) for label in labels):
        return None
    address = f"{local}@{ascii_domain}"
    return address if len(address) <= 254 else None


def _safe_local_part(local: str) -> bool:
    # Python's address parser decodes RFC 2047 words even in a local part.
    return len(local) <= 64 and "=?" not in local and bool(_LOCAL_PART.fullmatch(local))


def _ascii_domain(domain: str) -> str | None:
    if domain.isascii():
        return domain
    try:
        return domain.encode("idna").decode("ascii")
    except UnicodeError:
        return None
