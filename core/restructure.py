"""Changing a ticket's shape: merge, split, edit and delete replies, delete tickets.

Also the client's rating of a reply and billable items, which attach to
replies and tickets in the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal, InvalidOperation

from core import events
from core.actors import Actor
from core.errors import NotFound, UsageError
from core.markdown import render_markdown
from core.model import REPLY, Ban, BillableItem, Message, Ticket, TicketCc, TicketTag, Watch
from core.policy import OPEN, Policy
from core.ports import UnitOfWork
from core.ticketing import _priority, check_access, log, log_change, new_number

MERGED_MARK = "[MERGED]"
INVOICE_ACTIONS = ("none", "next_cron", "now", "due_date")


def merge_tickets(
    uow: UnitOfWork, tickets: Sequence[Ticket], actor: Actor, now: datetime
) -> Ticket:
    """Merge newer tickets into the oldest; their numbers keep resolving to it."""
    unique = {t.id: t for t in tickets if t.merged_into_id is None}
    if len(unique) < 2:
        raise UsageError("merging needs at least two distinct tickets")
    for ticket in unique.values():
        check_access(uow, ticket, actor)
    ordered = sorted(unique.values(), key=lambda t: t.id or 0)
    target, others = ordered[0], ordered[1:]
    latest = max(ordered, key=lambda t: (t.last_reply_at, t.id or 0))
    if MERGED_MARK not in target.subject:
        old_subject = target.subject
        target.subject = f"{target.subject} {MERGED_MARK}"
        log_change(target, actor, "subject", old_subject, target.subject, now)
    if latest.status != target.status:
        log_change(target, actor, "status", target.status, latest.status, now)
        target.status = latest.status
    for other in others:
        _absorb(uow, target, other, actor, now)
    if latest.last_reply_at > target.last_reply_at:
        log_change(
            target,
            actor,
            "reply",
            target.last_reply_at.isoformat(),
            latest.last_reply_at.isoformat(),
            now,
        )
        target.last_reply_at = latest.last_reply_at
    target.last_activity_at = now
    target.messages.sort(key=lambda m: (m.created_at, m.id or 0))
    return target


def _absorb(uow: UnitOfWork, target: Ticket, other: Ticket, actor: Actor, now: datetime) -> None:
    assert target.id is not None and other.id is not None
    # Append before removing: a message without a parent for a moment is an orphan
    # that an autoflush (loading target.messages) would delete.
    for message in list(other.messages):
        target.messages.append(message)
        other.messages.remove(message)
    have_cc = {c.email for c in target.cc}
    target.cc += [TicketCc(email=c.email) for c in other.cc if c.email not in have_cc]
    have_tags = {t.tag for t in target.tags}
    target.tags += [TicketTag(tag=t.tag) for t in other.tags if t.tag not in have_tags]
    watchers = {w.admin_id for w in target.watches}
    target.watches += [
        Watch(admin_id=w.admin_id) for w in other.watches if w.admin_id not in watchers
    ]
    other.cc.clear()
    other.tags.clear()
    other.watches.clear()
    uow.move_thread_links(other.id, target.id)
    other.merged_into_id = target.id
    log(other, actor, "merged", f"into {target.number}", now)
    log(target, actor, "merged", f"{other.number} merged in", now)


def split_ticket(
    uow: UnitOfWork,
    ticket: Ticket,
    message_ids: Sequence[int],
    actor: Actor,
    policy: Policy,
    now: datetime,
    department_email: str | None = None,
    priority: str | None = None,
    subject: str | None = None,
    notify: bool = False,
) -> Ticket:
    """Move the chosen replies, with their attachments, to a new ticket."""
    check_access(uow, ticket, actor)
    chosen = [m for m in ticket.messages if m.id in set(message_ids)]
    if len(chosen) != len(set(message_ids)):
        raise NotFound(f"ticket {ticket.number} has no message with some of ids {message_ids}")
    if len(chosen) == len(ticket.messages):
        raise UsageError("split must leave at least one message on the ticket")
    department = uow.department_by_email(department_email) if department_email else None
    if department_email and (department is None or department.id is None):
        raise NotFound(f"no department {department_email}")
    first = chosen[0]
    new = Ticket(
        number=new_number(uow, policy, now),
        subject=(subject or ticket.subject).strip(),
        status=OPEN,
        priority=_priority(priority) if priority else ticket.priority,
        department_id=department.id if department and department.id else ticket.department_id,
        requester_email=first.author_email if first.admin_id is None else ticket.requester_email,
        requester_name=first.author_name if first.admin_id is None else ticket.requester_name,
        created_at=now,
        last_reply_at=max(m.created_at for m in chosen),
        last_activity_at=now,
        client_id=ticket.client_id,
    )
    check_access(uow, new, actor)
    for message in chosen:
        ticket.messages.remove(message)
        new.messages.append(message)
    log(new, actor, "split", f"from {ticket.number}", now)
    uow.add(new)
    uow.flush()
    assert ticket.id is not None and new.id is not None
    moved_ids = [m.mail_message_id for m in chosen if m.mail_message_id]
    uow.move_thread_links(ticket.id, new.id, moved_ids)
    log(ticket, actor, "split", f"{len(chosen)} message(s) moved to {new.number}", now)
    if notify:
        assert new.id is not None and first.id is not None
        uow.events.append(events.TicketOpened(new.id, actor.admin_id, first.id, True))
    return new


def find_message(ticket: Ticket, message_id: int) -> Message:
    """The message of this ticket with that id."""
    for message in ticket.messages:
        if message.id == message_id and message.deleted_at is None:
            return message
    raise NotFound(f"ticket {ticket.number} has no message {message_id}")


def edit_reply(
    uow: UnitOfWork, ticket: Ticket, message_id: int, body: str, actor: Actor, now: datetime
) -> Message:
    """Replace a message's text, keeping a log of the edit."""
    check_access(uow, ticket, actor)
    message = find_message(ticket, message_id)
    message.body = body
    message.body_html = render_markdown(body)
    message.edited_at = now
    log(ticket, actor, "reply edited", f"message {message_id}", now)
    return message


