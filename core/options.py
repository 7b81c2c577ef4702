"""Ticket options: department, subject, status, priority, flag, CC, client, service, tags.

Every change is logged with its old and new value; changes to the seed's
collision attributes bump the ticket's version.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from core import events
from core.actors import Actor
from core.errors import NotFound, UsageError
from core.model import CustomFieldValue, Ticket, TicketCc, TicketTag, Watch
from core.policy import Policy
from core.ports import UnitOfWork
from core.ticketing import _priority, _status_name, check_access, log, log_change

UNSET = "-"


@dataclass(frozen=True, slots=True)
class OptionChanges:
    """What an admin asks to change; None leaves an option as it is."""

    status: str | None = None
    priority: str | None = None
    department_email: str | None = None
    subject: str | None = None
    flag_username: str | None = None
    unflag: bool = False
    cc: Sequence[str] | None = None
    client_id: int | None = None
    service_ref: str | None = None
    add_tags: Sequence[str] = ()
    remove_tags: Sequence[str] = ()
    custom_fields: dict[str, str] = field(default_factory=dict)


def update_ticket(
    uow: UnitOfWork,
    ticket: Ticket,
    actor: Actor,
    changes: OptionChanges,
    policy: Policy,
    now: datetime,
) -> list[tuple[str, str, str]]:
    """Apply the changes; returns (option, old, new) for each one that took effect."""
    check_access(uow, ticket, actor)
    done: list[tuple[str, str, str]] = []
    if changes.subject is not None and changes.subject.strip() != ticket.subject:
        done.append(_set(ticket, actor, "subject", changes.subject.strip(), now))
    if changes.status is not None:
        status = _status_name(policy, changes.status)
        if status != ticket.status:
            done.append(_set(ticket, actor, "status", status, now))
    if changes.priority is not None:
        priority = _priority(changes.priority)
        if priority != ticket.priority:
            done.append(_set(ticket, actor, "priority", priority, now))
    if changes.cc is not None:
        done += _set_cc(ticket, actor, changes.cc, now)
    if changes.client_id is not None and changes.client_id != ticket.client_id:
        if uow.client(changes.client_id) is None:
            raise NotFound(f"no client {changes.client_id}")
        done.append(_set(ticket, actor, "client", changes.client_id, now, "client_id"))
    if changes.service_ref is not None and changes.service_ref != (ticket.service_ref or ""):
        old = ticket.service_ref or ""
        ticket.service_ref = changes.service_ref or None
        log(ticket, actor, "service", f"{old} -> {changes.service_ref}", now)
        done.append(("service", old, changes.service_ref))
    done += _change_tags(ticket, actor, changes, now)
    done += _set_fields(uow, ticket, actor, changes.custom_fields, now)
    if done:
        _emit_options(uow, ticket, actor, done)
    if changes.department_email is not None:
        _move_department(uow, ticket, actor, changes.department_email, now)
    if changes.unflag:
        unflag_ticket(uow, ticket, actor, now)
    elif changes.flag_username is not None:
        flag_ticket(uow, ticket, actor, changes.flag_username, now)
    ticket.last_activity_at = now
    return done


def _set(
    ticket: Ticket, actor: Actor, action: str, value: object, now: datetime, attr: str = ""
) -> tuple[str, str, str]:
    attr = attr or action
    old = getattr(ticket, attr)
    setattr(ticket, attr, value)
    log_change(ticket, actor, action, old, value, now)
    return (action, str(old), str(value))


def _set_cc(
    ticket: Ticket, actor: Actor, addresses: Sequence[str], now: datetime
) -> list[tuple[str, str, str]]:
    wanted = list(dict.fromkeys(a.strip().lower() for a in addresses if a.strip()))
    for address in wanted:
        if "@" not in address or " " in address:
            raise UsageError(f"not an email address: {address!r}")
    old = [c.email for c in ticket.cc]
    if sorted(old) == sorted(wanted):
        return []
    ticket.cc[:] = [TicketCc(email=a) for a in wanted]
    log_change(ticket, actor, "cc", ", ".join(old), ", ".join(wanted), now)
    return [("cc", ", ".join(old), ", ".join(wanted))]


def _change_tags(
    ticket: Ticket, actor: Actor, changes: OptionChanges, now: datetime
) -> list[tuple[str, str, str]]:
    done: list[tuple[str, str, str]] = []
    have = {t.tag for t in ticket.tags}
    for tag in dict.fromkeys(t.strip().lower() for t in changes.add_tags if t.strip()):
        if tag not in have:
            ticket.tags.append(TicketTag(tag=tag))
            have.add(tag)
            log(ticket, actor, "tag added", tag, now)
            done.append(("tag", "", tag))
    for tag in {t.strip().lower() for t in changes.remove_tags}:
        if tag in have:
            ticket.tags[:] = [t for t in ticket.tags if t.tag != tag]
            have.discard(tag)
            log(ticket, actor, "tag removed", tag, now)
            done.append(("tag", tag, ""))
    return done


def _set_fields(
    uow: UnitOfWork, ticket: Ticket, actor: Actor, values: dict[str, str], now: datetime
) -> list[tuple[str, str, str]]:
    if not values:
        return []
    assert ticket.id is not None
    known = {f.name.lower(): f for f in uow.custom_fields(ticket.department_id)}
    current = {v.field_id: v for v in uow.field_values(ticket.id)}
    done: list[tuple[str, str, str]] = []
    for name, value in values.items():
        definition = known.get(name.lower())
        if definition is None or definition.id is None:
            raise NotFound(f"no custom field {name!r} in this ticket's department")
        row = current.get(definition.id)
        old = row.value if row else ""
        if old == value:
            continue
        if row is None:
            uow.add(CustomFieldValue(ticket_id=ticket.id, field_id=definition.id, value=value))
        else:
            row.value = value
        log(ticket, actor, "custom field", f"{definition.name}: {old} -> {value}", now)
        done.append((definition.name, old, value))
    return done


def _emit_options(
    uow: UnitOfWork, ticket: Ticket, actor: Actor, done: list[tuple[str, str, str]]
) -> None:
    assert ticket.id is not None
    uow.events.append(events.OptionsChanged(ticket.id, actor.admin_id, tuple(done)))


def _move_department(
    uow: UnitOfWork, ticket: Ticket, actor: Actor, email: str, now: datetime
) -> None:
    department = uow.department_by_email(email)
    if department is None or department.id is None:
        raise NotFound(f"no department {email}")
    if department.id == ticket.department_id:
        return
    old = uow.department(ticket.department_id)
    old_id = ticket.department_id
    ticket.department_id = department.id
    log_change(ticket, actor, "department", old.email if old else old_id, department.email, now)
    assert ticket.id is not None
    uow.events.append(events.DepartmentChanged(ticket.id, actor.admin_id, old_id, department.id))


def flag_ticket(
    uow: UnitOfWork, ticket: Ticket, actor: Actor, username: str, now: datetime
) -> None:
    """Flag (assign) the ticket to an admin of its department."""
    admin = uow.admin_by_username(username)
    if admin is None or admin.id is None:
        raise NotFound(f"no admin {username}")
    if ticket.department_id not in uow.admin_departments(admin.id):
        raise UsageError(f"{username} is not a member of this ticket's department")
    if ticket.flagged_admin_id == admin.id:
        return
    previous = ticket.flagged_admin_id
    old = uow.admin(previous) if previous is not None else None
    ticket.flagged_admin_id = admin.id
    log_change(ticket, actor, "flag", old.username if old else "", admin.username, now)
    assert ticket.id is not None
    if previous is not None:
        uow.events.append(events.TicketUnflagged(ticket.id, actor.admin_id, previous))
    uow.events.append(events.TicketFlagged(ticket.id, actor.admin_id, admin.id))


def unflag_ticket(uow: UnitOfWork, ticket: Ticket, actor: Actor, now: datetime) -> None:
    """Remove the ticket's flag, telling the admin who had it."""
    previous = ticket.flagged_admin_id
    if previous is None:
        return
    old = uow.admin(previous)
    ticket.flagged_admin_id = None
    log_change(ticket, actor, "flag", old.username if old else previous, "", now)
    assert ticket.id is not None
    uow.events.append(events.TicketUnflagged(ticket.id, actor.admin_id, previous))


def watch(uow: UnitOfWork, ticket: Ticket, actor: Actor, on: bool, now: datetime) -> bool:
    """Subscribe or unsubscribe the admin; True when something changed."""
    check_access(uow, ticket, actor)
    if actor.admin_id is None:
        raise UsageError("only admins watch tickets")
    watching = any(w.admin_id == actor.admin_id for w in ticket.watches)
    if watching == on:
        return False
    if on:
        ticket.watches.append(Watch(admin_id=actor.admin_id))
    else:
        ticket.watches[:] = [w for w in ticket.watches if w.admin_id != actor.admin_id]
    log(ticket, actor, "watch" if on else "unwatch", actor.label, now)
    return True
