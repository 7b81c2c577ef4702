"""The outbox sender's marks: one connection per pass, one short commit per message.

A mark is written right after the transport accepted the message, so its
cost is paid once per notification. It runs as a bare UPDATE on a connection
held for the whole pass (no session, no ORM state). On SQLite the statement
goes straight to the driver, whose connection is in autocommit mode (one
statement, one transaction; SQLAlchemy's per-statement work was half the
cost of a mark), and that connection commits with `synchronous=NORMAL`: in
WAL mode such a commit survives a process crash (kill -9), and a power cut
can at worst lose the last marks, whose messages are then sent again with
their same Message-ID. Inbound mail keeps `synchronous=FULL`, because there
a lost commit would lose a message.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from types import TracebackType
from typing import Any

from sqlalchemy import Connection, Engine, bindparam, update

from storage import tables
from storage.engine import is_sqlite

_MARK = (
    update(tables.outbox)
    .where(tables.outbox.c.id == bindparam("item_id"))
    .values(status="sent", sent_at=bindparam("now"), last_error="")
)


class SentMarks:
    """`with SentMarks(engine) as marks: marks.mark(item_id, now)`."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._relaxed = is_sqlite(engine)
        self._conn: Connection | None = None
        self._sql, self._order = "", list[str]()
        self._when: Callable[[Any], Any] | None = None

    def __enter__(self) -> SentMarks:
        self._conn = self._engine.connect()
        if self._relaxed:
            _synchronous(self._conn, "NORMAL")
            compiled = _MARK.compile(dialect=self._engine.dialect)
            self._sql, self._order = compiled.string, list(compiled.positiontup or ())
            self._when = tables.outbox.c.sent_at.type.bind_processor(self._engine.dialect)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            conn.rollback()
            if self._relaxed:
                _synchronous(conn, "FULL")
        finally:
            conn.close()

    def mark(self, item_id: int, now: datetime) -> None:
        """Mark one row sent and commit at once."""
        assert self._conn is not None, "use SentMarks as a context manager"
        if not self._relaxed:
            self._conn.execute(_MARK, {"item_id": item_id, "now": now})
            self._conn.commit()
            return
        when = self._when(now) if self._when is not None else now
        values = {"status": "sent", "now": when, "last_error": "", "item_id": item_id}
        _driver(self._conn).execute(self._sql, [values[name] for name in self._order])


def _synchronous(conn: Connection, level: str) -> None:
    """Set on the driver connection, outside any transaction; pooled, so restored on exit."""
    _driver(conn).execute(f"PRAGMA synchronous = {level}")


def _driver(conn: Connection) -> Any:
    driver = conn.connection.driver_connection
    assert driver is not None
    return driver
