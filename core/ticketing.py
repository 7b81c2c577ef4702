"""Opening tickets, replies and notes: the conversation half of the ticket rules.

Each operation works inside the caller's unit of work, writes the ticket log,
appends its domain events, and leaves committing to the caller.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from core import events
from core.actors import Actor
from core.badges import OPERATOR, sender_role
from core.collisions import collision_report
from core.errors import AccessDenied, NotFound, TicketdError, UsageError
from core.mail import Attachment as MailAttachment
from core.markdown import render_markdown
from core.model import NOTE, REPLY, Attachment, LogEntry, Message, ThreadLink, Ticket
from core.numbers import generate_number
from core.policy import ANSWERED, CLOSED, CUSTOMER_REPLY, OPEN, PRIORITIES, Policy
from core.ports import UnitOfWork

MENTION = re.compile(r"(?<![\w.@])@([A-Za-z0-9_.-]+)")
NUMBER_ATTEMPTS = 50


class CollisionError(TicketdError):
    """The ticket changed since the version the caller saw; carries the report."""

    exit_code = 3

    def __init__(self, report: object, text: str) -> None:
        super().__init__(text)
        self.report = report


@dataclass(frozen=True, slots=True)
class NewTicket:
    """What opening a ticket needs besides the unit of work."""

    department_email: str
    requester_email: str
    requester_name: str
    subject: str
    body: str
    priority: str = "Medium"
    client_id: int | None = None
    mail_message_id: str | None = None
    attachments: Sequence[MailAttachment] = ()
    body_html: str | None = None  # already safe HTML (mail); else `body` is markdown
    new_text: str = ""  # the new part of a mailed reply


def log(ticket: Ticket, actor: Actor, action: str, detail: str, now: datetime) -> None:
    """Add a ticket-log line."""
    ticket.log.append(LogEntry(at=now, actor=actor.label, action=action, detail=detail))


def log_change(
    ticket: Ticket, actor: Actor, action: str, old: object, new: object, now: datetime
) -> None:
    """Log a change of a collision attribute, bumping the ticket's version."""
    ticket.version += 1
    ticket.log.append(
        LogEntry(
            at=now,
            actor=actor.label,
            action=action,
            detail=f"{_text(old)} -> {_text(new)}",
            version=ticket.version,
        )
    )


def _text(value: object) -> str:
    return "" if value is None else str(value)


def load_ticket(
    uow: UnitOfWork, number: str, actor: Actor | None = None, expect_version: int | None = None
) -> Ticket:
    """The ticket by number, following merges, locked for change and checked for access."""
    ticket = uow.ticket_by_number(number.strip().lstrip("#"), lock=True)
    if ticket is None:
        raise NotFound(f"no ticket {number}")
    while ticket.merged_into_id is not None:
        target = uow.ticket(ticket.merged_into_id, lock=True)
        if target is None:
            break
        ticket = target
    if actor is not None:
        check_access(uow, ticket, actor)
    if expect_version is not None:
        report = collision_report(ticket, expect_version)
        if report is not None:
            from core.collisions import describe

            raise CollisionError(report, describe(report))
    return ticket


def check_access(uow: UnitOfWork, ticket: Ticket, actor: Actor) -> None:
    """An admin acts only on tickets of departments they belong to."""
    if actor.admin_id is None:
        return
    if ticket.department_id not in uow.admin_departments(actor.admin_id):
        department = uow.department(ticket.department_id)
        name = department.email if department else ticket.department_id
        raise AccessDenied(f"{actor.label} is not a member of department {name}")


def new_number(uow: UnitOfWork, policy: Policy, now: datetime) -> str:
    """A ticket number never issued before; the unique index backs this check."""
    for _ in range(NUMBER_ATTEMPTS):
        number = generate_number(policy.number_mask, now)
        if not uow.number_issued(number) and uow.try_issue_number(number):
            return number
    raise TicketdError("no free ticket number left for the mask; widen tickets.number_mask")


