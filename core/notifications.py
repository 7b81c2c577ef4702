"""Notification rules: the transaction's domain events in, notification intents out.

Each event picks its row of `core.routing.TABLE`; the ticket's parties are
read from the unit of work; then the rules outside the table apply:
acknowledgements per department and per address window, suppressed
addresses, the daily cap on automatic mail. `mailgate.notify` renders each
intent into an outbox row in the same transaction. Bounces of our own
notifications come back through `note_bounce`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from core import events, routing
from core.mail import InboundMail
from core.model import LogEntry, OutboxItem, Suppression, Ticket
from core.ports import UnitOfWork
from core.routing import Parties, Person, Recipient

log = logging.getLogger(__name__)
AUTO_GENERATED = "auto-generated"
AUTO_REPLIED = "auto-replied"
BOUNCED = "bounced"
_VERP = re.compile(r"\+bounce-([0-9a-f]{8,64})@", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class NotifyRules:
    """Installation settings for the rules outside the table."""

    acknowledgement: bool = True
    acknowledgement_window_minutes: int = 60
    max_automatic_per_day: int = 50
    bounce_suppress_after: int = 3
    bounce_window_days: int = 7
    suppress_days: int = 30


@dataclass(frozen=True, slots=True)
class Notification:
    """One email to send: what happened, to whom, and what it shows.

    `message_id` is the reply or note the mail quotes; `attachments` says the
    mail carries that message's files (client copy of an admin reply only).
    """

    event: str
    ticket_id: int
    recipient: Recipient
    message_id: int | None = None
    attachments: bool = False
    automatic: bool = True
    auto_submitted: str = AUTO_GENERATED
    changes: tuple[tuple[str, str, str], ...] = ()
    old_department_id: int | None = None
    subject_admin_id: int | None = None
    actor_admin_id: int | None = None


@dataclass(frozen=True, slots=True)
class HardBounced(events.Event):
    """A notification to `email` bounced permanently (appended by `note_bounce`)."""

    email: str


def plan_notifications(
    uow: UnitOfWork, found: Sequence[events.Event], rules: NotifyRules, now: datetime
) -> list[Notification]:
    """Every notification the events call for, after all the rules."""
    planned: list[Notification] = []
    reflagged = {e.ticket_id for e in found if isinstance(e, events.TicketFlagged)}
    for event in found:
        if isinstance(event, HardBounced):
            _apply_bounce(uow, event, rules, now)
            continue
        ticket = uow.ticket(event.ticket_id)
        if ticket is None or ticket.merged_into_id is not None:
            continue
        items = [i for i in _for_event(uow, ticket, event) if not _moved_flag(event, i, reflagged)]
        if not items:
            continue
        history = _History.read(uow, items, rules, now)
        for item in items:
            if _allowed(history, ticket, item, rules, planned):
                planned.append(item)
    return planned


def _moved_flag(event: events.Event, item: Notification, reflagged: set[int]) -> bool:
    """A flag moved to another admin: watchers hear of it once, as the new flag."""
    return (
        isinstance(event, events.TicketUnflagged)
        and event.ticket_id in reflagged
        and item.recipient.admin_id != event.admin_id
    )


def _for_event(uow: UnitOfWork, ticket: Ticket, event: events.Event) -> list[Notification]:
    if isinstance(event, events.TicketOpened):
        return _opened(uow, ticket, event)
    if isinstance(event, events.NoteAdded):
        return _note(uow, ticket, event)
    simple = _simple_row(event)
    if simple is None:
        return []
    row, extras = simple
    parties = _parties(uow, ticket, event, extras.flagged)
    if isinstance(event, events.ClientReplied):
        message = uow.message(event.message_id)
        parties = replace(parties, actor_email=message.author_email if message else "")
    return [_intent(event, r, extras) for r in routing.recipients(row, parties)]


@dataclass(frozen=True, slots=True)
class _Extras:
    """What a row adds to its intents besides the recipient; `flagged` fills F."""

    message_id: int | None = None
    changes: tuple[tuple[str, str, str], ...] = ()
    old_department_id: int | None = None
    subject_admin_id: int | None = None
    flagged: int | None = -1


def _simple_row(event: events.Event) -> tuple[routing.Row, _Extras] | None:
    table = routing.TABLE
    match event:
        case events.ClientReplied(message_id=mid):
            return table[routing.CLIENT_REPLY], _Extras(message_id=mid)
        case events.AdminReplied(message_id=mid):
            return table[routing.ADMIN_REPLY], _Extras(message_id=mid)
        case events.OptionsChanged(changes=changes):
            return table[routing.OPTIONS_CHANGED], _Extras(changes=changes)
        case events.DepartmentChanged(old_department_id=old):
            return table[routing.DEPARTMENT_CHANGED], _Extras(old_department_id=old)
        case events.TicketFlagged(admin_id=admin_id):
            return table[routing.FLAGGED], _Extras(subject_admin_id=admin_id, flagged=admin_id)
        case events.TicketUnflagged(admin_id=admin_id):
            return table[routing.UNFLAGGED], _Extras(subject_admin_id=admin_id, flagged=admin_id)
        case events.TicketAutoClosed():
            return table[routing.AUTO_CLOSED], _Extras()
        case events.FeedbackRequested():
            return table[routing.FEEDBACK], _Extras()
    return None


def _intent(event: events.Event, recipient: Recipient, extras: _Extras) -> Notification:
    """The notification of `event` for one recipient; the side decides its extras."""
    client_reply_copy = recipient.side == routing.CLIENT and isinstance(event, events.AdminReplied)
    return Notification(
        event=recipient.template,
        ticket_id=event.ticket_id,
        recipient=recipient,
        message_id=extras.message_id,
        attachments=client_reply_copy,
        automatic=not client_reply_copy,
        changes=extras.changes,
        old_department_id=extras.old_department_id,
        subject_admin_id=extras.subject_admin_id,
        actor_admin_id=event.actor_admin_id,
    )


def _opened(uow: UnitOfWork, ticket: Ticket, event: events.TicketOpened) -> list[Notification]:
    parties = _parties(uow, ticket, event, -1)
    department = uow.department(ticket.department_id)
    acknowledge = event.acknowledge and department is not None and department.auto_acknowledge
    extras = _Extras(message_id=event.message_id)
    found = []
    for recipient in routing.recipients(routing.TABLE[routing.TICKET_OPENED], parties):
        if recipient.side == routing.CLIENT and not acknowledge:
            continue
        item = _intent(event, recipient, extras)
        if recipient.side == routing.CLIENT and not event.by_admin:
            item = replace(item, auto_submitted=AUTO_REPLIED)
        found.append(item)
    return found


def _note(uow: UnitOfWork, ticket: Ticket, event: events.NoteAdded) -> list[Notification]:
    parties = _parties(uow, ticket, event, -1)
    mentioned = tuple(p for p in (_admin(uow, i) for i in event.mentioned_admin_ids) if p)
    mentions = routing.mention_recipients(mentioned, parties)
    taken = {m.email for m in mentions}
    notes = routing.recipients(routing.TABLE[routing.NOTE_ADDED], parties)
    chosen = mentions + [r for r in notes if r.email not in taken]
    return [_intent(event, r, _Extras(message_id=event.message_id)) for r in chosen]


def _admin(uow: UnitOfWork, admin_id: int | None) -> Person | None:
    admin = uow.admin(admin_id) if admin_id is not None else None
    if admin is None or admin.id is None:
        return None
    return Person(admin.email, admin.name, admin.id)


@dataclass(frozen=True, slots=True)
class _Account:
    owner: Person | None = None
    users: tuple[Person, ...] = ()
    contacts: tuple[Person, ...] = ()


def _parties(uow: UnitOfWork, ticket: Ticket, event: events.Event, flagged: int | None) -> Parties:
    """Who fills each column; `flagged` -1 means the ticket's flagged admin fills F."""
    members = uow.members(ticket.department_id)
    department = (_admin(uow, m.admin_id) for m in members if m.notify)
    watchers = (_admin(uow, w.admin_id) for w in ticket.watches)
    target = ticket.flagged_admin_id if flagged == -1 else flagged
    actor = _admin(uow, event.actor_admin_id)
    account = _account(uow, ticket.client_id)
    return Parties(
        watchers=tuple(p for p in watchers if p),
        department=tuple(p for p in department if p),
        flagged=_admin(uow, target),
        any_flagged=ticket.flagged_admin_id is not None,
        owner=account.owner,
        users=account.users,
        contacts=account.contacts,
        cc=tuple(Person(c.email, "") for c in ticket.cc),
        requester=_requester(ticket, account),
        visible_admins=frozenset(m.admin_id for m in members),
        actor_admin_id=event.actor_admin_id,
        actor_email=actor.email if actor else "",
        target_admin_id=target,
    )