def delete_reply(
    uow: UnitOfWork, ticket: Ticket, message_id: int, actor: Actor, now: datetime
) -> bool:
    """Delete one message; deleting the first deletes the whole ticket (True then)."""
    check_access(uow, ticket, actor)
    message = find_message(ticket, message_id)
    visible = [m for m in ticket.messages if m.deleted_at is None]
    if visible and visible[0] is message:
        delete_ticket(uow, ticket, actor, now)
        return True
    ticket.messages.remove(message)
    log(ticket, actor, "reply deleted", f"message {message_id} by {message.author_email}", now)
    return False


def delete_ticket(
    uow: UnitOfWork, ticket: Ticket, actor: Actor, now: datetime, block_sender: bool = False
) -> None:
    """Delete a ticket (its number stays issued), optionally banning its requester."""
    check_access(uow, ticket, actor)
    if block_sender and not uow.ban(ticket.requester_email):
        uow.add(Ban(pattern=ticket.requester_email.lower(), created_at=now))
    assert ticket.id is not None
    for merged in uow.tickets(include_merged=True):
        if merged.merged_into_id == ticket.id:
            uow.delete(merged)
    uow.delete(ticket)


def rate_reply(uow: UnitOfWork, ticket: Ticket, message_id: int, rating: int) -> Message:
    """A client's 1-5 rating of an admin reply."""
    if not 1 <= rating <= 5:
        raise UsageError("a rating is a whole number from 1 to 5")
    message = find_message(ticket, message_id)
    if message.kind != REPLY or message.admin_id is None:
        raise UsageError("only admin replies can be rated")
    message.rating = rating
    return message


def add_billable_item(
    uow: UnitOfWork,
    ticket: Ticket,
    actor: Actor,
    description: str,
    amount: str,
    invoice_action: str,
    now: datetime,
) -> BillableItem:
    """Record a billable item; the ticket needs a client account first."""
    check_access(uow, ticket, actor)
    if ticket.client_id is None:
        raise UsageError("associate a client with the ticket before adding billable items")
    if invoice_action not in INVOICE_ACTIONS:
        raise UsageError(f"invoice action must be one of {', '.join(INVOICE_ACTIONS)}")
    try:
        value = Decimal(amount)
    except InvalidOperation as err:
        raise UsageError(f"not an amount: {amount!r}") from err
    assert ticket.id is not None
    item = BillableItem(
        ticket_id=ticket.id,
        description=description,
        amount=value,
        invoice_action=invoice_action,
        created_at=now,
        admin_id=actor.admin_id,
    )
    uow.add(item)
    log(ticket, actor, "billable item", f"{description}: {value} ({invoice_action})", now)
    return item
