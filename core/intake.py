"""The intake decision: one parsed message in, one outcome out, in one transaction.

dedupe -> classify -> ban and rate limit -> match -> authorise -> a new
ticket, a reply, or a blocked entry; the import-log row, with its decision
trace, is written in every case.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta

from core import events
from core.actors import Actor
from core.badges import SUB_ACCOUNT, accounts_of, sender_role
from core.classify import classify_mail
from core.errors import TicketdError
from core.mail import Attachment, InboundMail
from core.mail_commands import read_commands
from core.matching import Match, match_ticket, resolve
from core.model import Admin, ImportRecord, ReceivedKey, ThreadLink, Ticket
from core.notifications import note_bounce
from core.options import update_ticket
from core.policy import Policy
from core.ports import UnitOfWork
from core.ticketing import (
    NewTicket,
    add_note,
    admin_reply,
    client_reply,
    open_ticket,
    remember_mail_id,
    reopens,
)
from core.tokens import split_reply_address

NEW_TICKET = "new_ticket"
REPLY = "reply"
BLOCKED = "blocked"
CLIENT_BADGES = ("owner", "authorized_user", SUB_ACCOUNT)


@dataclass(frozen=True, slots=True)
class Envelope:
    """How the message arrived: transport, envelope sender and recipients."""

    transport: str
    sender: str | None = None
    recipients: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Stored:
    """The raw message, already durable in the blob store."""

    sha256: str
    size: int


@dataclass(frozen=True, slots=True)
class Decision:
    """What became of a message."""

    outcome: str
    reason: str | None
    ticket_number: str | None
    import_id: int
    trace: tuple[str, ...]


@dataclass
class _Intake:
    uow: UnitOfWork
    mail: InboundMail
    envelope: Envelope
    stored: Stored
    policy: Policy
    now: datetime
    trace: list[str]

    @property
    def sender(self) -> str:
        return self.mail.sender.email if self.mail.sender else ""

    def record(
        self, outcome: str, reason: str | None, ticket: Ticket | None, key: str | None
    ) -> Decision:
        subject = self.mail.subject[:500]
        recipients = ", ".join(self.envelope.recipients or [a.email for a in self.mail.to])
        entry = ImportRecord(
            received_at=self.now,
            transport=self.envelope.transport,
            raw_sha256=self.stored.sha256,
            raw_size=self.stored.size,
            outcome=outcome,
            reason=reason,
            sender=self.sender[:254],
            recipients=recipients,
            subject=subject,
            mail_message_id=self.mail.message_id,
            ticket_id=ticket.id if ticket else None,
            trace=json.dumps(self.trace),
            imported_at=self.now if outcome != BLOCKED else None,
        )
        self.uow.add(entry)
        self.uow.flush()
        assert entry.id is not None
        if key is not None:
            self.uow.add(ReceivedKey(key=key, import_id=entry.id))
        if outcome == BLOCKED and ticket is not None and ticket.id is not None and reason:
            self.uow.events.append(events.ReplyBlocked(ticket.id, None, entry.id, reason))
        number = ticket.number if ticket else None
        return Decision(outcome, reason, number, entry.id, tuple(self.trace))


def dedupe_key(mail: InboundMail, stored: Stored) -> str:
    """Same Message-ID, or same bytes when there is none: the same message."""
    if mail.message_id:
        return f"mid:{mail.message_id[:120]}"
    return f"sha:{stored.sha256}"


def receive_mail(
    uow: UnitOfWork,
    mail: InboundMail,
    envelope: Envelope,
    stored: Stored,
    policy: Policy,
    now: datetime,
) -> Decision:
    """Decide and apply the outcome of one inbound message (the caller commits)."""
    intake = _Intake(uow, mail, envelope, stored, policy, now, [])
    key = dedupe_key(mail, stored)
    seen = uow.received(key)
    if seen is not None:
        first = uow.import_record(seen.import_id)
        ticket = uow.ticket(first.ticket_id) if first and first.ticket_id else None
        intake.trace.append(f"dedupe: {key} already taken in as import {seen.import_id}")
        return intake.record(BLOCKED, "duplicate", ticket, None)
    intake.trace.append(f"dedupe: {key} is new")
    reason = _screen(intake)
    if reason is not None:
        return intake.record(BLOCKED, reason, None, key)
    match = match_ticket(uow, mail, _recipients(intake), policy.token_secret, intake.trace)
    if match is not None:
        return _reply(intake, match, key)
    return _new_ticket(intake, key)


def _screen(intake: _Intake) -> str | None:
    """Classification before matching: loops, bounces, auto-replies, bans, rate limit."""
    mail, uow, policy = intake.mail, intake.uow, intake.policy
    found = classify_mail(mail, policy.own_domains)
    if found is not None:
        intake.trace.append(f"classify: {found.reason} ({found.signal}: {found.detail})")
        if mail.bounce is not None and mail.bounce.failed_recipients:
            failed = ", ".join(mail.bounce.failed_recipients)
            intake.trace.append(f"classify: failed recipients {failed}")
        if found.reason == "bounce":
            item = note_bounce(uow, mail, _recipients(intake), intake.now)
            if item is not None:
                intake.trace.append(f"bounce: reports on our notification {item.mail_message_id}")
        return found.reason
    intake.trace.append("classify: written by a person")
    if not intake.sender:
        intake.trace.append("classify: no usable From address")
        return "malformed"
    if uow.is_banned(intake.sender):
        intake.trace.append(f"classify: sender {intake.sender} is banned")
        return "banned"
    since = intake.now - timedelta(minutes=policy.rate_limit_minutes)
    recent = uow.imports_from(intake.sender, since)
    if policy.rate_limit_count and recent >= policy.rate_limit_count:
        intake.trace.append(
            f"classify: {recent} messages from {intake.sender} in "
            f"{policy.rate_limit_minutes} min (limit {policy.rate_limit_count})"
        )
        return "rate_limited"
    return None


def _recipients(intake: _Intake) -> list[str]:
    mail = intake.mail
    headers = [a.email for a in (*mail.to, *mail.cc)]
    for name in ("delivered-to", "x-original-to"):
        value = mail.header(name)
        if value:
            headers.append(value.strip().strip("<>").lower())
    return [*intake.envelope.recipients, *headers]


def allowed_attachments(intake: _Intake) -> list[Attachment]:
    """Attachments whose extension the config allows; the others are named in the trace."""
    kept = []
    for item in intake.mail.attachments:
        extension = "." + item.filename.rpartition(".")[2].lower() if "." in item.filename else ""
        if extension in intake.policy.allowed_extensions:
            kept.append(item)
        else:
            intake.trace.append(
                f"attachment: {item.filename!r} not stored: extension "
                f"{extension or '(none)'} is not allowed"
            )
    return kept


def _remember_references(intake: _Intake, ticket: Ticket) -> None:
    assert ticket.id is not None
    for mail_id in dict.fromkeys((*intake.mail.in_reply_to, *intake.mail.references)):
        intake.uow.add(ThreadLink(mail_message_id=mail_id, ticket_id=ticket.id, role="referenced"))


def _reply(intake: _Intake, match: Match, key: str) -> Decision:
    uow, ticket, sender = intake.uow, match.ticket, intake.sender
    if match.claims is not None:
        admin = _department_admin(uow, ticket, match.claims.recipient)
        if admin is not None:
            intake.trace.append(f"authorise: token identifies admin {admin.username}")
            return _admin_reply(intake, match, key, admin)
    role = sender_role(uow, sender, ticket.client_id)
    trusted = _may_reply(uow, ticket, sender, role.badge) or match.rule in ("token", "thread")
    intake.trace.append(f"authorise: sender {sender} has badge {role.badge}")
    if not trusted:
        intake.trace.append("authorise: not a party to the ticket and matched only by subject")
        return intake.record(BLOCKED, "not_authorized", ticket, key)
    department = uow.department(ticket.department_id)
    if not reopens(ticket, department.reopen_on_reply if department else True):
        intake.trace.append("authorise: ticket is closed and its department does not reopen")
        return intake.record(BLOCKED, "ticket_closed", ticket, key)
    _client_reply(intake, ticket, role.badge)
    return intake.record(REPLY, None, ticket, key)


def _client_reply(intake: _Intake, ticket: Ticket, badge: str) -> None:
    mail = intake.mail
    author = Actor(intake.sender, mail.sender.name if mail.sender else "")
    client_reply(
        intake.uow,
        ticket,
        author,
        badge,
        mail.text,
        intake.now,
        mail.message_id,
        allowed_attachments(intake),
        html=_mail_html(mail),
        new_text=mail.new_text,
    )
    _remember_references(intake, ticket)


def _department_admin(uow: UnitOfWork, ticket: Ticket, email: str) -> Admin | None:
    for admin in uow.admins():
        if admin.email == email and admin.id is not None:
            if ticket.department_id in uow.admin_departments(admin.id):
                return admin
    return None


def _admin_reply(intake: _Intake, match: Match, key: str, admin: Admin) -> Decision:
    """A reply through an admin's token: its text, then its `#commands`, as that admin."""
    uow, ticket, mail = intake.uow, match.ticket, intake.mail
    actor = Actor(admin.email, admin.name, admin.id, admin.username)
    parsed = read_commands(mail.new_text or mail.text)
    if parsed.as_note and parsed.body:
        add_note(uow, ticket, actor, parsed.body, intake.now)
        remember_mail_id(uow, ticket, mail.message_id, "received")
        intake.trace.append("command: #note: the text is a private note")
    elif parsed.body:
        message = admin_reply(
            uow,
            ticket,
            actor,
            parsed.body,
            intake.policy,
            intake.now,
            attachments=allowed_attachments(intake),
            mail_message_id=mail.message_id,
        )
        message.new_text = parsed.body
    for label, changes in parsed.commands:
        try:
            update_ticket(uow, ticket, actor, changes, intake.policy, intake.now)
        except TicketdError as err:
            intake.trace.append(f"command: {label} refused: {err}")
        else:
            intake.trace.append(f"command: {label} applied")
    _remember_references(intake, ticket)
    return intake.record(REPLY, None, ticket, key)