def _requester(ticket: Ticket, account: _Account) -> Person | None:
    """The requester; the account's owner when the requester has no address (footnote 5)."""
    if "@" in ticket.requester_email:
        return Person(ticket.requester_email, ticket.requester_name)
    return account.owner


def _account(uow: UnitOfWork, client_id: int | None) -> _Account:
    client = uow.client(client_id) if client_id is not None else None
    if client is None or client.id is None:
        return _Account()
    owner = uow.user(client.owner_id)
    users = []
    for link in uow.client_users(client.id):
        user = uow.user(link.user_id)
        if user is not None:
            users.append(Person(user.email, user.name, wants_mail=link.ticket_emails))
    contacts = tuple(
        Person(c.email, c.name, wants_mail=c.ticket_emails) for c in uow.contacts(client.id)
    )
    return _Account(Person(owner.email, owner.name) if owner else None, tuple(users), contacts)


@dataclass(frozen=True, slots=True)
class _History:
    """What the rules need to know of an event's recipients, read in two queries."""

    now: datetime
    suppressed: dict[str, Suppression]
    counts: dict[str, tuple[int, int]]

    @classmethod
    def read(
        cls, uow: UnitOfWork, items: Sequence[Notification], rules: NotifyRules, now: datetime
    ) -> _History:
        emails = {item.recipient.email for item in items}
        window = now - timedelta(minutes=rules.acknowledgement_window_minutes)
        day = now - timedelta(days=1)
        counts = uow.outbox_counts(emails, routing.ACKNOWLEDGEMENT, window, day)
        return cls(now, uow.suppressions_of(emails), counts)


