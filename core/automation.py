"""Timed rules: escalations, auto-close of inactive tickets and feedback requests.

A pass runs `stages(policy)` in order; each stage finds candidate ticket ids,
then the job runner loads every ticket in its own unit of work and calls the
stage's `apply`, which re-checks the pure rule (`*_due`) and acts. Each rule
leaves a ticket-log line, so it acts at most once per ticket.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial

from core import events
from core.actors import SYSTEM
from core.badges import OPERATOR
from core.markdown import render_markdown
from core.model import NOTE, Message, Ticket
from core.options import OptionChanges, update_ticket
from core.policy import CLOSED, PRIORITIES, EscalationRule, Policy
from core.ports import UnitOfWork
from core.ticketing import MENTION, log

ESCALATION = "escalation"
AUTO_CLOSED = "auto-closed"
FEEDBACK_REQUESTED = "feedback requested"
FEEDBACK_WINDOW = timedelta(days=7)
"""A ticket closed longer ago than this gets no feedback request (e.g. on first start)."""


def rule_changes(rule: EscalationRule) -> OptionChanges:
    """The option changes an escalation rule makes."""
    return OptionChanges(
        status=rule.set_status or None,
        priority=rule.set_priority or None,
        department_email=rule.set_department or None,
        flag_username=rule.flag_to or None,
    )


Candidates = Callable[[UnitOfWork, Policy, datetime], list[int]]
Apply = Callable[[UnitOfWork, Ticket, Policy, datetime], str | None]


@dataclass(frozen=True, slots=True)
class Stage:
    """One timed rule: how to find candidates, and how to act on one ticket."""

    name: str
    candidates: Candidates
    apply: Apply


def stages(policy: Policy) -> list[Stage]:
    """The pass, in order: valid escalation rules, then auto-close, then feedback requests."""
    valid = [r for r in policy.escalations if not _rule_problems(r, policy)]
    return [
        *(
            Stage(f"escalation {r.name}", partial(escalation_candidates, r), partial(escalate, r))
            for r in valid
        ),
        Stage("auto-close", auto_close_candidates, auto_close),
        Stage("feedback requests", feedback_candidates, request_feedback),
    ]


# the pure rules


def applied(ticket: Ticket, action: str, detail: str | None = None) -> bool:
    """Whether the ticket log already holds this action (with this detail, when given)."""
    return any(e.action == action and detail in (None, e.detail) for e in ticket.log)


def auto_close_due(ticket: Ticket, policy: Policy, now: datetime) -> bool:
    """An auto-close status, and no activity for more than close_inactive_hours (0: never)."""
    status = policy.status(ticket.status)
    if policy.close_inactive_hours <= 0 or status is None or not status.auto_close:
        return False
    idle = now - ticket.last_activity_at
    return ticket.merged_into_id is None and idle > timedelta(hours=policy.close_inactive_hours)


def escalation_due(
    ticket: Ticket, rule: EscalationRule, department_email: str, policy: Policy, now: datetime
) -> bool:
    """The rule matches the ticket, its last reply is old enough, and it never fired here."""
    if ticket.merged_into_id is not None or applied(ticket, ESCALATION, rule.name):
        return False
    return (
        _among(department_email, rule.departments)
        and _among(ticket.priority, rule.priorities)
        and ticket.status.lower() in {s.lower() for s in _statuses(rule, policy)}
        and now - ticket.last_reply_at > timedelta(minutes=rule.idle_minutes)
    )


def feedback_due(ticket: Ticket, feedback_requests: bool, now: datetime) -> bool:
    """Closed lately in a department that asks for feedback, and never asked before."""
    return (
        feedback_requests
        and ticket.status == CLOSED
        and ticket.merged_into_id is None
        and now - ticket.last_activity_at <= FEEDBACK_WINDOW
        and not applied(ticket, FEEDBACK_REQUESTED)
    )


def rule_problems(policy: Policy) -> list[str]:
    """What is wrong with the configured escalation rules; such rules never run."""
    problems = [p for rule in policy.escalations for p in _rule_problems(rule, policy)]
    names = [r.name for r in policy.escalations]
    problems += [
        f"escalation rule name {n!r} is used twice"
        for n in sorted(set(names))
        if names.count(n) > 1
    ]
    return problems


def _rule_problems(rule: EscalationRule, policy: Policy) -> list[str]:
    problems = [
        *_unknown("status", rule.statuses, rule.set_status, lambda s: policy.status(s) is not None),
        *_unknown("priority", rule.priorities, rule.set_priority, lambda p: _among(p, PRIORITIES)),
        *_unknown(
            "department",
            rule.departments,
            rule.set_department,
            lambda d: policy.department_for(d) is not None,
        ),
    ]
    if rule_changes(rule) == OptionChanges() and not rule.note:
        problems.append("no action (set_status, set_priority, set_department, flag_to, note)")
    return [f"escalation rule {rule.name!r}: {p}" for p in problems]


def _unknown(
    kind: str, names: tuple[str, ...], extra: str, known: Callable[[str], bool]
) -> list[str]:
    return [f"unknown {kind} {n!r}" for n in (*names, extra) if n and not known(n)]


def _among(value: str, allowed: tuple[str, ...]) -> bool:
    return not allowed or value.lower() in {a.lower() for a in allowed}


def _statuses(rule: EscalationRule, policy: Policy) -> list[str]:
    if rule.statuses:
        return [s.name for s in policy.statuses if _among(s.name, rule.statuses)]
    return [s.name for s in policy.statuses if s.active]


# candidates: a coarse query; `apply` re-checks each ticket under its lock


def escalation_candidates(
    rule: EscalationRule, uow: UnitOfWork, policy: Policy, now: datetime
) -> list[int]:
    departments = [uow.department_by_email(e) for e in rule.departments]
    return uow.job_candidates(
        _statuses(rule, policy),
        department_ids=[d.id for d in departments if d and d.id] if rule.departments else None,
        priorities=[p for p in PRIORITIES if _among(p, rule.priorities)],
        reply_before=now - timedelta(minutes=rule.idle_minutes),
        unlogged=(ESCALATION, rule.name),
    )


def auto_close_candidates(uow: UnitOfWork, policy: Policy, now: datetime) -> list[int]:
    if policy.close_inactive_hours <= 0:
        return []
    return uow.job_candidates(
        [s.name for s in policy.statuses if s.auto_close],
        activity_before=now - timedelta(hours=policy.close_inactive_hours),
    )


def feedback_candidates(uow: UnitOfWork, policy: Policy, now: datetime) -> list[int]:
    asking = [d.id for d in uow.departments() if d.feedback_requests and d.id is not None]
    if not asking:
        return []
    return uow.job_candidates(
        [CLOSED],
        department_ids=asking,
        activity_since=now - FEEDBACK_WINDOW,
        unlogged=(FEEDBACK_REQUESTED, None),
    )


# the actions: each returns what it did, or None when the rule no longer applies


def escalate(
    rule: EscalationRule, uow: UnitOfWork, ticket: Ticket, policy: Policy, now: datetime
) -> str | None:
    """Apply the rule's actions as the system, once per ticket."""
    department = uow.department(ticket.department_id)
    email = department.email if department else ""
    if not escalation_due(ticket, rule, email, policy, now):
        return None
    if rule_changes(rule) != OptionChanges():
        update_ticket(uow, ticket, SYSTEM, rule_changes(rule), policy, now)
    if rule.note:
        _system_note(uow, ticket, rule.note, now)
    log(ticket, SYSTEM, ESCALATION, rule.name, now)
    return rule.describe()


