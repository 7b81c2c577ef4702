"""The errors ticketd raises on purpose; each maps to an exit code or a reason.

Expected outcomes (blocked, duplicate, auto-reply) are return values, not
errors; these classes are for what a caller must stop on.
"""

from __future__ import annotations

from typing import Literal

MalformedReason = Literal["malformed", "too_large"]


class TicketdError(Exception):
    """Base of every expected failure; its message is shown to the user as is."""

    exit_code = 1


class ConfigError(TicketdError):
    """The configuration is invalid or names something unreachable."""

    exit_code = 78


class UsageError(TicketdError):
    """A command was given arguments that make no sense."""

    exit_code = 2


class NotFound(TicketdError):
    """A ticket, message, client or entry does not exist."""

    exit_code = 4


class Conflict(TicketdError):
    """The change would break a uniqueness rule (an address already used...)."""


class AccessDenied(TicketdError):
    """An admin acted on a ticket outside their departments."""


class TransientError(TicketdError):
    """A failure worth retrying later (database locked or down, disk full)."""

    exit_code = 75


class InvalidAddress(TicketdError):
    """An e-mail address that is not a plain, safe addr-spec."""


class MalformedMail(TicketdError):
    """A message that cannot be parsed, or that exceeds the parsing limits.

    `reason` is exactly "malformed" or "too_large"; `detail` says why, for logs.
    """

    def __init__(self, reason: MalformedReason, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason: MalformedReason = reason
        self.detail = detail
