"""Notification routing: ticketd's table of who gets which email, kept as data.

`TABLE` is `/work/shared/NOTIFICATIONS.md` row by row; `recipients` applies
the rules every row shares (own actions, department access, preferences,
one mail per person) to a snapshot of the ticket's parties. Pure: no unit of
work here, `core.notifications` gathers the parties and hands on the result.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from core.addresses import valid_email


class Audience(Enum):
    """The table's columns."""

    WATCHERS = "W"
    DEPARTMENT = "D"
    FLAGGED = "F"
    OWNER = "O"
    USERS = "U"
    CONTACTS = "C"
    CC = "CC"
    REQUESTER = "R"


# The column letters of NOTIFICATIONS.md, so the table below reads like the page.
W, D, F = Audience.WATCHERS, Audience.DEPARTMENT, Audience.FLAGGED
O, U, C = Audience.OWNER, Audience.USERS, Audience.CONTACTS  # noqa: E741
CC, R = Audience.CC, Audience.REQUESTER
ADMIN_SIDE = frozenset({W, D, F})
ADMIN, CLIENT = "admin", "client"


@dataclass(frozen=True, slots=True)
class Row:
    """One row: the audiences ticked, the footnote rules, and the template per side.

    `department_unless_flagged` is footnote 1, `skip_self_target` footnote 3;
    the other footnotes are decided by which person fills a column (see
    `core.notifications`). Templates are `templates/emails/<name>.{txt,html}`.
    """

    event: str
    audiences: frozenset[Audience]
    admin_template: str = ""
    client_template: str = ""
    department_unless_flagged: bool = False
    skip_self_target: bool = False


TICKET_OPENED = "ticket_opened"
ACKNOWLEDGEMENT = "ticket_opened_ack"
CLIENT_REPLY = "client_reply"
ADMIN_REPLY = "admin_reply"
OPTIONS_CHANGED = "options_changed"
DEPARTMENT_CHANGED = "department_changed"
FLAGGED = "ticket_flagged"
UNFLAGGED = "ticket_unflagged"
NOTE_ADDED = "note_added"
NOTE_MENTION = "note_mention"
AUTO_CLOSED = "auto_close"
FEEDBACK = "feedback_request"

TABLE: dict[str, Row] = {
    row.event: row
    for row in (
        Row(TICKET_OPENED, frozenset({D, F, O, U, C, CC, R}), TICKET_OPENED, ACKNOWLEDGEMENT),
        Row(CLIENT_REPLY, frozenset({W, D, F}), CLIENT_REPLY, department_unless_flagged=True),
        Row(ADMIN_REPLY, frozenset({W, F, O, U, C, CC, R}), ADMIN_REPLY, ADMIN_REPLY),
        Row(OPTIONS_CHANGED, frozenset({W, F}), OPTIONS_CHANGED),
        Row(
            DEPARTMENT_CHANGED,
            frozenset({W, D, F}),
            DEPARTMENT_CHANGED,
            department_unless_flagged=True,
        ),
        Row(FLAGGED, frozenset({W, F}), FLAGGED, skip_self_target=True),
        Row(UNFLAGGED, frozenset({W, F}), UNFLAGGED),
        Row(NOTE_ADDED, frozenset({W, F}), NOTE_ADDED),
        Row(NOTE_MENTION, frozenset(), NOTE_MENTION),
        Row(AUTO_CLOSED, frozenset({O, CC, R}), client_template=AUTO_CLOSED),
        Row(FEEDBACK, frozenset({R}), client_template=FEEDBACK),
    )
}
# The order audiences are filled in: someone in two gets the mail of the first.
ORDER = (F, W, D, R, O, CC, U, C)


@dataclass(frozen=True, slots=True)
class Person:
    """Someone who may be mailed; `wants_mail` is the users'/contacts' preference."""

    email: str
    name: str
    admin_id: int | None = None
    wants_mail: bool = True


@dataclass(frozen=True, slots=True)
class Parties:
    """Who fills each column for one event on one ticket.

    `flagged` is the admin who fills F for this event (the newly flagged or the
    unflagged admin for those rows); `any_flagged` says whether the ticket has
    a flagged admin now (footnote 1). `visible_admins` can see the ticket's
    department; `actor_admin_id`/`actor_email` did the action.
    """

    watchers: tuple[Person, ...] = ()
    department: tuple[Person, ...] = ()
    flagged: Person | None = None
    any_flagged: bool = False
    owner: Person | None = None
    users: tuple[Person, ...] = ()
    contacts: tuple[Person, ...] = ()
    cc: tuple[Person, ...] = ()
    requester: Person | None = None
    visible_admins: frozenset[int] = frozenset()
    actor_admin_id: int | None = None
    actor_email: str = ""
    target_admin_id: int | None = None


@dataclass(frozen=True, slots=True)
class Recipient:
    """One person to mail for one event, with the side (and template) they get."""

    email: str
    name: str
    side: str
    template: str
    admin_id: int | None = None


def recipients(row: Row, parties: Parties) -> list[Recipient]:
    """The people `row` mails, each once, after the rules every row shares.

    Addresses that are not plain, safe addr-specs (`core.addresses`) are never mailed.
    """
    if row.skip_self_target and parties.target_admin_id == parties.actor_admin_id:
        return []
    chosen: dict[str, Recipient] = {}
    for audience in ORDER:
        if audience not in row.audiences:
            continue
        side = ADMIN if audience in ADMIN_SIDE else CLIENT
        template = row.admin_template if side == ADMIN else row.client_template
        for person in _fill(audience, row, parties):
            key = valid_email(person.email)
            if key and key not in chosen and template and _may_mail(person, side, parties):
                chosen[key] = Recipient(key, person.name, side, template, person.admin_id)
    return list(chosen.values())


def _fill(audience: Audience, row: Row, parties: Parties) -> tuple[Person, ...]:
    if audience is D and row.department_unless_flagged and parties.any_flagged:
        return ()
    if audience in (U, C):
        people = parties.users if audience is U else parties.contacts
        return tuple(p for p in people if p.wants_mail)
    single = {F: parties.flagged, O: parties.owner, R: parties.requester}
    if audience in single:
        person = single[audience]
        return (person,) if person is not None else ()
    return {W: parties.watchers, D: parties.department, CC: parties.cc}[audience]


def _may_mail(person: Person, side: str, parties: Parties) -> bool:
    """Nobody about their own action; admins only for departments they can see."""
    if person.email.lower() == parties.actor_email.lower():
        return False
    if side == CLIENT:
        return True
    return (
        person.admin_id is not None
        and person.admin_id != parties.actor_admin_id
        and person.admin_id in parties.visible_admins
    )


def mention_recipients(mentioned: tuple[Person, ...], parties: Parties) -> list[Recipient]:
    """Note Mention: each `@username` admin who can see the ticket, never the author."""
    row = TABLE[NOTE_MENTION]
    found: dict[str, Recipient] = {}
    for person in mentioned:
        key = valid_email(person.email)
        if key and key not in found and _may_mail(person, ADMIN, parties):
            found[key] = Recipient(key, person.name, ADMIN, row.admin_template, person.admin_id)
    return list(found.values())