def store_attachments(uow: UnitOfWork, message: Message, files: Sequence[MailAttachment]) -> None:
    """Put attachment bytes in the blob store and their metadata on the message."""
    for item in files:
        digest = uow.blobs.put(item.data)
        message.attachments.append(
            Attachment(
                filename=item.filename,
                content_type=item.content_type,
                size=len(item.data),
                sha256=digest,
                inline=item.inline,
                content_id=item.content_id,
            )
        )


def remember_mail_id(uow: UnitOfWork, ticket: Ticket, mail_id: str | None, role: str) -> None:
    """Record a Message-ID that leads back to this ticket."""
    if mail_id and ticket.id is not None:
        uow.add(ThreadLink(mail_message_id=mail_id, ticket_id=ticket.id, role=role))


def open_ticket(
    uow: UnitOfWork, request: NewTicket, actor: Actor, policy: Policy, now: datetime
) -> Ticket:
    """Open a ticket in a department, for the actor or on behalf of the requester."""
    department = uow.department_by_email(request.department_email)
    if department is None or department.id is None:
        raise NotFound(f"no department {request.department_email}")
    priority = _priority(request.priority)
    client_id = request.client_id
    badge = OPERATOR
    if client_id is not None and uow.client(client_id) is None:
        raise NotFound(f"no client {client_id}")
    if not actor.is_admin or client_id is None:
        role = sender_role(uow, request.requester_email, client_id)
        client_id = role.client_id
        badge = OPERATOR if actor.is_admin else role.badge
    ticket = Ticket(
        number=new_number(uow, policy, now),
        subject=request.subject.strip() or "(no subject)",
        status=OPEN,
        priority=priority,
        department_id=department.id,
        requester_email=request.requester_email.lower(),
        requester_name=request.requester_name,
        created_at=now,
        last_reply_at=now,
        last_activity_at=now,
        client_id=client_id,
    )
    if actor.is_admin:
        check_access(uow, ticket, actor)
    author = actor if actor.is_admin else Actor(request.requester_email, request.requester_name)
    message = _message(
        REPLY,
        author,
        badge,
        request.body,
        now,
        request.mail_message_id,
        request.body_html,
        request.new_text,
    )
    store_attachments(uow, message, request.attachments)
    ticket.messages.append(message)
    log(ticket, actor, "opened", f"in {department.email} by {author.label}", now)
    uow.add(ticket)
    uow.flush()
    remember_mail_id(uow, ticket, request.mail_message_id, "received")
    assert ticket.id is not None and message.id is not None
    uow.events.append(events.TicketOpened(ticket.id, actor.admin_id, message.id, actor.is_admin))
    return ticket


def _priority(value: str) -> str:
    for name in PRIORITIES:
        if value.strip().lower() == name.lower():
            return name
    raise UsageError(f"unknown priority {value!r}: expected one of {', '.join(PRIORITIES)}")


def _message(
    kind: str,
    author: Actor,
    badge: str,
    body: str,
    now: datetime,
    mail_id: str | None = None,
    html: str | None = None,
    new_text: str = "",
) -> Message:
    return Message(
        kind=kind,
        author_email=author.email.lower(),
        author_name=author.name,
        badge=badge,
        body=body,
        body_html=render_markdown(body) if html is None else html,
        new_text=new_text,
        created_at=now,
        admin_id=author.admin_id,
        mail_message_id=mail_id,
    )


