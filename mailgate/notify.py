"""Queueing notifications: intents from `core.notifications` become outbox rows.

Runs inside `App.finish`, in the transaction of the change. Each row's
payload holds everything the sender needs (headers already cleaned, both
bodies, attachment digests), so sending never renders again. Each outgoing
Message-ID is recorded as a `sent` thread link so replies find the ticket.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import format_datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.markdown import sanitise_html
from core.model import Department, Message, Ticket
from core.notifications import Notification, NotifyRules, plan_notifications
from core.routing import CLIENT
from core.tokens import issue_token, reply_address
from mailgate.headers import clean_header_text, format_address, safe_headers
from mailgate.render import environment, render
from storage.uow import SqlUnitOfWork

if TYPE_CHECKING:
    from mailgate.app import App

LOOP_HEADER = "X-Ticketd-Loop"
EVENT_HEADER = "X-Ticketd-Event"
MAX_REFERENCES = 10
SUBJECTS = {
    "ticket_opened": "{tag} New ticket: {subject}",
    "ticket_opened_ack": "{tag} {subject}",
    "client_reply": "{tag} {subject}",
    "admin_reply": "{tag} {subject}",
    "options_changed": "{tag} Options changed: {subject}",
    "department_changed": "{tag} Department changed: {subject}",
    "ticket_flagged": "{tag} Flagged: {subject}",
    "ticket_unflagged": "{tag} Unassigned: {subject}",
    "note_added": "{tag} Note added: {subject}",
    "note_mention": "{tag} You were mentioned: {subject}",
    "auto_close": "{tag} Closed: {subject}",
    "feedback_request": "{tag} How did we do? {subject}",
}


def rules_from(app: App) -> NotifyRules:
    """The notification rules of the app's settings."""
    out = app.settings.outbound
    return NotifyRules(
        acknowledgement=out.acknowledgement,
        acknowledgement_window_minutes=app.settings.tickets.acknowledgement_window_minutes,
        max_automatic_per_day=out.max_automatic_per_day,
        bounce_suppress_after=out.bounce_suppress_after,
        bounce_window_days=out.bounce_window_days,
        suppress_days=out.suppress_days,
    )


def queue_notifications(app: App, uow: SqlUnitOfWork, now: datetime) -> int:
    """Turn the unit of work's events into outbox rows; the caller commits."""
    found, uow.events = list(uow.events), []
    if not found:
        return 0
    intents = plan_notifications(uow, found, rules_from(app), now)
    builder = _Builder(app, uow, now)
    rows = [builder.row(item) for item in intents]
    uow.insert_outbox(rows)
    return len(rows)


def templates_dir(app: App) -> str:
    """The override folder, relative paths taken from the config file's folder."""
    folder = app.settings.outbound.templates_dir
    if not folder or Path(folder).is_absolute():
        return folder
    source = Path(app.settings.source)
    base = source.resolve().parent if source.is_file() else Path.cwd()
    return str(base / folder)


