"""Maps the plain domain classes of `core.model` onto the tables, once per process."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import registry, relationship

from core import model
from storage import tables

mapper_registry = registry(metadata=tables.metadata)
_mapped = False


def _children(cls: type, order_by: Any) -> Any:
    return relationship(cls, cascade="all, delete-orphan", order_by=order_by)


def map_domain() -> None:
    """Map every domain class; safe to call more than once."""
    global _mapped
    if _mapped:
        return
    _mapped = True
    simple = {
        model.Department: tables.departments,
        model.Admin: tables.admins,
        model.DepartmentMember: tables.department_members,
        model.User: tables.users,
        model.Client: tables.clients,
        model.ClientUser: tables.client_users,
        model.Contact: tables.contacts,
        model.Attachment: tables.attachments,
        model.TicketCc: tables.ticket_cc,
        model.TicketTag: tables.ticket_tags,
        model.Watch: tables.ticket_watchers,
        model.LogEntry: tables.ticket_log,
        model.ThreadLink: tables.thread_links,
        model.CustomField: tables.custom_fields,
        model.CustomFieldValue: tables.custom_field_values,
        model.ImportRecord: tables.import_log,
        model.ReceivedKey: tables.received_keys,
        model.Ban: tables.bans,
        model.PredefinedReply: tables.predefined_replies,
        model.OutboxItem: tables.outbox,
        model.BillableItem: tables.billable_items,
        model.MailboxCheckpoint: tables.mailbox_checkpoints,
        model.MailboxUid: tables.mailbox_uids,
        model.KbArticle: tables.kb_articles,
        model.Feedback: tables.feedback,
        model.Suppression: tables.suppressions,
    }
    for cls, table in simple.items():
        mapper_registry.map_imperatively(cls, table)
    mapper_registry.map_imperatively(
        model.Message,
        tables.messages,
        properties={"attachments": _children(model.Attachment, tables.attachments.c.id)},
    )
    mapper_registry.map_imperatively(
        model.Ticket,
        tables.tickets,
        properties={
            "messages": _children(
                model.Message, (tables.messages.c.created_at, tables.messages.c.id)
            ),
            "cc": _children(model.TicketCc, tables.ticket_cc.c.email),
            "tags": _children(model.TicketTag, tables.ticket_tags.c.tag),
            "watches": _children(model.Watch, tables.ticket_watchers.c.admin_id),
            "log": _children(model.LogEntry, tables.ticket_log.c.id),
        },
    )