def client_reply(
    uow: UnitOfWork,
    ticket: Ticket,
    author: Actor,
    badge: str,
    body: str,
    now: datetime,
    mail_message_id: str | None = None,
    attachments: Sequence[MailAttachment] = (),
    html: str | None = None,
    new_text: str = "",
) -> Message:
    """A reply from the client side: status Customer-Reply (reopening a closed ticket).

    `html` is safe HTML already (a mailed reply's); without it `body` is markdown.
    """
    message = _message(REPLY, author, badge, body, now, mail_message_id, html, new_text)
    store_attachments(uow, message, attachments)
    ticket.messages.append(message)
    _touch_reply(ticket, author, now)
    if ticket.status != CUSTOMER_REPLY:
        log_change(ticket, author, "status", ticket.status, CUSTOMER_REPLY, now)
        ticket.status = CUSTOMER_REPLY
    uow.flush()
    remember_mail_id(uow, ticket, mail_message_id, "received")
    assert ticket.id is not None and message.id is not None
    uow.events.append(events.ClientReplied(ticket.id, None, message.id))
    return message


def admin_reply(
    uow: UnitOfWork,
    ticket: Ticket,
    actor: Actor,
    body: str,
    policy: Policy,
    now: datetime,
    status: str | None = None,
    attachments: Sequence[MailAttachment] = (),
    mail_message_id: str | None = None,
) -> Message:
    """An admin's reply: status Answered, or the status the admin names."""
    check_access(uow, ticket, actor)
    new_status = ANSWERED if status is None else _status_name(policy, status)
    admin = uow.admin(actor.admin_id) if actor.admin_id is not None else None
    if admin is not None and admin.signature and admin.signature.strip() not in body:
        body = f"{body.rstrip()}\n\n{admin.signature}"
    message = _message(REPLY, actor, OPERATOR, body, now, mail_message_id)
    store_attachments(uow, message, attachments)
    ticket.messages.append(message)
    _touch_reply(ticket, actor, now)
    if ticket.status != new_status:
        log_change(ticket, actor, "status", ticket.status, new_status, now)
        ticket.status = new_status
    uow.flush()
    remember_mail_id(uow, ticket, mail_message_id, "received")
    assert ticket.id is not None and message.id is not None
    uow.events.append(events.AdminReplied(ticket.id, actor.admin_id, message.id))
    return message


def _touch_reply(ticket: Ticket, actor: Actor, now: datetime) -> None:
    old = ticket.last_reply_at
    ticket.last_reply_at = now
    ticket.last_activity_at = now
    log_change(ticket, actor, "reply", old.isoformat(), now.isoformat(), now)


def _status_name(policy: Policy, name: str) -> str:
    status = policy.status(name)
    if status is None:
        known = ", ".join(s.name for s in policy.statuses)
        raise UsageError(f"unknown status {name!r}: expected one of {known}")
    return status.name


def reopens(ticket: Ticket, department_reopens: bool) -> bool:
    """Whether a client reply may land here: a closed ticket only if its department reopens."""
    return ticket.status != CLOSED or department_reopens


def add_note(uow: UnitOfWork, ticket: Ticket, actor: Actor, body: str, now: datetime) -> Message:
    """A private admin note; each `@username` of a known admin gets a mention."""
    check_access(uow, ticket, actor)
    if not actor.is_admin:
        raise AccessDenied("only admins add notes")
    message = _message(NOTE, actor, OPERATOR, body, now)
    ticket.messages.append(message)
    ticket.last_activity_at = now
    mentioned: list[int] = []
    for username in dict.fromkeys(MENTION.findall(body)):
        admin = uow.admin_by_username(username.rstrip("."))
        if admin is not None and admin.id is not None and admin.id != actor.admin_id:
            mentioned.append(admin.id)
    log(ticket, actor, "note", f"note added{_mentions(uow, mentioned)}", now)
    uow.flush()
    assert ticket.id is not None and message.id is not None
    uow.events.append(events.NoteAdded(ticket.id, actor.admin_id, message.id, tuple(mentioned)))
    return message


def _mentions(uow: UnitOfWork, admin_ids: list[int]) -> str:
    names = [a.username for a in (uow.admin(i) for i in admin_ids) if a is not None]
    return f", mentions {', '.join('@' + n for n in names)}" if names else ""