def _may_reply(uow: UnitOfWork, ticket: Ticket, sender: str, badge: str) -> bool:
    """The requester, the account's owner, users and contacts, CCs and department admins."""
    if sender == ticket.requester_email or badge in CLIENT_BADGES:
        return True
    if any(c.email == sender for c in ticket.cc):
        return True
    for member in uow.members(ticket.department_id):
        admin = uow.admin(member.admin_id)
        if admin is not None and admin.email == sender:
            return True
    return False


def _mail_html(mail: InboundMail) -> str:
    """The sanitised HTML of the mail, or its text as HTML (mail text is not markdown)."""
    if mail.html:
        return mail.html
    from core.markdown import text_to_html

    return text_to_html(mail.text)


def _new_ticket(intake: _Intake, key: str) -> Decision:
    uow = intake.uow
    department = _department(intake)
    if department is None:
        intake.trace.append("route: no recipient is a department address or alias")
        return intake.record(BLOCKED, "unknown_department", None, key)
    intake.trace.append(f"route: new ticket in {department}")
    dept = uow.department_by_email(department)
    if dept is not None and dept.clients_only and not accounts_of(uow, intake.sender):
        intake.trace.append(f"authorise: {department} takes tickets from clients only")
        return intake.record(BLOCKED, "not_authorized", None, key)
    ticket = _open(intake, department)
    return intake.record(NEW_TICKET, None, ticket, key)


