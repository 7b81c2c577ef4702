"""The IMAP poller: every message of each configured mailbox imported exactly once.

The edge between IMAP (`imap_client`) and the intake (`imap_ledger`, then
`accept_message`). Per mailbox, one task owns the mailbox (an advisory lock on
PostgreSQL), keeps a connection, lists the UIDs past its checkpoint, fetches
bodies in UID ranges, commits each message together with its UID, and only
then flags it \\Seen or moves it on the server. It waits in IDLE where the
server offers it and polls otherwise; a failure reconnects with backoff and
jitter and never touches the other mailboxes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import signal
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from core.errors import Conflict, TicketdError
from mailgate.app import App
from mailgate.imap_client import Fetched, ImapSession, Listed, label, uid_set
from mailgate.imap_ledger import (
    MailboxLock,
    import_message,
    imported_uids,
    mailbox_key,
    resume_uid,
)
from mailgate.settings import MailboxSettings

log = logging.getLogger(__name__)

BATCH_MESSAGES = 50
BATCH_BYTES = 20 << 20
IDLE_SECONDS = 25 * 60.0  # servers may drop an IDLE after 30 minutes
SETTINGS_CHECK_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class Oversized:
    """A message left on the server because it exceeds smtp.max_message_bytes."""

    key: str
    uidvalidity: int
    uid: int
    size: int

    def describe(self, limit: int) -> str:
        return (
            f"mailbox {self.key}: UID {self.uid} ({self.size} bytes) is larger than "
            f"smtp.max_message_bytes ({limit}); left on the server"
        )


@dataclass
class Backoff:
    """Exponential delays with jitter: about 1, 2, 4 ... seconds, at most 5 minutes."""

    first: float = 1.0
    limit: float = 300.0
    attempt: int = 0

    def next(self) -> float:
        delay = min(self.limit, self.first * 2**self.attempt)
        self.attempt += 1
        return random.uniform(delay / 2, delay)

    def reset(self) -> None:
        self.attempt = 0


class MailboxPoller:
    """Imports one mailbox folder: `run` until stopped, or `once`."""

    def __init__(self, app: App, mailbox: MailboxSettings, report: bool = False) -> None:
        self.app = app
        self.mailbox = mailbox
        self.key = mailbox_key(mailbox)
        self.report = report
        self.oversized: dict[tuple[int, int], Oversized] = {}
        self.backoff = Backoff()

    @property
    def interval(self) -> float:
        return max(1.0, float(self.mailbox.poll_interval_seconds))

    @property
    def config_dir(self) -> Path:
        source = self.app.settings.source
        return Path.cwd() if source == "built-in defaults" else Path(source).resolve().parent

    async def run(self, stop: asyncio.Event) -> None:
        """Poll until `stop` is set; failures are logged and retried, never raised."""
        lock = MailboxLock(self.app, self.key)
        try:
            while not stop.is_set():
                await self._run_once_owned(lock, stop)
        finally:
            await asyncio.to_thread(lock.release)

    async def _run_once_owned(self, lock: MailboxLock, stop: asyncio.Event) -> None:
        try:
            if lock.held or await asyncio.to_thread(lock.acquire):
                await self._serve(lock, stop)
                return
            log.info("mailbox %s is polled by another instance; waiting", self.key)
            delay = self.interval
        except Exception as err:  # noqa: BLE001 - the one catch-all for a poll session
            delay = self.backoff.next()
            self._log_failure(err, delay)
        await pause(stop, delay)

    async def _serve(self, lock: MailboxLock, stop: asyncio.Event) -> None:
        session = await ImapSession.open(self.mailbox, self.config_dir)
        try:
            folder = await session.select(self.mailbox.folder)
            recover = True
            while not stop.is_set():
                await asyncio.to_thread(lock.check)
                # Until a listing finds nothing to do: news announced during the
                # cycle's own commands is not announced again in IDLE.
                while await self.cycle(session, folder.uidvalidity, recover) and not stop.is_set():
                    recover = False
                recover = False
                self.backoff.reset()
                if session.client.has_capability("IDLE"):
                    # Re-issued each interval too, a safety net for a missed notice.
                    await session.idle(stop, min(IDLE_SECONDS, self.interval))
                else:
                    await pause(stop, self.interval)
        finally:
            await session.close()

    async def once(self) -> None:
        """One pass over the folder; raises what went wrong."""
        lock = MailboxLock(self.app, self.key)
        if not await asyncio.to_thread(lock.acquire):
            log.warning("mailbox %s is polled by another instance; skipped", self.key)
            return
        try:
            session = await ImapSession.open(self.mailbox, self.config_dir)
            try:
                folder = await session.select(self.mailbox.folder)
                await self.cycle(session, folder.uidvalidity, recover=True)
            finally:
                await session.close()
        finally:
            await asyncio.to_thread(lock.release)

    async def cycle(self, session: ImapSession, uidvalidity: int, recover: bool) -> int:
        """Import what is new; returns how many messages it acknowledged or imported.

        `recover` also looks below the checkpoint for messages committed but not
        yet acknowledged (a crash between commit and flag) and acknowledges them.
        """
        first = await asyncio.to_thread(resume_uid, self.app, self.key, uidvalidity)
        listed = await session.listing(f"{first}:*", first)
        if recover and first > 1:
            listed = await self._left_behind(session, first) + listed
        if not listed:
            return 0
        uids = [item.uid for item in listed]
        known = await asyncio.to_thread(imported_uids, self.app, self.key, uidvalidity, uids)
        await session.acknowledge(sorted(known), self.mailbox.move_to)
        fresh = [i for i in listed if i.uid not in known and self._fits(uidvalidity, i.uid, i.size)]
        for batch in batches(fresh):
            fetched = await session.fetch([item.uid for item in batch])
            done = [item.uid for item in fetched if await self._import(uidvalidity, item)]
            await session.acknowledge(done, self.mailbox.move_to)
        return len(known) + len(fresh)

    async def _left_behind(self, session: ImapSession, first: int) -> list[Listed]:
        """Messages below the checkpoint still waiting for their flag or move."""
        unflagged = () if self.mailbox.move_to else ("UNSEEN",)
        uids = await session.search(*unflagged, "UID", f"1:{first - 1}")
        return await session.listing(uid_set(uids)) if uids else []

    async def _import(self, uidvalidity: int, item: Fetched) -> bool:
        if not self._fits(uidvalidity, item.uid, len(item.raw)):
            return False
        try:
            decision = await asyncio.to_thread(
                import_message, self.app, self.mailbox, uidvalidity, item.uid, item.raw
            )
        except Conflict:
            log.warning("mailbox %s: UID %d was imported concurrently", self.key, item.uid)
            return True
        log.debug("mailbox %s: UID %d is import %d", self.key, item.uid, decision.import_id)
        return True

    def _fits(self, uidvalidity: int, uid: int, size: int) -> bool:
        """Whether the message is within smtp.max_message_bytes; warns once when not."""
        limit = self.app.settings.smtp.max_message_bytes
        if (uidvalidity, uid) in self.oversized:
            return False
        if size <= limit:
            return True
        found = Oversized(self.key, uidvalidity, uid, size)
        self.oversized[(uidvalidity, uid)] = found
        if not self.report:
            log.warning("%s", found.describe(limit))
        return False

    def _log_failure(self, err: Exception, delay: float) -> None:
        if isinstance(err, TicketdError):
            log.warning("%s; retrying in %.1f s", describe(self.mailbox, err), delay)
        else:
            log.exception("mailbox %s failed; retrying in %.1f s", self.key, delay)


def describe(mailbox: MailboxSettings, err: BaseException) -> str:
    """One line for an error, naming the mailbox once."""
    text = str(err) if isinstance(err, TicketdError) else f"{type(err).__name__}: {err}"
    prefix = f"mailbox {label(mailbox)}"
    return text if text.startswith(prefix) else f"{prefix}: {text}"


def batches(listed: Sequence[Listed]) -> Iterator[list[Listed]]:
    """Runs of at most BATCH_MESSAGES messages and (one message aside) BATCH_BYTES."""
    batch: list[Listed] = []
    size = 0
    for item in listed:
        if batch and (len(batch) == BATCH_MESSAGES or size + item.size > BATCH_BYTES):
            yield batch
            batch, size = [], 0
        batch.append(item)
        size += item.size
    if batch:
        yield batch


async def pause(stop: asyncio.Event, seconds: float) -> None:
    """Sleep for `seconds`, or less when `stop` is set meanwhile."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


