"""The IMAP poller's ledger: which UIDs of which mailbox are already imported.

Synchronous storage work for the poller (run through `asyncio.to_thread`): where
to resume in a folder, which listed UIDs are already taken in, importing one
message with its UID recorded in the same transaction, and the PostgreSQL
advisory lock that gives each mailbox to one instance at a time. It hands the
poller plain values and `Decision`s; it never speaks IMAP.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence

from sqlalchemy import Connection, create_engine, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool

from core.errors import TransientError
from core.intake import Decision, Envelope
from core.model import MailboxCheckpoint, MailboxUid
from mailgate.accept import Also, accept_message
from mailgate.app import App
from mailgate.settings import MailboxSettings
from storage.engine import is_sqlite
from storage.uow import SqlUnitOfWork

log = logging.getLogger(__name__)


def mailbox_key(mailbox: MailboxSettings) -> str:
    """The ledger's name for a mailbox folder: `user@host:port/folder`."""
    return f"{mailbox.username}@{mailbox.host}:{mailbox.port}/{mailbox.folder}"


def resume_uid(app: App, key: str, uidvalidity: int) -> int:
    """The first UID not yet passed; a new UIDVALIDITY restarts the folder at UID 1."""
    with app.uow() as uow:
        checkpoint = uow.checkpoint(key)
        if checkpoint is not None and checkpoint.uidvalidity == uidvalidity:
            return checkpoint.last_uid + 1
        if checkpoint is None:
            uow.add(MailboxCheckpoint(key, uidvalidity, 0))
        else:
            log.warning(
                "mailbox %s: UIDVALIDITY changed from %d to %d; reading the folder again "
                "from UID 1 (messages already imported are recorded as duplicates)",
                key,
                checkpoint.uidvalidity,
                uidvalidity,
            )
            checkpoint.uidvalidity, checkpoint.last_uid = uidvalidity, 0
        app.finish(uow)
    return 1


def imported_uids(app: App, key: str, uidvalidity: int, uids: Sequence[int]) -> set[int]:
    with app.uow() as uow:
        return uow.imported_uids(key, uidvalidity, uids)


def import_message(
    app: App, mailbox: MailboxSettings, uidvalidity: int, uid: int, raw: bytes
) -> Decision:
    """Take in one fetched message; its UID and the checkpoint commit with it."""
    envelope = Envelope("imap", None, (mailbox.department,))
    record = _recorder(mailbox_key(mailbox), uidvalidity, uid)
    return accept_message(app, raw, envelope, also=record)


def _recorder(key: str, uidvalidity: int, uid: int) -> Also:
    def record(uow: SqlUnitOfWork, decision: Decision) -> None:
        uow.add(MailboxUid(key, uidvalidity, uid, decision.import_id))
        checkpoint = uow.checkpoint(key)
        if checkpoint is None:
            uow.add(MailboxCheckpoint(key, uidvalidity, uid))
        elif checkpoint.uidvalidity != uidvalidity:
            checkpoint.uidvalidity, checkpoint.last_uid = uidvalidity, uid
        else:
            checkpoint.last_uid = max(checkpoint.last_uid, uid)

    return record


class MailboxLock:
    """A PostgreSQL session advisory lock on one mailbox, held on its own connection.

    SQLite means a single host, so the lock is always granted there. The lock
    lives as long as its connection: if this instance dies, PostgreSQL drops
    the connection and another instance takes the mailbox over.
    """

    def __init__(self, app: App, key: str) -> None:
        digest = hashlib.sha256(f"ticketd-imap:{key}".encode()).digest()
        self.lock_id = int.from_bytes(digest[:8], "big", signed=True)
        self.app = app
        self.key = key
        self._connection: Connection | None = None
        self.held = False

    def acquire(self) -> bool:
        """Try once; True when this instance now owns the mailbox."""
        if is_sqlite(self.app.engine):
            self.held = True
            return True
        engine = create_engine(self.app.engine.url, poolclass=NullPool)
        try:
            connection = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        except SQLAlchemyError as err:
            raise TransientError(f"database unavailable: {err}") from err
        try:
            query = text("SELECT pg_try_advisory_lock(:id)")
            granted = bool(connection.execute(query, {"id": self.lock_id}).scalar())
        except SQLAlchemyError as err:
            connection.invalidate()
            connection.close()
            raise TransientError(f"database unavailable: {err}") from err
        if not granted:
            connection.close()
            return False
        self._connection = connection
        self.held = True
        return True

    def check(self) -> None:
        """Raise `TransientError` when the lock's connection (so the lock) is gone."""
        if self._connection is None:
            return
        try:
            self._connection.execute(text("SELECT 1"))
        except SQLAlchemyError as err:
            self.release()
            raise TransientError(f"lost the lock on mailbox {self.key}: {err}") from err

    def release(self) -> None:
        """Close the connection; PostgreSQL releases the lock with it."""
        connection, self._connection = self._connection, None
        self.held = False
        if connection is not None:
            connection.invalidate()
            connection.close()