@dataclass
class _Builder:
    """Builds the rows of one transaction; ticket lookups are made once per ticket."""

    app: App
    uow: SqlUnitOfWork
    now: datetime
    tickets: dict[int, tuple[Ticket, Department, tuple[str | None, list[str]]]] = field(
        default_factory=dict
    )

    def _ticket(self, ticket_id: int) -> tuple[Ticket, Department, tuple[str | None, list[str]]]:
        if ticket_id not in self.tickets:
            ticket = self.uow.ticket(ticket_id)
            assert ticket is not None
            department = self.uow.department(ticket.department_id)
            assert department is not None
            self.tickets[ticket_id] = (ticket, department, self._thread(ticket))
        return self.tickets[ticket_id]

    def row(self, item: Notification) -> dict[str, Any]:
        """The outbox row of one notification, by column."""
        ticket, department, thread = self._ticket(item.ticket_id)
        assert ticket.id is not None
        unique = secrets.token_hex(10)
        mail_id = f"ticketd.{unique}@{self._domain(department)}"
        message = self.uow.message(item.message_id) if item.message_id else None
        body = render(
            environment(templates_dir(self.app)),
            _template(item),
            _context(self.uow, item, ticket, department, message),
        )
        headers = self._headers(item, ticket, department, mail_id, thread)
        payload = {
            "envelope_from": self._envelope_from(department, unique),
            "to": item.recipient.email,
            "headers": headers,
            "text": body.text,
            "html": body.html,
            "attachments": _attachments(message) if item.attachments else [],
        }
        return {
            "created_at": self.now,
            "event": item.event,
            "recipient": item.recipient.email,
            "mail_message_id": mail_id,
            "subject": _subject(item, ticket)[:500],
            "payload": json.dumps(payload),
            "automatic": item.automatic,
            "ticket_id": ticket.id,
            "status": "queued",
            "attempts": 0,
            "next_attempt_at": self.now,
            "last_error": "",
        }

    def _domain(self, department: Department) -> str:
        configured = self.app.settings.outbound.message_id_domain
        return (configured or department.email.rpartition("@")[2]).lower()

    def _envelope_from(self, department: Department, unique: str) -> str:
        if not self.app.settings.outbound.verp:
            return department.email
        local, _, domain = department.email.rpartition("@")
        return f"{local}+bounce-{unique}@{domain}"

    def _headers(
        self,
        item: Notification,
        ticket: Ticket,
        department: Department,
        mail_id: str,
        thread: tuple[str | None, list[str]],
    ) -> list[tuple[str, str]]:
        assert ticket.id is not None
        token = issue_token(
            self.app.policy.token_secret, ticket.id, ticket.version, item.recipient.email
        )
        sender_name = self.app.settings.outbound.from_name or department.name
        parent, references = thread
        pairs = [
            ("From", format_address(sender_name, department.email)),
            ("To", format_address(item.recipient.name, item.recipient.email)),
            ("Reply-To", format_address(sender_name, reply_address(department.email, token))),
            ("Subject", _subject(item, ticket)),
            ("Date", format_datetime(self.now)),
            ("Message-ID", f"<{mail_id}>"),
            ("In-Reply-To", f"<{parent}>" if parent else ""),
            ("References", " ".join(f"<{r}>" for r in references)),
            ("Thread-Topic", ticket.subject),
            ("Thread-Index", thread_index(ticket, self.now)),
            ("Auto-Submitted", item.auto_submitted),
            ("X-Auto-Response-Suppress", "All"),
            (LOOP_HEADER, department.email),
            (EVENT_HEADER, item.event),
        ]
        return safe_headers([(name, value) for name, value in pairs if value])

    def _thread(self, ticket: Ticket) -> tuple[str | None, list[str]]:
        """In-Reply-To: the newest message received; References: first, then the newest."""
        assert ticket.id is not None
        received = [m for m in self.uow.thread_ids(ticket.id, "received") if _plain_id(m)]
        if not received:
            return None, []
        chain = list(dict.fromkeys([received[0], *received[-(MAX_REFERENCES - 1) :]]))
        return received[-1], chain


def _plain_id(mail_id: str) -> bool:
    """A Message-ID we may repeat in a header: visible ASCII, one @, no brackets."""
    text = mail_id.strip()
    return (
        0 < len(text) <= 250
        and text.isascii()
        and text.count("@") == 1
        and all(33 <= ord(c) <= 126 and c not in "<>" for c in text)
    )


def _template(item: Notification) -> str:
    side = "client" if item.recipient.side == CLIENT else "admin"
    return f"{item.event}.{side}"


def _subject(item: Notification, ticket: Ticket) -> str:
    pattern = SUBJECTS.get(item.event, "{tag} {subject}")
    subject = clean_header_text(ticket.subject, max_len=300)
    return pattern.format(tag=f"[Ticket #{ticket.number}]", subject=subject)


def thread_index(ticket: Ticket, now: datetime) -> str:
    """An Outlook Thread-Index: the ticket's 22-byte root and one 5-byte child block."""
    filetime = int((ticket.created_at.timestamp() + 11644473600) * 10_000_000)
    guid = hashlib.sha256(f"ticketd:{ticket.number}:{ticket.id}".encode()).digest()[:16]
    root = filetime.to_bytes(8, "big")[:6] + guid
    delta = max(0, int((now - ticket.created_at).total_seconds() * 10_000_000)) >> 18
    child = ((delta & 0x7FFFFFFF) << 8 | secrets.randbelow(256)).to_bytes(5, "big")
    return base64.b64encode(root + child).decode("ascii")


def _attachments(message: Message | None) -> list[dict[str, str]]:
    if message is None:
        return []
    return [
        {"sha256": a.sha256, "filename": a.filename, "content_type": a.content_type}
        for a in message.attachments
        if not a.inline
    ]


def _context(
    uow: SqlUnitOfWork,
    item: Notification,
    ticket: Ticket,
    department: Department,
    message: Message | None,
) -> dict[str, Any]:
    """What the templates may show; client-side mail never gets a note."""
    if message is not None and message.kind == "note" and item.recipient.side == CLIENT:
        message = None
    old = uow.department(item.old_department_id) if item.old_department_id else None
    admin = uow.admin(item.subject_admin_id) if item.subject_admin_id else None
    actor = uow.admin(item.actor_admin_id) if item.actor_admin_id else None
    return {
        "ticket": ticket,
        "department": department,
        "recipient": item.recipient,
        "message": message,
        "message_html": sanitise_html(message.body_html) if message else "",
        "attachments": [a["filename"] for a in _attachments(message)] if item.attachments else [],
        "changes": item.changes,
        "old_department": old,
        "admin": admin,
        "actor": actor.name if actor else "",
    }