async def run_pollers(app: App, stop: asyncio.Event) -> None:
    """One poller task per configured mailbox until `stop`; restarted on a new config."""
    while not stop.is_set():
        mailboxes = app.settings.mailboxes
        generation = asyncio.Event()
        tasks = [asyncio.create_task(MailboxPoller(app, m).run(generation)) for m in mailboxes]
        while not stop.is_set() and app.settings.mailboxes == mailboxes:
            await pause(stop, SETTINGS_CHECK_SECONDS)
        generation.set()
        await asyncio.gather(*tasks)
        if not stop.is_set():
            log.info("mailboxes reconfigured; pollers restarted")


def poll_command(app: App, once: bool) -> int:
    """`ticketd poll [--once]`: one pass over every mailbox, or poll until a signal."""
    if not once:
        logging.getLogger().setLevel(app.settings.log_level.upper())
        asyncio.run(_poll_until_signal(app))
        return 0
    failures, notes = asyncio.run(_poll_once(app))
    for line in (*notes, *failures):
        sys.stderr.write(f"ticketd: {line}\n")
    return 1 if failures else 0


async def _poll_until_signal(app: App) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await run_pollers(app, stop)


async def _poll_once(app: App) -> tuple[list[str], list[str]]:
    pollers = [MailboxPoller(app, m, report=True) for m in app.settings.mailboxes]
    results = await asyncio.gather(*(p.once() for p in pollers), return_exceptions=True)
    failures = []
    for poller, result in zip(pollers, results, strict=True):
        if isinstance(result, Exception):
            if not isinstance(result, TicketdError):
                log.debug("mailbox %s failed", poller.key, exc_info=result)
            failures.append(describe(poller.mailbox, result))
    limit = app.settings.smtp.max_message_bytes
    notes = [o.describe(limit) for p in pollers for o in p.oversized.values()]
    return failures, notes
