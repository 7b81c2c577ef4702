"""The daemon's spool importer: a worker process, and whether the listener may accept.

The import runs in a process of its own: in the listener's process it would
hold the interpreter lock for most of every millisecond, and each SMTP reply
would wait behind it. The worker drains the spool whenever the listener wakes
it (and every second, which retries a failed pass), and reports after each
pass whether the database took the imports and how many files remain.

The listener answers 451 instead of spooling while the database is known to
be unavailable (the worker's last pass failed, or a probe made after a quiet
spell failed) and while the backlog is at its cap, so the client keeps a
message the daemon could not import soon. At shutdown the worker finishes
the backlog within a grace period; what is left waits for the next start or
for the next command that reads.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import signal
import time
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess

from sqlalchemy.exc import SQLAlchemyError

from core.errors import TransientError
from core.intake import Envelope
from mailgate.app import App
from mailgate.settings import Settings
from mailgate.spool import Spool

log = logging.getLogger(__name__)
PROBE_AFTER_SECONDS = 2.0
WORKER_POLL_SECONDS = 1.0
PROGRESS_SECONDS = 0.25
WAKE, STOP, SETTINGS = "wake", "stop", "settings"


class SpoolImporter:
    """Spools accepted messages; its worker process imports them behind the listener."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.spool = Spool(app.settings.data_dir)
        self.backlog = len(self.spool.pending())
        self.failing = False
        self._last_ok = float("-inf")
        self._woken = False
        self._process: BaseProcess | None = None
        self._conn: Connection | None = None

    def start(self) -> None:
        """Start the worker; it imports files left by an earlier run at once."""
        self.spool.sweep()
        self._spawn()

    def _spawn(self) -> None:
        context = multiprocessing.get_context("spawn")
        parent, child = context.Pipe()
        process = context.Process(
            target=run_worker, args=(self.app.settings, child), name="ticketd-spool", daemon=True
        )
        process.start()
        child.close()
        self._process, self._conn = process, parent
        asyncio.get_running_loop().add_reader(parent.fileno(), self._on_report)

    async def refusal(self) -> str | None:
        """Why a new message cannot be spooled now, or None."""
        if self.backlog >= self.app.settings.smtp.spool_max_messages:
            return "spool full"
        if self._process is not None and not self._process.is_alive():
            log.error("spool worker exited (%s); restarting it", self._process.exitcode)
            self._stop_reading()
            self._spawn()
        if self.failing:
            return "database unavailable"
        if time.monotonic() - self._last_ok > PROBE_AFTER_SECONDS:
            if not await asyncio.to_thread(self._probe):
                return "database unavailable"
        return None

    async def put(self, raw: bytes, envelope: Envelope) -> str:
        """Spool one message (OSError when the disk refuses); its spool name."""
        name = await asyncio.to_thread(self.spool.put, raw, envelope)
        self.backlog += 1
        if not self._woken:
            self._woken = True
            self._tell(WAKE)
        return name

    def reload(self, settings: Settings) -> None:
        """The worker imports with `settings` from its next pass on."""
        self._tell(SETTINGS, settings)

    def _tell(self, *order: object) -> None:
        if self._conn is not None:
            with contextlib.suppress(OSError):  # a dead worker is restarted by `refusal`
                self._conn.send(order)

    async def close(self, grace: float) -> None:
        """Let the worker import what is spooled, for at most `grace` seconds."""
        process, conn = self._process, self._conn
        if process is None or conn is None:
            return
        self._tell(STOP)
        await asyncio.to_thread(process.join, grace)
        if process.is_alive():
            log.warning("stopping with spooled messages left for the next start")
            process.kill()
            await asyncio.to_thread(process.join, 5)
        self._stop_reading()

    def _stop_reading(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            asyncio.get_running_loop().remove_reader(conn.fileno())
            conn.close()

    def _on_report(self) -> None:
        assert self._conn is not None
        try:
            ok, backlog, error = self._conn.recv()
        except (EOFError, OSError):
            self._stop_reading()  # the worker is gone; `refusal` restarts it
            return
        self._woken = False
        self.backlog, self.failing = backlog, not ok
        if ok:
            self._last_ok = time.monotonic()
        else:
            log.warning("spool import failed, retrying: %s", error)

    def _probe(self) -> bool:
        """Whether the database takes a transaction now (on SQLite, a write lock)."""
        try:
            with self.app.engine.connect() as conn:
                conn.exec_driver_sql("SELECT 1")
        except SQLAlchemyError as err:
            log.warning("database probe failed: %s", err)
            return False
        self._last_ok = time.monotonic()
        return True


def run_worker(settings: Settings, conn: Connection) -> None:
    """The worker's loop: a pass per wake-up or second, a report after each; it ends
    after a last pass once told to stop or once the daemon is gone. Reloaded
    settings replace its app (the database and data folder do not change)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the daemon decides when to stop
    logging.basicConfig(level=settings.log_level.upper(), format="%(name)s: %(message)s")
    app = App(settings)
    spool = Spool(settings.data_dir)
    stopping = False
    while True:
        try:
            if conn.poll(WORKER_POLL_SECONDS):
                while conn.poll():
                    order = conn.recv()
                    stopping = stopping or order[0] == STOP
                    if order[0] == SETTINGS:
                        app.engine.dispose()
                        app = App(order[1])
        except (EOFError, OSError):
            stopping = True
        try:
            conn.send(_import_pass(app, spool, conn))
        except OSError:
            stopping = True
        if stopping:
            app.engine.dispose()
            return


def _import_pass(app: App, spool: Spool, conn: Connection) -> tuple[bool, int, str]:
    """(database took the imports, files left, error); a long pass also reports its
    progress, so the listener knows the database is answering."""
    last = time.monotonic()

    def progress() -> None:
        nonlocal last
        if time.monotonic() - last >= PROGRESS_SECONDS:
            last = time.monotonic()
            conn.send((True, len(spool.pending()), ""))

    try:
        spool.drain(app, on_import=progress)
    except TransientError as err:
        return False, len(spool.pending()), str(err)
    except Exception as err:  # the files stay spooled, retried next pass
        logging.getLogger(__name__).exception("spool import failed")
        return False, len(spool.pending()), f"{type(err).__name__}: {err}"
    return True, len(spool.pending()), ""
