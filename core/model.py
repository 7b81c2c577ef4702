"""The helpdesk's domain objects: plain classes that storage maps onto tables.

Core rules read and change these objects; `storage.mapping` maps them with
SQLAlchemy's imperative mapper, so nothing here knows about the database.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

REPLY = "reply"
NOTE = "note"


@dataclass(eq=False)
class Department:
    """A support department, declared in config and mirrored here."""

    email: str
    name: str
    clients_only: bool = False
    reopen_on_reply: bool = True
    feedback_requests: bool = True
    auto_acknowledge: bool = True
    id: int | None = None


@dataclass(eq=False)
class Admin:
    """A staff member, declared in config and mirrored here."""

    username: str
    name: str
    email: str
    signature: str = ""
    id: int | None = None


@dataclass(eq=False)
class DepartmentMember:
    """An admin's membership of a department; `notify` means they get its mail."""

    department_id: int
    admin_id: int
    notify: bool = True


@dataclass(eq=False)
class User:
    """A person who can log in: a registered user, an owner or an authorized user."""

    email: str
    name: str
    created_at: datetime
    id: int | None = None


@dataclass(eq=False)
class Client:
    """A client account; its owner is a user."""

    name: str
    owner_id: int
    created_at: datetime
    company: str = ""
    id: int | None = None


@dataclass(eq=False)
class ClientUser:
    """An authorized user of a client account other than its owner."""

    client_id: int
    user_id: int
    ticket_emails: bool = True


@dataclass(eq=False)
class Contact:
    """A contact (sub-account) of a client account."""

    client_id: int
    email: str
    name: str
    ticket_emails: bool = True
    id: int | None = None


@dataclass(eq=False)
class Attachment:
    """File metadata; the bytes live in the blob store under `sha256`."""

    filename: str
    content_type: str
    size: int
    sha256: str
    inline: bool = False
    content_id: str | None = None
    message_id: int | None = None
    id: int | None = None


@dataclass(eq=False)
class Message:
    """A reply or a private note on a ticket."""

    kind: str
    author_email: str
    author_name: str
    badge: str
    body: str
    created_at: datetime
    body_html: str = ""
    new_text: str = ""
    admin_id: int | None = None
    mail_message_id: str | None = None
    rating: int | None = None
    edited_at: datetime | None = None
    deleted_at: datetime | None = None
    ticket_id: int | None = None
    id: int | None = None
    attachments: list[Attachment] = field(default_factory=list)


@dataclass(eq=False)
class TicketCc:
    """One CC recipient of a ticket."""

    email: str
    ticket_id: int | None = None


@dataclass(eq=False)
class TicketTag:
    """One tag on a ticket."""

    tag: str
    ticket_id: int | None = None


@dataclass(eq=False)
class Watch:
    """An admin watching a ticket."""

    admin_id: int
    ticket_id: int | None = None


@dataclass(eq=False)
class LogEntry:
    """One line of a ticket's log."""

    at: datetime
    actor: str
    action: str
    detail: str = ""
    version: int | None = None
    ticket_id: int | None = None
    id: int | None = None


@dataclass(eq=False)
class Ticket:
    """A support ticket and the collision attributes the seed names."""

    number: str
    subject: str
    status: str
    priority: str
    department_id: int
    requester_email: str
    requester_name: str
    created_at: datetime
    last_reply_at: datetime
    last_activity_at: datetime
    client_id: int | None = None
    service_ref: str | None = None
    flagged_admin_id: int | None = None
    merged_into_id: int | None = None
    version: int = 1
    id: int | None = None
    messages: list[Message] = field(default_factory=list)
    cc: list[TicketCc] = field(default_factory=list)
    tags: list[TicketTag] = field(default_factory=list)
    watches: list[Watch] = field(default_factory=list)
    log: list[LogEntry] = field(default_factory=list)


@dataclass(eq=False)
class ThreadLink:
    """A Message-ID that leads to a ticket: received, sent or referenced by it."""

    mail_message_id: str
    ticket_id: int
    role: str


@dataclass(eq=False)
class CustomField:
    """A department's custom ticket field, usable as a merge field."""

    department_id: int
    name: str
    id: int | None = None


@dataclass(eq=False)
class CustomFieldValue:
    """The value of a custom field on one ticket."""

    ticket_id: int
    field_id: int
    value: str


@dataclass(eq=False)
class ImportRecord:
    """One row of the mail import log: what arrived and what became of it."""

    received_at: datetime
    transport: str
    raw_sha256: str
    raw_size: int
    outcome: str
    reason: str | None = None
    sender: str = ""
    recipients: str = ""
    subject: str = ""
    mail_message_id: str | None = None
    ticket_id: int | None = None
    trace: str = "[]"
    imported_at: datetime | None = None
    id: int | None = None


@dataclass(eq=False)
class ReceivedKey:
    """The idempotency key of a message already taken in."""

    key: str
    import_id: int


@dataclass(eq=False)
class Ban:
    """A banned sender address or domain (`example.com`)."""

    pattern: str
    created_at: datetime
    id: int | None = None


@dataclass(eq=False)
class PredefinedReply:
    """A stored reply an admin can insert, found by title."""

    title: str
    body: str
    category: str = ""
    id: int | None = None


@dataclass(eq=False)
class OutboxItem:
    """A notification queued in the same transaction as the change that caused it."""

    created_at: datetime
    event: str
    recipient: str
    mail_message_id: str
    subject: str
    payload: str
    automatic: bool = True
    ticket_id: int | None = None
    status: str = "queued"
    attempts: int = 0
    next_attempt_at: datetime | None = None
    sent_at: datetime | None = None
    last_error: str = ""
    id: int | None = None


@dataclass(eq=False)
class BillableItem:
    """A billable entry recorded on a ticket with a client."""

    ticket_id: int
    description: str
    amount: Decimal
    invoice_action: str
    created_at: datetime
    admin_id: int | None = None
    id: int | None = None


@dataclass(eq=False)
class MailboxCheckpoint:
    """How far an IMAP mailbox has been imported."""

    mailbox: str
    uidvalidity: int
    last_uid: int = 0


@dataclass(eq=False)
class MailboxUid:
    """One IMAP message imported, keyed by mailbox, UIDVALIDITY and UID."""

    mailbox: str
    uidvalidity: int
    uid: int
    import_id: int


@dataclass(eq=False)
class KbArticle:
    """A knowledgebase article suggested on new tickets."""

    title: str
    body: str
    tags: str = ""
    id: int | None = None


@dataclass(eq=False)
class Feedback:
    """A client's overall feedback on a closed ticket."""

    ticket_id: int
    score: int
    comment: str
    created_at: datetime
    id: int | None = None


@dataclass(eq=False)
class Suppression:
    """An address whose mail is held back after hard bounces."""

    email: str
    bounces: int
    until: datetime | None = None
    reason: str = ""
