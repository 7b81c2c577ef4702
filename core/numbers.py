"""Public ticket numbers drawn from a configurable mask, as the reference desk does.

`%n` a random digit, `%A` / `%a` a random upper / lower-case letter, `%y` `%m` `%d`
the date of `now`, `%%` a percent sign, anything else literal. Uniqueness is the
database's job (a unique index and a retry loop); this module only draws.
"""

from __future__ import annotations

import math
import string
from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import random

DEFAULT_MASK = "%n%n%n%n%n%n"

_RANDOM_PARTS = {
    "%n": string.digits,
    "%A": string.ascii_uppercase,
    "%a": string.ascii_lowercase,
}
_DATE_PARTS = frozenset({"%y", "%m", "%d"})
# Brackets would break the subject tag "[Ticket #NUMBER]".
_FORBIDDEN_LITERALS = frozenset("[]")


def validate_mask(mask: str) -> None:
    """Raise ValueError, saying why, if `mask` cannot produce ticket numbers."""
    _parse(mask)


def generate_number(mask: str, now: datetime, rng: random.Random | None = None) -> str:
    """Draw one number from `mask`; `rng` is for tests, the default is `secrets`."""
    if rng is None:
        import secrets  # on use: `ticketd pipe` loads this module only to check the mask

        rng = secrets.SystemRandom()
    return "".join(_expand(part, now, rng) for part in _parse(mask))


def mask_capacity(mask: str) -> int:
    """How many distinct numbers `mask` can give on one day (date parts held fixed)."""
    return math.prod(len(_RANDOM_PARTS[part]) for part in _parse(mask) if part in _RANDOM_PARTS)


def _parse(mask: str) -> tuple[str, ...]:
    """Split `mask` into placeholders ("%n", two characters) and literals (one character)."""
    parts: list[str] = []
    chars = iter(mask)
    for char in chars:
        if char != "%":
            parts.append(_literal(char, mask))
            continue
        part = char + next(chars, "")
        if part == "%%":
            parts.append("%")
        elif part in _RANDOM_PARTS or part in _DATE_PARTS:
            parts.append(part)
        else:
            shown = part if part != "%" else "a trailing %"
            raise ValueError(f"ticket number mask {mask!r}: unknown placeholder {shown}")
    if not any(part in _RANDOM_PARTS for part in parts):
        raise ValueError(f"ticket number mask {mask!r} has no random part (%n, %A or %a)")
    return tuple(parts)


def _literal(char: str, mask: str) -> str:
    if not char.isprintable() or char.isspace() or char in _FORBIDDEN_LITERALS:
        raise ValueError(f"ticket number mask {mask!r}: {char!r} may not be part of a number")
    return char


def _expand(part: str, now: datetime, rng: random.Random) -> str:
    if part in _RANDOM_PARTS:
        return rng.choice(_RANDOM_PARTS[part])
    if part in _DATE_PARTS:
        value = {"%y": now.year % 100, "%m": now.month, "%d": now.day}[part]
        return f"{value:02d}"
    return part
