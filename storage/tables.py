"""The schema: every table of the domain, with the indexes inbound matching needs.

Migrations are generated from and checked against this metadata.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.types import TypeDecorator

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


class UtcDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on every backend (SQLite keeps no zone of its own)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _id() -> Column[int]:
    return Column("id", Integer, primary_key=True)


def _when(name: str, nullable: bool = False) -> Column[datetime]:
    return Column(name, UtcDateTime(), nullable=nullable)


def _ticket_fk(nullable: bool = False) -> Column[int]:
    return Column(
        "ticket_id", Integer, ForeignKey("tickets.id", ondelete="CASCADE"), nullable=nullable
    )


departments = Table(
    "departments",
    metadata,
    _id(),
    Column("email", String(254), nullable=False, unique=True),
    Column("name", String(200), nullable=False),
    Column("clients_only", Boolean, nullable=False),
    Column("reopen_on_reply", Boolean, nullable=False),
    Column("feedback_requests", Boolean, nullable=False),
    Column("auto_acknowledge", Boolean, nullable=False),
)

admins = Table(
    "admins",
    metadata,
    _id(),
    Column("username", String(64), nullable=False, unique=True),
    Column("name", String(200), nullable=False),
    Column("email", String(254), nullable=False, index=True),
    Column("signature", Text, nullable=False),
)

department_members = Table(
    "department_members",
    metadata,
    Column(
        "department_id",
        Integer,
        ForeignKey("departments.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("admin_id", Integer, ForeignKey("admins.id", ondelete="CASCADE"), primary_key=True),
    Column("notify", Boolean, nullable=False),
)

users = Table(
    "users",
    metadata,
    _id(),
    Column("email", String(254), nullable=False, unique=True),
    Column("name", String(200), nullable=False),
    _when("created_at"),
)

clients = Table(
    "clients",
    metadata,
    _id(),
    Column("name", String(200), nullable=False),
    Column("company", String(200), nullable=False),
    Column("owner_id", Integer, ForeignKey("users.id"), nullable=False, index=True),
    _when("created_at"),
)

client_users = Table(
    "client_users",
    metadata,
    Column("client_id", Integer, ForeignKey("clients.id", ondelete="CASCADE"), primary_key=True),
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("ticket_emails", Boolean, nullable=False),
    Index("ix_client_users_user_id", "user_id"),
)

contacts = Table(
    "contacts",
    metadata,
    _id(),
    Column("client_id", Integer, ForeignKey("clients.id", ondelete="CASCADE"), nullable=False),
    Column("email", String(254), nullable=False, index=True),
    Column("name", String(200), nullable=False),
    Column("ticket_emails", Boolean, nullable=False),
    UniqueConstraint("client_id", "email", name="uq_contacts_client_email"),
)

tickets = Table(
    "tickets",
    metadata,
    _id(),
    Column("number", String(64), nullable=False, unique=True),
    Column("subject", String(500), nullable=False),
    Column("status", String(64), nullable=False, index=True),
    Column("priority", String(16), nullable=False),
    Column("department_id", Integer, ForeignKey("departments.id"), nullable=False, index=True),
    Column("client_id", Integer, ForeignKey("clients.id", ondelete="SET NULL"), index=True),
    Column("requester_email", String(254), nullable=False, index=True),
    Column("requester_name", String(200), nullable=False),
    Column("service_ref", String(200)),
    Column("flagged_admin_id", Integer, ForeignKey("admins.id", ondelete="SET NULL")),
    Column("merged_into_id", Integer, ForeignKey("tickets.id", ondelete="SET NULL")),
    Column("version", Integer, nullable=False),
    _when("created_at"),
    _when("last_reply_at"),
    Column("last_activity_at", UtcDateTime(), nullable=False, index=True),
)

issued_numbers = Table(
    "issued_numbers",
    metadata,
    Column("number", String(64), primary_key=True),
)

messages = Table(
    "messages",
    metadata,
    _id(),
    _ticket_fk(),
    Column("kind", String(8), nullable=False),
    Column("author_email", String(254), nullable=False),
    Column("author_name", String(200), nullable=False),
    Column("admin_id", Integer, ForeignKey("admins.id", ondelete="SET NULL")),
    Column("badge", String(32), nullable=False),
    Column("body", Text, nullable=False),
    Column("body_html", Text, nullable=False),
    Column("new_text", Text, nullable=False),
    Column("mail_message_id", String(998)),
    Index("ix_messages_mail_message_id", "mail_message_id"),
    Column("rating", Integer),
    _when("created_at"),
    _when("edited_at", nullable=True),
    _when("deleted_at", nullable=True),
    Index("ix_messages_ticket_id_created_at", "ticket_id", "created_at"),
)

attachments = Table(
    "attachments",
    metadata,
    _id(),
    Column("message_id", Integer, ForeignKey("messages.id", ondelete="CASCADE"), nullable=False),
    Column("filename", String(255), nullable=False),
    Column("content_type", String(255), nullable=False),
    Column("size", Integer, nullable=False),
    Column("sha256", String(64), nullable=False, index=True),
    Column("inline", Boolean, nullable=False),
    Column("content_id", String(998)),
    Index("ix_attachments_message_id", "message_id"),
)

ticket_cc = Table(
    "ticket_cc",
    metadata,
    Column(
        "ticket_id",
        Integer,
        ForeignKey("tickets.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("email", String(254), primary_key=True),
    Index("ix_ticket_cc_email", "email"),
)

ticket_tags = Table(
    "ticket_tags",
    metadata,
    Column(
        "ticket_id",
        Integer,
        ForeignKey("tickets.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("tag", String(100), primary_key=True),
    Index("ix_ticket_tags_tag", "tag"),
)

ticket_watchers = Table(
    "ticket_watchers",
    metadata,
    Column(
        "ticket_id",
        Integer,
        ForeignKey("tickets.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("admin_id", Integer, ForeignKey("admins.id", ondelete="CASCADE"), primary_key=True),
)

ticket_log = Table(
    "ticket_log",
    metadata,
    _id(),
    _ticket_fk(),
    _when("at"),
    Column("actor", String(254), nullable=False),
    Column("action", String(64), nullable=False),
    Column("detail", Text, nullable=False),
    Column("version", Integer),
    Index("ix_ticket_log_ticket_id", "ticket_id"),
)

thread_links = Table(
    "thread_links",
    metadata,
    _id(),
    Column("mail_message_id", String(998), nullable=False),
    _ticket_fk(),
    Column("role", String(16), nullable=False),
    Index("ix_thread_links_mail_message_id", "mail_message_id"),
    Index("ix_thread_links_ticket_id", "ticket_id"),
)

custom_fields = Table(
    "custom_fields",
    metadata,
    _id(),
    Column(
        "department_id",
        Integer,
        ForeignKey("departments.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("name", String(100), nullable=False),
    UniqueConstraint("department_id", "name", name="uq_custom_fields_department_name"),
)

custom_field_values = Table(
    "custom_field_values",
    metadata,
    Column("ticket_id", Integer, ForeignKey("tickets.id", ondelete="CASCADE"), primary_key=True),
    Column(
        "field_id",
        Integer,
        ForeignKey("custom_fields.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("value", Text, nullable=False),
)

import_log = Table(
    "import_log",
    metadata,
    _id(),
    _when("received_at"),
    Column("transport", String(16), nullable=False),
    Column("raw_sha256", String(64), nullable=False),
    Column("raw_size", Integer, nullable=False),
    Column("outcome", String(16), nullable=False, index=True),
    Column("reason", String(32)),
    Column("sender", String(254), nullable=False),
    Column("recipients", Text, nullable=False),
    Column("subject", String(500), nullable=False),
    Column("mail_message_id", String(998)),
    Column("ticket_id", Integer, ForeignKey("tickets.id", ondelete="SET NULL"), index=True),
    Column("trace", Text, nullable=False),
    _when("imported_at", nullable=True),
    Index("ix_import_log_sender_received_at", "sender", "received_at"),
)

received_keys = Table(
    "received_keys",
    metadata,
    Column("key", String(128), primary_key=True),
    Column("import_id", Integer, ForeignKey("import_log.id", ondelete="CASCADE"), nullable=False),
)

bans = Table(
    "bans",
    metadata,
    _id(),
    Column("pattern", String(254), nullable=False, unique=True),
    _when("created_at"),
)

predefined_replies = Table(
    "predefined_replies",
    metadata,
    _id(),
    Column("title", String(200), nullable=False, unique=True),
    Column("body", Text, nullable=False),
    Column("category", String(100), nullable=False),
)

outbox = Table(
    "outbox",
    metadata,
    _id(),
    _when("created_at"),
    Column("event", String(64), nullable=False),
    Column("ticket_id", Integer, ForeignKey("tickets.id", ondelete="SET NULL"), index=True),
    Column("recipient", String(254), nullable=False),
    Column("mail_message_id", String(998), nullable=False, unique=True),
    Column("subject", String(500), nullable=False),
    Column("payload", Text, nullable=False),
    Column("automatic", Boolean, nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    _when("next_attempt_at", nullable=True),
    _when("sent_at", nullable=True),
    Column("last_error", Text, nullable=False),
    Index("ix_outbox_status_next_attempt_at", "status", "next_attempt_at"),
    Index("ix_outbox_recipient_created_at", "recipient", "created_at"),
)

billable_items = Table(
    "billable_items",
    metadata,
    _id(),
    _ticket_fk(),
    Column("description", String(500), nullable=False),
    Column("amount", Numeric(12, 2), nullable=False),
    Column("invoice_action", String(32), nullable=False),
    Column("admin_id", Integer, ForeignKey("admins.id", ondelete="SET NULL")),
    _when("created_at"),
)

mailbox_checkpoints = Table(
    "mailbox_checkpoints",
    metadata,
    Column("mailbox", String(300), primary_key=True),
    Column("uidvalidity", Integer, nullable=False),
    Column("last_uid", Integer, nullable=False),
)

mailbox_uids = Table(
    "mailbox_uids",
    metadata,
    Column("mailbox", String(300), primary_key=True),
    Column("uidvalidity", Integer, primary_key=True),
    Column("uid", Integer, primary_key=True),
    Column("import_id", Integer, ForeignKey("import_log.id", ondelete="CASCADE"), nullable=False),
)

kb_articles = Table(
    "kb_articles",
    metadata,
    _id(),
    Column("title", String(300), nullable=False),
    Column("body", Text, nullable=False),
    Column("tags", String(500), nullable=False),
)

feedback = Table(
    "feedback",
    metadata,
    _id(),
    _ticket_fk(),
    Column("score", Integer, nullable=False),
    Column("comment", Text, nullable=False),
    _when("created_at"),
)

suppressions = Table(
    "suppressions",
    metadata,
    Column("email", String(254), primary_key=True),
    Column("bounces", Integer, nullable=False),
    _when("until", nullable=True),
    Column("reason", Text, nullable=False),
)
