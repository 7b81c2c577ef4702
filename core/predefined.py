"""Predefined replies and the merge fields they may carry.

`[NAME]`, `[FIRSTNAME]`, `[EMAIL]` and `[FIELD NAME]` for each custom field of
the ticket's department are replaced with the ticket's data.
"""

from __future__ import annotations

import re

from core.errors import Conflict, NotFound, UsageError
from core.model import PredefinedReply, Ticket
from core.ports import UnitOfWork

FIELD = re.compile(r"\[([A-Za-z0-9 _-]{1,64})\]")


def merge_fields(uow: UnitOfWork, ticket: Ticket) -> dict[str, str]:
    """The merge field values of a ticket, keyed by upper-case field name."""
    name = ticket.requester_name or ticket.requester_email.partition("@")[0]
    values = {
        "NAME": name,
        "FIRSTNAME": name.split()[0] if name.split() else name,
        "EMAIL": ticket.requester_email,
    }
    if ticket.id is not None:
        known = {f.id: f.name for f in uow.custom_fields(ticket.department_id)}
        for value in uow.field_values(ticket.id):
            if value.field_id in known:
                values[known[value.field_id].upper()] = value.value
    return values


def apply_merge_fields(text: str, values: dict[str, str]) -> str:
    """Replace known `[FIELD]`s; unknown brackets are left as written."""
    return FIELD.sub(lambda m: values.get(m.group(1).upper(), m.group(0)), text)


def fill_predefined(uow: UnitOfWork, ticket: Ticket, title: str, extra: str = "") -> str:
    """The predefined reply called `title`, merged for this ticket, then any extra text."""
    reply = uow.predefined_reply(title)
    if reply is None:
        matches = uow.predefined_replies(title)
        if len(matches) != 1:
            raise NotFound(f"no single predefined reply matching {title!r}")
        reply = matches[0]
    body = apply_merge_fields(reply.body, merge_fields(uow, ticket))
    return f"{body.rstrip()}\n\n{extra}".strip() + "\n" if extra.strip() else body


def add_predefined_reply(uow: UnitOfWork, title: str, body: str, category: str) -> PredefinedReply:
    """Store a predefined reply under a unique title."""
    title = " ".join(title.split())
    if not title or not body.strip():
        raise UsageError("a predefined reply needs a title and a body")
    if uow.predefined_reply(title) is not None:
        raise Conflict(f"a predefined reply titled {title!r} exists")
    reply = PredefinedReply(title=title, body=body, category=category.strip())
    uow.add(reply)
    uow.flush()
    return reply