def _open(intake: _Intake, department: str) -> Ticket:
    mail = intake.mail
    name = mail.sender.name if mail.sender and mail.sender.name else intake.sender.partition("@")[0]
    request = NewTicket(
        department_email=department,
        requester_email=intake.sender,
        requester_name=name,
        subject=mail.subject,
        body=mail.text,
        mail_message_id=mail.message_id,
        attachments=allowed_attachments(intake),
        body_html=_mail_html(mail),
        new_text=mail.new_text,
    )
    ticket = open_ticket(intake.uow, request, Actor(intake.sender, name), intake.policy, intake.now)
    _remember_references(intake, ticket)
    return ticket


def _department(intake: _Intake) -> str | None:
    """The department address that received the message: envelope first, then headers."""
    uow = intake.uow
    for address in _recipients(intake):
        base, _ = split_reply_address(address)
        found = intake.policy.department_for(base)
        if found and uow.department_by_email(found) is not None:
            return found
    return None


def force_import(
    uow: UnitOfWork,
    record: ImportRecord,
    mail: InboundMail,
    policy: Policy,
    now: datetime,
) -> Ticket:
    """Import a blocked message anyway, as the seed's import log allows, and mark it."""
    envelope = Envelope(
        record.transport, None, tuple(r.strip() for r in record.recipients.split(",") if r.strip())
    )
    stored = Stored(record.raw_sha256, record.raw_size)
    intake = _Intake(uow, mail, envelope, stored, policy, now, json.loads(record.trace))
    intake.trace.append(f"import: forced by an admin at {now.isoformat()}")
    ticket = resolve(uow, uow.ticket(record.ticket_id, lock=True)) if record.ticket_id else None
    if ticket is None:
        match = match_ticket(uow, mail, _recipients(intake), policy.token_secret, intake.trace)
        ticket = match.ticket if match else None
    if ticket is not None:
        role = sender_role(uow, intake.sender, ticket.client_id)
        _client_reply(intake, ticket, role.badge)
        record.outcome = REPLY
    else:
        department = _department(intake)
        if department is None:
            department = uow.departments()[0].email
        ticket = _open(intake, department)
        record.outcome = NEW_TICKET
    record.ticket_id = ticket.id
    record.imported_at = now
    record.trace = json.dumps(intake.trace)
    return ticket


def record_unreadable(
    uow: UnitOfWork,
    envelope: Envelope,
    stored: Stored,
    reason: str,
    detail: str,
    now: datetime,
) -> Decision:
    """Log a message that could not be parsed or was too large, raw bytes kept."""
    mail = InboundMail(message_id=None, subject="", sender=None)
    intake = _Intake(uow, mail, envelope, stored, Policy(), now, [f"parse: {detail}"])
    if envelope.sender:
        intake.trace.append(f"envelope sender {envelope.sender}")
    key = f"sha:{stored.sha256}"
    if uow.received(key) is not None:
        intake.trace.append("dedupe: these bytes were taken in before")
        return intake.record(BLOCKED, "duplicate", None, None)
    return intake.record(BLOCKED, reason, None, key)
