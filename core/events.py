"""Domain events: what happened to a ticket, for the notification router.

Operations append them to the unit of work; the router turns them into outbox
rows before the same transaction commits.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Event:
    """Something that happened to a ticket, and who did it (admin id or None)."""

    ticket_id: int
    actor_admin_id: int | None


@dataclass(frozen=True, slots=True)
class TicketOpened(Event):
    message_id: int
    by_admin: bool
    acknowledge: bool = True


@dataclass(frozen=True, slots=True)
class ClientReplied(Event):
    message_id: int


@dataclass(frozen=True, slots=True)
class AdminReplied(Event):
    message_id: int


@dataclass(frozen=True, slots=True)
class NoteAdded(Event):
    message_id: int
    mentioned_admin_ids: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class OptionsChanged(Event):
    changes: tuple[tuple[str, str, str], ...]


@dataclass(frozen=True, slots=True)
class DepartmentChanged(Event):
    old_department_id: int
    new_department_id: int


@dataclass(frozen=True, slots=True)
class TicketFlagged(Event):
    admin_id: int


@dataclass(frozen=True, slots=True)
class TicketUnflagged(Event):
    admin_id: int


@dataclass(frozen=True, slots=True)
class TicketAutoClosed(Event):
    pass


@dataclass(frozen=True, slots=True)
class FeedbackRequested(Event):
    pass


@dataclass(frozen=True, slots=True)
class ReplyBlocked(Event):
    import_id: int
    reason: str
