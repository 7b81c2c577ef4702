"""Read models: the documents `ticket show`, `ticket list` and `importlog` print.

Field names are part of the outside contract (PRODUCT.md): add, never rename.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from core.model import NOTE, ImportRecord, Message, Ticket
from core.ports import UnitOfWork


def iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _username(uow: UnitOfWork, admin_id: int | None) -> str | None:
    admin = uow.admin(admin_id) if admin_id is not None else None
    return admin.username if admin else None


def message_document(message: Message) -> dict[str, Any]:
    return {
        "id": message.id,
        "kind": message.kind,
        "author_email": message.author_email,
        "author_name": message.author_name,
        "badge": message.badge,
        "body": message.body,
        "body_html": message.body_html,
        "created_at": iso(message.created_at),
        "edited_at": iso(message.edited_at),
        "rating": message.rating,
        "attachments": [
            {
                "filename": a.filename,
                "content_type": a.content_type,
                "size": a.size,
                "sha256": a.sha256,
                "inline": a.inline,
            }
            for a in message.attachments
        ],
    }


def ticket_summary(uow: UnitOfWork, ticket: Ticket) -> dict[str, Any]:
    department = uow.department(ticket.department_id)
    return {
        "number": ticket.number,
        "subject": ticket.subject,
        "status": ticket.status,
        "priority": ticket.priority,
        "department": department.email if department else None,
        "requester": {"email": ticket.requester_email, "name": ticket.requester_name},
        "last_reply_at": iso(ticket.last_reply_at),
        "flagged_to": _username(uow, ticket.flagged_admin_id),
        "tags": sorted(t.tag for t in ticket.tags),
        "version": ticket.version,
    }


def ticket_document(uow: UnitOfWork, ticket: Ticket, include_notes: bool = True) -> dict[str, Any]:
    """The whole ticket; `include_notes=False` is what a client may see (no notes,
    no internal log, watchers or blocked replies)."""
    assert ticket.id is not None
    merged = uow.ticket(ticket.merged_into_id) if ticket.merged_into_id else None
    document = ticket_summary(uow, ticket)
    visible = [
        m for m in ticket.messages if m.deleted_at is None and (include_notes or m.kind != NOTE)
    ]
    document |= {
        "client_id": ticket.client_id,
        "cc": [c.email for c in ticket.cc],
        "watchers": sorted(
            name for name in (_username(uow, w.admin_id) for w in ticket.watches) if name
        ),
        "merged_into": merged.number if merged else None,
        "service": ticket.service_ref,
        "created_at": iso(ticket.created_at),
        "last_activity_at": iso(ticket.last_activity_at),
        "messages": [message_document(m) for m in visible],
        "log": [
            {"at": iso(e.at), "actor": e.actor, "action": e.action, "detail": e.detail}
            for e in ticket.log
        ],
        "blocked_replies": [
            import_summary(r, ticket.number)
            for r in uow.import_records(outcome="blocked", ticket_id=ticket.id)
            if r.reason in ("not_authorized", "ticket_closed")
        ],
    }
    if not include_notes:
        for internal in ("log", "blocked_replies", "watchers"):
            document[internal] = []
    return document


def import_summary(record: ImportRecord, ticket_number: str | None) -> dict[str, Any]:
    return {
        "id": record.id,
        "received_at": iso(record.received_at),
        "transport": record.transport,
        "from": record.sender,
        "to": record.recipients,
        "subject": record.subject,
        "message_id": record.mail_message_id,
        "outcome": record.outcome,
        "reason": record.reason,
        "ticket": ticket_number,
        "size": record.raw_size,
        "imported_at": iso(record.imported_at),
    }


def import_document(record: ImportRecord, ticket_number: str | None) -> dict[str, Any]:
    document = import_summary(record, ticket_number)
    document["trace"] = json.loads(record.trace or "[]")
    document["raw_sha256"] = record.raw_sha256
    return document
