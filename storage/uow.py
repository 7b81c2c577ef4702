"""The unit of work: one transaction, and the queries core's rules ask of it.

Implements `core.ports.UnitOfWork` with a SQLAlchemy session. Nothing here
decides anything; it finds, adds and deletes domain objects.
"""

from __future__ import annotations

import weakref
from collections.abc import Collection, Iterable, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any, TypeVar

from sqlalchemy import Engine, and_, case, delete, event, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from core import model
from core.errors import Conflict
from core.events import Event
from storage import tables
from storage.blobs import BlobStore
from storage.engine import is_sqlite
from storage.mapping import map_domain

T = TypeVar("T")


_FACTORIES: weakref.WeakKeyDictionary[Engine, sessionmaker[Session]] = weakref.WeakKeyDictionary()


def _session_factory(engine: Engine) -> sessionmaker[Session]:
    """One session factory per engine (each sessionmaker defines a Session class)."""
    factory = _FACTORIES.get(engine)
    if factory is None:
        factory = _FACTORIES[engine] = sessionmaker(engine, expire_on_commit=False)
        event.listen(factory, "loaded_as_persistent", _hold)
        event.listen(factory, "pending_to_persistent", _hold)
    return factory


def _hold(session: Session, instance: object) -> None:
    """Keep every object of the unit of work alive until its session goes.

    The identity map holds unchanged objects weakly: a ticket the decision made
    and dropped was read again (with its messages, watchers and CCs) when
    notifications were planned. Held, later `get`s find it without a query.
    """
    session.info.setdefault("held", []).append(instance)


