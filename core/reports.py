"""Feedback and ratings: a client's overall feedback on a ticket, and the reports on it.

`record_feedback` stores one 1-10 score per closed ticket; `feedback_report`
and `ratings_report` count and average feedback scores and reply ratings per
admin and per department, for `ticketd report ...` to print.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from core.actors import Actor
from core.errors import Conflict, UsageError
from core.model import REPLY, Feedback, Ticket
from core.policy import CLOSED
from core.ports import UnitOfWork
from core.ticketing import log

FEEDBACK = "feedback"


@dataclass(frozen=True, slots=True)
class Score:
    """How many scores one admin or department got, and their mean."""

    name: str
    count: int
    average: float


@dataclass(frozen=True, slots=True)
class Comment:
    """One client's feedback, for the comments part of the feedback report."""

    ticket: str
    score: int
    comment: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Report:
    """Scores overall, per admin (username) and per department (email)."""

    overall: Score
    by_admin: tuple[Score, ...]
    by_department: tuple[Score, ...]
    comments: tuple[Comment, ...] = ()


def record_feedback(
    uow: UnitOfWork, ticket: Ticket, author: Actor, score: int, comment: str, now: datetime
) -> Feedback:
    """The requester's 1-10 score of a closed ticket, once per ticket."""
    if not 1 <= score <= 10:
        raise UsageError("a feedback score is a whole number from 1 to 10")
    if ticket.status != CLOSED:
        raise UsageError(f"ticket {ticket.number} is not closed; feedback comes after closing")
    if any(e.action == FEEDBACK for e in ticket.log):
        raise Conflict(f"ticket {ticket.number} already has feedback")
    assert ticket.id is not None
    feedback = Feedback(ticket_id=ticket.id, score=score, comment=comment.strip(), created_at=now)
    uow.add(feedback)
    log(ticket, author, FEEDBACK, f"score {score}", now)
    return feedback


def feedback_report(uow: UnitOfWork) -> Report:
    """Feedback scores; an admin is credited with each ticket they replied on."""
    rows: list[Scored] = []
    comments: list[Comment] = []
    for item in uow.feedback():
        ticket = uow.ticket(item.ticket_id)
        if ticket is None:
            continue
        rows.append((_department(uow, ticket.department_id), _repliers(uow, ticket), item.score))
        comments.append(Comment(ticket.number, item.score, item.comment, item.created_at))
    return build_report(rows, comments)


def ratings_report(uow: UnitOfWork) -> Report:
    """Reply ratings (1-5) per replying admin and per department."""
    rows: list[Scored] = [
        (_department(uow, department_id), (_username(uow, admin_id),), rating)
        for admin_id, department_id, rating in uow.reply_ratings()
    ]
    return build_report(rows)


Scored = tuple[str, tuple[str, ...], int]
"""(department email, usernames of the admins credited, score)."""


def build_report(rows: Iterable[Scored], comments: Iterable[Comment] = ()) -> Report:
    """Count and average the scores overall, per admin and per department."""
    items = list(rows)
    scores = [score for _, _, score in items]
    return Report(
        overall=Score("all", len(scores), _mean(scores)),
        by_admin=summarize((a, score) for _, admins, score in items for a in admins),
        by_department=summarize((d, score) for d, _, score in items),
        comments=tuple(comments),
    )


def summarize(pairs: Iterable[tuple[str, int]]) -> tuple[Score, ...]:
    """One Score per name, sorted by name."""
    groups: defaultdict[str, list[int]] = defaultdict(list)
    for name, score in pairs:
        groups[name].append(score)
    return tuple(Score(name, len(v), _mean(v)) for name, v in sorted(groups.items()))


def _mean(scores: list[int]) -> float:
    return round(sum(scores) / len(scores), 2) if scores else 0.0


def report_document(report: Report, comments: bool = False) -> dict[str, Any]:
    """The JSON of `ticketd report ... --json`; comments only for the feedback report."""
    document: dict[str, Any] = {
        "overall": _score(report.overall),
        "by_admin": [{"admin": s.name} | _score(s) for s in report.by_admin],
        "by_department": [{"department": s.name} | _score(s) for s in report.by_department],
    }
    if comments:
        document["comments"] = [
            {
                "ticket": c.ticket,
                "score": c.score,
                "comment": c.comment,
                "created_at": c.created_at.isoformat(),
            }
            for c in report.comments
        ]
    return document


def _score(score: Score) -> dict[str, Any]:
    return {"count": score.count, "average": score.average}


def _department(uow: UnitOfWork, department_id: int) -> str:
    department = uow.department(department_id)
    return department.email if department else str(department_id)


def _username(uow: UnitOfWork, admin_id: int) -> str:
    admin = uow.admin(admin_id)
    return admin.username if admin else str(admin_id)


def _repliers(uow: UnitOfWork, ticket: Ticket) -> tuple[str, ...]:
    ids = dict.fromkeys(
        m.admin_id
        for m in ticket.messages
        if m.kind == REPLY and m.admin_id is not None and m.deleted_at is None
    )
    return tuple(_username(uow, i) for i in ids if i is not None)