def _allowed(
    history: _History,
    ticket: Ticket,
    item: Notification,
    rules: NotifyRules,
    planned: list[Notification],
) -> bool:
    """Suppression, the acknowledgement window and the daily cap on automatic mail.

    The counts come from the outbox as it was before this transaction, so the
    items planned earlier in it (`planned`) are added to them.
    """
    email = item.recipient.email
    suppressed = history.suppressed.get(email.lower())
    if suppressed is not None and suppressed.until is not None and suppressed.until > history.now:
        return _held(ticket, item, "address suppressed after hard bounces")
    earlier = [p for p in planned if p.recipient.email == email]
    recent, sent = history.counts.get(email, (0, 0))
    if item.event == routing.ACKNOWLEDGEMENT:
        if not rules.acknowledgement or recent or any(p.event == item.event for p in earlier):
            return _held(ticket, item, "acknowledged recently or acknowledgements off")
    if item.automatic:
        if sent + sum(p.automatic for p in earlier) >= rules.max_automatic_per_day:
            return _held(ticket, item, "daily limit of automatic mail reached")
    return True


def _held(ticket: Ticket, item: Notification, why: str) -> bool:
    log.info(
        "ticket %s: no %s mail to %s: %s", ticket.number, item.event, item.recipient.email, why
    )
    return False


# --- bounces of our own notifications ---------------------------------------------


def note_bounce(
    uow: UnitOfWork, mail: InboundMail, recipients: Sequence[str], now: datetime
) -> OutboxItem | None:
    """Record a delivery report about one of our notifications; None when it is not one.

    Call it for every message intake classifies as a bounce. A permanent
    failure marks the outbox row bounced, logs it on the ticket and counts
    against the address (`HardBounced`; the router suppresses the address
    after too many); a delay is only logged. It never opens a ticket.
    """
    item = _bounced_item(uow, mail, recipients)
    if item is None:
        return None
    permanent = mail.bounce.permanent if mail.bounce is not None else True
    detail = _bounce_detail(mail, item, permanent)
    ticket = uow.ticket(item.ticket_id) if item.ticket_id is not None else None
    if ticket is not None:
        action = "delivery failed" if permanent else "delivery delayed"
        ticket.log.append(LogEntry(at=now, actor="system", action=action, detail=detail))
    if not permanent or item.status == BOUNCED:
        return item
    item.status = BOUNCED
    item.last_error = detail[:1000]
    suppression = uow.suppression(item.recipient)
    if suppression is None:
        suppression = Suppression(email=item.recipient, bounces=0)
        uow.add(suppression)
    suppression.bounces += 1
    suppression.reason = detail[:1000]
    uow.events.append(HardBounced(item.ticket_id or 0, None, item.recipient))
    return item


def _bounced_item(
    uow: UnitOfWork, mail: InboundMail, recipients: Sequence[str]
) -> OutboxItem | None:
    for address in recipients:
        found = _VERP.search(address)
        if found:
            item = uow.outbox_item_by_token(found.group(1).lower())
            if item is not None:
                return item
    original = mail.bounce.original_message_id if mail.bounce is not None else None
    return uow.outbox_item_by_mail_id(original) if original else None


def _bounce_detail(mail: InboundMail, item: OutboxItem, permanent: bool) -> str:
    kind = "bounced" if permanent else "delayed"
    return f"{item.event} to {item.recipient} {kind}: {mail.subject[:200]}"


def _apply_bounce(uow: UnitOfWork, event: HardBounced, rules: NotifyRules, now: datetime) -> None:
    """Suppress the address after `bounce_suppress_after` hard bounces in the window.

    Bounces before an expired or lifted suppression (`until` in the past) no
    longer count, so `ticketd suppression remove` gives the address a fresh start.
    """
    suppression = uow.suppression(event.email)
    if suppression is None or not rules.bounce_suppress_after:
        return
    since = now - timedelta(days=rules.bounce_window_days)
    if suppression.until is not None:
        if suppression.until > now:
            return
        since = max(since, suppression.until)
    if uow.bounces_since(event.email, since) >= rules.bounce_suppress_after:
        suppression.until = now + timedelta(days=rules.suppress_days)
        log.warning(
            "suppressing mail to %s until %s after hard bounces",
            event.email,
            suppression.until.isoformat(),
        )