class SqlUnitOfWork:
    """A session used for one transaction; leaving without `commit` rolls back."""

    def __init__(self, engine: Engine, blobs: BlobStore) -> None:
        map_domain()
        self._factory = _session_factory(engine)
        self._lock_rows = not is_sqlite(engine)
        self.blobs = blobs
        self.session: Session
        self.events: list[Event] = []
        self._departments: list[model.Department] | None = None
        self._admins: list[model.Admin] | None = None

    def __enter__(self) -> SqlUnitOfWork:
        self.session = self._factory()
        self.events = []
        self._departments = None
        self._admins = None
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.session.rollback()
        self.session.close()

    def commit(self) -> None:
        try:
            self.session.commit()
        except IntegrityError as err:
            self.session.rollback()
            raise Conflict(f"conflicts with existing data: {err.orig}") from err

    def flush(self) -> None:
        try:
            self.session.flush()
        except IntegrityError as err:
            self.session.rollback()
            raise Conflict(f"conflicts with existing data: {err.orig}") from err

    def add(self, obj: object) -> None:
        self.session.add(obj)

    def delete(self, obj: object) -> None:
        self.session.delete(obj)

    def _one(self, cls: type[T], *where: Any) -> T | None:
        return self.session.scalars(select(cls).where(*where).limit(1)).first()

    def _all(self, cls: type[T], *where: Any, order: Any = None) -> list[T]:
        query = select(cls).where(*where)
        if order is not None:
            query = query.order_by(order)
        return list(self.session.scalars(query))

    # tickets

    def ticket(self, ticket_id: int, lock: bool = False) -> model.Ticket | None:
        if not (lock and self._lock_rows):
            return self.session.get(model.Ticket, ticket_id)
        query = select(model.Ticket).where(tables.tickets.c.id == ticket_id).with_for_update()
        return self.session.scalars(query).first()

    def ticket_by_number(self, number: str, lock: bool = False) -> model.Ticket | None:
        row = self.session.execute(
            select(tables.tickets.c.id).where(tables.tickets.c.number == number)
        ).first()
        return self.ticket(row[0], lock) if row else None

    def number_issued(self, number: str) -> bool:
        found = self.session.execute(
            select(tables.issued_numbers.c.number).where(tables.issued_numbers.c.number == number)
        ).first()
        return found is not None

    def try_issue_number(self, number: str) -> bool:
        """Claim `number` for good; False, with the transaction intact, when it is taken
        (also by a concurrent transaction that committed it after our check)."""
        self.flush()  # pending changes fail on their own, not as a taken number
        try:
            with self.session.begin_nested():
                self.session.execute(tables.issued_numbers.insert().values(number=number))
        except IntegrityError:
            return False
        return True

    def tickets(
        self,
        statuses: Sequence[str] = (),
        department_ids: Sequence[int] | None = None,
        tag: str | None = None,
        flagged_admin_id: int | None = None,
        search: str | None = None,
        include_merged: bool = False,
    ) -> list[model.Ticket]:
        t = tables.tickets
        query = select(model.Ticket)
        if not include_merged:
            query = query.where(t.c.merged_into_id.is_(None))
        if statuses:
            query = query.where(t.c.status.in_(statuses))
        if department_ids is not None:
            query = query.where(t.c.department_id.in_(department_ids))
        if tag:
            tagged = select(tables.ticket_tags.c.ticket_id).where(
                tables.ticket_tags.c.tag == tag.lower()
            )
            query = query.where(t.c.id.in_(tagged))
        if flagged_admin_id is not None:
            query = query.where(t.c.flagged_admin_id == flagged_admin_id)
        if search:
            pattern = f"%{search.lower()}%"
            in_body = select(tables.messages.c.ticket_id).where(
                func.lower(tables.messages.c.body).like(pattern)
            )
            query = query.where(
                or_(
                    func.lower(t.c.subject).like(pattern),
                    t.c.number == search,
                    func.lower(t.c.requester_email).like(pattern),
                    t.c.id.in_(in_body),
                )
            )
        query = query.order_by(t.c.last_activity_at.desc(), t.c.id.desc())
        return list(self.session.scalars(query))

    def tickets_idle_since(self, statuses: Sequence[str], before: datetime) -> list[model.Ticket]:
        t = tables.tickets
        return self._all(
            model.Ticket,
            t.c.status.in_(statuses),
            t.c.last_activity_at < before,
            t.c.merged_into_id.is_(None),
        )

    def message(self, message_id: int) -> model.Message | None:
        return self.session.get(model.Message, message_id)

    def tickets_by_mail_id(self, mail_ids: Iterable[str], roles: Sequence[str]) -> list[int]:
        ids = [m for m in mail_ids if m]
        if not ids:
            return []
        links = tables.thread_links
        rows = list(
            self.session.execute(
                select(links.c.mail_message_id, links.c.ticket_id).where(
                    links.c.mail_message_id.in_(ids), links.c.role.in_(roles)
                )
            )
        )
        order = {mail_id: i for i, mail_id in enumerate(ids)}
        rows.sort(key=lambda row: order[row[0]])
        return [row[1] for row in rows]

    def thread_ids(self, ticket_id: int, role: str) -> list[str]:
        links = tables.thread_links
        rows = self.session.execute(
            select(links.c.mail_message_id)
            .where(links.c.ticket_id == ticket_id, links.c.role == role)
            .order_by(links.c.id)
        )
        return [row[0] for row in rows]

    def move_thread_links(
        self, from_ticket: int, to_ticket: int, mail_ids: Sequence[str] | None = None
    ) -> None:
        """Point a ticket's Message-IDs (all, or only `mail_ids`) at another ticket."""
        links = tables.thread_links
        query = links.update().where(links.c.ticket_id == from_ticket)
        if mail_ids is not None:
            query = query.where(links.c.mail_message_id.in_(list(mail_ids)))
        self.session.execute(query.values(ticket_id=to_ticket))

    # directory

    def department(self, department_id: int) -> model.Department | None:
        return self.session.get(model.Department, department_id)

    def department_by_email(self, email: str) -> model.Department | None:
        wanted = email.lower()
        return next((d for d in self.departments() if d.email == wanted), None)

    def departments(self) -> list[model.Department]:
        """All departments, read once per unit of work (a handful of config rows)."""
        if self._departments is None:
            self._departments = self._all(model.Department, order=tables.departments.c.id)
        return self._departments

    def members(self, department_id: int) -> list[model.DepartmentMember]:
        return self._all(
            model.DepartmentMember, tables.department_members.c.department_id == department_id
        )

    def admin(self, admin_id: int) -> model.Admin | None:
        return self.session.get(model.Admin, admin_id)

    def admin_by_username(self, username: str) -> model.Admin | None:
        return next((a for a in self.admins() if a.username == username), None)

    def admins(self) -> list[model.Admin]:
        """All admins, read once per unit of work (a handful of config rows)."""
        if self._admins is None:
            self._admins = self._all(model.Admin, order=tables.admins.c.id)
        return self._admins

    def admin_departments(self, admin_id: int) -> list[int]:
        m = tables.department_members
        rows = self.session.execute(select(m.c.department_id).where(m.c.admin_id == admin_id))
        return [row[0] for row in rows]

    def user_by_email(self, email: str) -> model.User | None:
        return self._one(model.User, tables.users.c.email == email.lower())

    def user(self, user_id: int) -> model.User | None:
        return self.session.get(model.User, user_id)

    def client(self, client_id: int) -> model.Client | None:
        return self.session.get(model.Client, client_id)

    def clients_owned_by(self, user_id: int) -> list[model.Client]:
        return self._all(model.Client, tables.clients.c.owner_id == user_id)

    def client_users(self, client_id: int) -> list[model.ClientUser]:
        return self._all(model.ClientUser, tables.client_users.c.client_id == client_id)

    def user_clients(self, user_id: int) -> list[model.ClientUser]:
        return self._all(model.ClientUser, tables.client_users.c.user_id == user_id)

    def contacts(self, client_id: int) -> list[model.Contact]:
        return self._all(model.Contact, tables.contacts.c.client_id == client_id)

    def contacts_by_email(self, email: str) -> list[model.Contact]:
        return self._all(model.Contact, tables.contacts.c.email == email.lower())

    # bans, import log, predefined replies, outbox

    def bans(self) -> list[model.Ban]:
        return self._all(model.Ban, order=tables.bans.c.pattern)

    def ban(self, pattern: str) -> model.Ban | None:
        return self._one(model.Ban, tables.bans.c.pattern == pattern.lower())

    def is_banned(self, email: str) -> bool:
        email = email.lower()
        domain = email.rpartition("@")[2]
        return self._one(model.Ban, tables.bans.c.pattern.in_([email, domain])) is not None

    def import_record(self, import_id: int) -> model.ImportRecord | None:
        return self.session.get(model.ImportRecord, import_id)

    def import_records(
        self, outcome: str | None = None, ticket_id: int | None = None
    ) -> list[model.ImportRecord]:
        log = tables.import_log
        where = []
        if outcome:
            where.append(log.c.outcome == outcome)
        if ticket_id is not None:
            where.append(log.c.ticket_id == ticket_id)
        return self._all(model.ImportRecord, *where, order=log.c.id.desc())

    def received(self, key: str) -> model.ReceivedKey | None:
        return self.session.get(model.ReceivedKey, key)

    def imports_from(self, sender: str, since: datetime) -> int:
        log = tables.import_log
        query = select(func.count()).where(log.c.sender == sender, log.c.received_at >= since)
        return int(self.session.execute(query).scalar_one())

    def predefined_reply(self, title: str) -> model.PredefinedReply | None:
        return self._one(
            model.PredefinedReply,
            func.lower(tables.predefined_replies.c.title) == title.lower(),
        )

    def predefined_replies(self, search: str = "") -> list[model.PredefinedReply]:
        title = func.lower(tables.predefined_replies.c.title)
        return self._all(
            model.PredefinedReply,
            title.like(f"%{search.lower()}%"),
            order=tables.predefined_replies.c.title,
        )

    def custom_fields(self, department_id: int) -> list[model.CustomField]:
        return self._all(model.CustomField, tables.custom_fields.c.department_id == department_id)

    def field_values(self, ticket_id: int) -> list[model.CustomFieldValue]:
        return self._all(
            model.CustomFieldValue, tables.custom_field_values.c.ticket_id == ticket_id
        )

    def billable_items(self, ticket_id: int) -> list[model.BillableItem]:
        return self._all(model.BillableItem, tables.billable_items.c.ticket_id == ticket_id)

    def outbox_items(self, status: str | None = None) -> list[model.OutboxItem]:
        where = [tables.outbox.c.status == status] if status else []
        return self._all(model.OutboxItem, *where, order=tables.outbox.c.id.desc())

    def suppression(self, email: str) -> model.Suppression | None:
        return self.session.get(model.Suppression, email.lower())

    def suppressions_of(self, emails: Collection[str]) -> dict[str, model.Suppression]:
        """The suppressions of `emails` (lower case keys), in one query for all recipients."""
        wanted = {email.lower() for email in emails}
        found = self._all(model.Suppression, tables.suppressions.c.email.in_(wanted))
        return {item.email: item for item in found}

    def kb_articles(self) -> list[model.KbArticle]:
        return self._all(model.KbArticle, order=tables.kb_articles.c.id)

    def kb_article(self, article_id: int) -> model.KbArticle | None:
        return self.session.get(model.KbArticle, article_id)

    def feedback(self) -> list[model.Feedback]:
        return self._all(model.Feedback, order=tables.feedback.c.id)

    def delete_where(self, table: str, **equals: object) -> None:
        target = tables.metadata.tables[table]
        self.session.execute(delete(target).where(*(target.c[k] == v for k, v in equals.items())))

    # --- notifications: outbox delivery, acknowledgement window, bounces ---------------

    def outbox_item(self, item_id: int) -> model.OutboxItem | None:
        return self.session.get(model.OutboxItem, item_id)

    def outbox_item_by_mail_id(self, mail_id: str) -> model.OutboxItem | None:
        return self._one(model.OutboxItem, tables.outbox.c.mail_message_id == mail_id)

    def outbox_item_by_token(self, token: str) -> model.OutboxItem | None:
        """The item whose Message-ID is `ticketd.{token}@...` (the VERP bounce token)."""
        if not token.isalnum():
            return None
        pattern = f"ticketd.{token}@%"
        return self._one(model.OutboxItem, tables.outbox.c.mail_message_id.like(pattern))

    def claim_outbox(
        self, now: datetime, limit: int, lease_end: datetime
    ) -> list[tuple[int, str, str]]:
        """Lease up to `limit` due rows (id, Message-ID, payload), oldest first, in one
        UPDATE ... RETURNING; rows another instance holds are skipped."""
        o = tables.outbox
        due = (
            select(o.c.id)
            .where(
                o.c.status == "queued",
                or_(o.c.next_attempt_at.is_(None), o.c.next_attempt_at <= now),
            )
            .order_by(o.c.id)
            .limit(limit)
        )
        if self._lock_rows:
            due = due.with_for_update(skip_locked=True)
        query = (
            update(o)
            .where(o.c.id.in_(due))
            .values(next_attempt_at=lease_end, attempts=o.c.attempts + 1)
            .returning(o.c.id, o.c.mail_message_id, o.c.payload)
        )
        return sorted((row[0], row[1], row[2]) for row in self.session.execute(query))

    def insert_outbox(self, rows: Sequence[dict[str, Any]]) -> None:
        """Queue outbox rows (columns by name) and their `sent` thread links in two
        multi-row INSERTs: a reply to a ticket with many CCs queues many at once."""
        if not rows:
            return
        self.session.flush()
        self.session.execute(insert(tables.outbox), list(rows))
        links = [
            {"mail_message_id": r["mail_message_id"], "ticket_id": r["ticket_id"], "role": "sent"}
            for r in rows
        ]
        self.session.execute(insert(tables.thread_links), links)

    def outbox_counts(
        self, recipients: Collection[str], event: str, event_since: datetime, day_since: datetime
    ) -> dict[str, tuple[int, int]]:
        """Per recipient: rows of `event` since `event_since`, and automatic rows since
        `day_since`; both counts in one query, so a notification's checks cost one."""
        o = tables.outbox
        of_event = and_(o.c.event == event, o.c.created_at >= event_since)
        automatic = and_(o.c.automatic.is_(True), o.c.created_at >= day_since)
        query = (
            select(
                o.c.recipient,
                func.sum(case((of_event, 1), else_=0)),
                func.sum(case((automatic, 1), else_=0)),
            )
            .where(o.c.recipient.in_(set(recipients)))
            .where(o.c.created_at >= min(event_since, day_since))
            .group_by(o.c.recipient)
        )
        return {row[0]: (int(row[1]), int(row[2])) for row in self.session.execute(query)}

    def bounces_since(self, recipient: str, since: datetime) -> int:
        o = tables.outbox
        query = select(func.count()).where(
            o.c.recipient == recipient, o.c.status == "bounced", o.c.created_at >= since
        )
        return int(self.session.execute(query).scalar_one())

    def suppressions(self) -> list[model.Suppression]:
        return self._all(model.Suppression, order=tables.suppressions.c.email)

    # timed jobs and reports (core.automation, core.reports)

    def job_candidates(
        self,
        statuses: Sequence[str],
        *,
        department_ids: Sequence[int] | None = None,
        priorities: Sequence[str] = (),
        activity_before: datetime | None = None,
        activity_since: datetime | None = None,
        reply_before: datetime | None = None,
        unlogged: tuple[str, str | None] | None = None,
    ) -> list[int]:
        """Ids of unmerged tickets matching every filter given; `unlogged` is (action,
        detail or None for any): only tickets whose log has no such line."""
        t = tables.tickets
        where: list[Any] = [t.c.merged_into_id.is_(None), t.c.status.in_(statuses)]
        if department_ids is not None:
            where.append(t.c.department_id.in_(department_ids))
        if priorities:
            where.append(t.c.priority.in_(priorities))
        if activity_before is not None:
            where.append(t.c.last_activity_at < activity_before)
        if activity_since is not None:
            where.append(t.c.last_activity_at >= activity_since)
        if reply_before is not None:
            where.append(t.c.last_reply_at < reply_before)
        if unlogged is not None:
            where.append(t.c.id.not_in(self._logged(*unlogged)))
        return list(self.session.scalars(select(t.c.id).where(*where).order_by(t.c.id)))

    def _logged(self, action: str, detail: str | None) -> Any:
        log = tables.ticket_log
        query = select(log.c.ticket_id).where(log.c.action == action)
        return query.where(log.c.detail == detail) if detail is not None else query

    def reply_ratings(self) -> list[tuple[int, int, int]]:
        """(admin id, department id, rating) of every rated, undeleted admin reply."""
        m, t = tables.messages, tables.tickets
        rows = self.session.execute(
            select(m.c.admin_id, t.c.department_id, m.c.rating)
            .join(t, t.c.id == m.c.ticket_id)
            .where(m.c.rating.is_not(None), m.c.admin_id.is_not(None), m.c.deleted_at.is_(None))
            .order_by(m.c.id)
        )
        return [(row[0], row[1], row[2]) for row in rows]

    # IMAP mailbox ledger (the poller's checkpoint and imported UIDs)

    def checkpoint(self, mailbox: str) -> model.MailboxCheckpoint | None:
        return self.session.get(model.MailboxCheckpoint, mailbox)

    def imported_uids(self, mailbox: str, uidvalidity: int, uids: Sequence[int]) -> set[int]:
        u = tables.mailbox_uids
        found: set[int] = set()
        for start in range(0, len(uids), 500):
            rows = self.session.execute(
                select(u.c.uid).where(
                    u.c.mailbox == mailbox,
                    u.c.uidvalidity == uidvalidity,
                    u.c.uid.in_(uids[start : start + 500]),
                )
            )
            found.update(row[0] for row in rows)
        return found