def _system_note(uow: UnitOfWork, ticket: Ticket, body: str, now: datetime) -> None:
    note = Message(
        kind=NOTE,
        author_email="",
        author_name=SYSTEM.name,
        badge=OPERATOR,
        body=body,
        body_html=render_markdown(body),
        created_at=now,
    )
    ticket.messages.append(note)
    mentioned = [uow.admin_by_username(name.rstrip(".")) for name in MENTION.findall(body)]
    ids = tuple(dict.fromkeys(a.id for a in mentioned if a is not None and a.id is not None))
    log(ticket, SYSTEM, "note", "note added by escalation", now)
    uow.flush()
    assert ticket.id is not None and note.id is not None
    uow.events.append(events.NoteAdded(ticket.id, None, note.id, ids))


def auto_close(uow: UnitOfWork, ticket: Ticket, policy: Policy, now: datetime) -> str | None:
    """Close an inactive ticket and tell its requester (TicketAutoClosed)."""
    if not auto_close_due(ticket, policy, now):
        return None
    hours = int((now - ticket.last_activity_at).total_seconds() // 3600)
    update_ticket(uow, ticket, SYSTEM, OptionChanges(status=CLOSED), policy, now)
    log(ticket, SYSTEM, AUTO_CLOSED, f"after {hours} h without activity", now)
    assert ticket.id is not None
    uow.events.append(events.TicketAutoClosed(ticket.id, None))
    return f"auto-closed after {hours} h without activity"


def request_feedback(uow: UnitOfWork, ticket: Ticket, policy: Policy, now: datetime) -> str | None:
    """Ask the requester of a closed ticket for feedback (FeedbackRequested), once."""
    department = uow.department(ticket.department_id)
    if department is None or not feedback_due(ticket, department.feedback_requests, now):
        return None
    log(ticket, SYSTEM, FEEDBACK_REQUESTED, f"to {ticket.requester_email}", now)
    assert ticket.id is not None
    uow.events.append(events.FeedbackRequested(ticket.id, None))
    return f"feedback requested from {ticket.requester_email}"
