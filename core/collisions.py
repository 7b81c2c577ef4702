"""Collision detection: which of the seed's collision attributes changed since a version.

Each change to a collision attribute bumps the ticket's version and logs the
old and new value; a caller holding an older version gets the list of what
changed instead of applying its operation.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.model import LogEntry, Ticket

COLLISION_ACTIONS = {
    "department": "Department",
    "subject": "Ticket Subject",
    "priority": "Ticket Priority",
    "client": "Assigned Client",
    "flag": "Assigned Admin User",
    "cc": "CC Recipients",
    "reply": "Last Reply Time",
    "status": "Ticket Status",
}


@dataclass(frozen=True, slots=True)
class Change:
    """One collision attribute that changed: its name, old and new value."""

    attribute: str
    old: str
    new: str


@dataclass(frozen=True, slots=True)
class CollisionReport:
    """What changed on the ticket between the caller's version and now."""

    number: str
    expected_version: int
    current_version: int
    changes: tuple[Change, ...]


def collision_report(ticket: Ticket, expected_version: int) -> CollisionReport | None:
    """None when the ticket is still at `expected_version`, else what changed since."""
    if ticket.version == expected_version:
        return None
    changes: list[Change] = []
    for entry in ticket.log:
        if entry.version is not None and entry.version > expected_version:
            changes.append(_change_of(entry))
    return CollisionReport(ticket.number, expected_version, ticket.version, tuple(changes))


def _change_of(entry: LogEntry) -> Change:
    old, _, new = entry.detail.partition(" -> ")
    return Change(COLLISION_ACTIONS.get(entry.action, entry.action), old, new)


def describe(report: CollisionReport) -> str:
    """A readable collision report for the terminal."""
    lines = [
        f"ticket {report.number} changed since version {report.expected_version} "
        f"(now {report.current_version}):"
    ]
    lines += [f"  {c.attribute}: {c.old or '-'} -> {c.new or '-'}" for c in report.changes]
    return "\n".join(lines)
