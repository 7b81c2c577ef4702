"""The IMAP edge: one authenticated connection to one folder, speaking UIDs only.

Wraps aioimaplib: connect (TLS, STARTTLS or plain), log in (password or
XOAUTH2), select, list `(uid, size)`, fetch bodies in UID ranges, acknowledge
(\\Seen or move) and wait in IDLE. It hands the poller `Listed` and `Fetched`
values; it never touches the database. Errors come out as `ImapError`.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import re
import shlex
import ssl
import subprocess
from collections.abc import Awaitable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import aioimaplib

from core.errors import TicketdError
from mailgate.settings import MailboxSettings

log = logging.getLogger(__name__)
# aioimaplib logs whole commands at DEBUG (its password scrub misses quoted
# passwords) and every ignored untagged line at INFO: keep it to warnings.
logging.getLogger("aioimaplib").setLevel(logging.WARNING)

TIMEOUT = 30.0
CLOSE_WAIT = 2.0
FETCH_ITEM = re.compile(rb"^\d+ FETCH \(")
UID_ITEM = re.compile(rb"\bUID (\d+)")
SIZE_ITEM = re.compile(rb"\bRFC822\.SIZE (\d+)")
UIDVALIDITY = re.compile(rb"\[UIDVALIDITY (\d+)\]")
EXISTS = re.compile(rb"^(\d+) EXISTS")
T = TypeVar("T")


class ImapError(TicketdError):
    """The server refused a command, or the connection failed."""


@dataclass(frozen=True, slots=True)
class Listed:
    uid: int
    size: int


@dataclass(frozen=True, slots=True)
class Fetched:
    uid: int
    raw: bytes


@dataclass(frozen=True, slots=True)
class Folder:
    uidvalidity: int
    exists: int


def label(mailbox: MailboxSettings) -> str:
    """How errors name a mailbox: `user@host`."""
    return f"{mailbox.username}@{mailbox.host}"


def uid_set(uids: Iterable[int]) -> str:
    """`1:3,7,9:10` for [1, 2, 3, 7, 9, 10]."""
    ranges: list[list[int]] = []
    for uid in sorted(set(uids)):
        if ranges and uid == ranges[-1][1] + 1:
            ranges[-1][1] = uid
        else:
            ranges.append([uid, uid])
    return ",".join(str(a) if a == b else f"{a}:{b}" for a, b in ranges)


def folder_name(name: str) -> str:
    """A folder name as an IMAP quoted string, non-ASCII in modified UTF-7."""
    out: list[str] = []
    pending: list[str] = []
    for char in name + "\x00":
        if char != "\x00" and not 0x20 <= ord(char) <= 0x7E:
            pending.append(char)
            continue
        if pending:
            packed = base64.b64encode("".join(pending).encode("utf-16-be"))
            out.append("&" + packed.rstrip(b"=").replace(b"/", b",").decode() + "-")
            pending.clear()
        out.append({"&": "&-", "\x00": ""}.get(char, char))
    quoted = "".join(out).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{quoted}"'


def oauth_token(mailbox: MailboxSettings, base: Path) -> str:
    """The XOAUTH2 access token, read afresh for every login."""
    try:
        if mailbox.oauth_token_command:
            done = subprocess.run(
                shlex.split(mailbox.oauth_token_command),
                capture_output=True,
                text=True,
                timeout=60,
                check=True,
            )
            return done.stdout.strip()
        return (base / mailbox.oauth_token_file).read_text(encoding="utf-8").strip()
    except (OSError, subprocess.SubprocessError) as err:
        raise ImapError(f"mailbox {label(mailbox)}: cannot get the OAuth token: {err}") from err


class ImapSession:
    """One logged-in connection; `select` before the UID commands."""

    def __init__(
        self, mailbox: MailboxSettings, client: aioimaplib.IMAP4, lost: asyncio.Event
    ) -> None:
        self.mailbox = mailbox
        self.client = client
        self.lost = lost  # set by aioimaplib when the connection drops

    @classmethod
    async def open(cls, mailbox: MailboxSettings, config_dir: Path) -> ImapSession:
        """Connect and log in, or raise `ImapError` saying which step failed."""
        lost = asyncio.Event()
        context = _tls_context(mailbox) if mailbox.tls else None
        client = aioimaplib.IMAP4(
            mailbox.host,
            mailbox.port,
            timeout=TIMEOUT,
            conn_lost_cb=lambda _exc: lost.set(),
            ssl_context=context,
        )
        session = cls(mailbox, client, lost)
        try:
            await session._connect()
            await session._login(config_dir)
        except BaseException:
            await session.close()
            raise
        return session

    async def _connect(self) -> None:
        where = f"{self.mailbox.host}:{self.mailbox.port}"
        try:
            await self.client.wait_hello_from_server()
            if self.mailbox.starttls and not self.mailbox.tls:
                await self._starttls()
        except (OSError, TimeoutError, aioimaplib.AioImapException) as err:
            detail = str(err) or type(err).__name__
            raise ImapError(
                f"mailbox {label(self.mailbox)}: cannot connect to {where}: {detail}"
            ) from err

    async def _starttls(self) -> None:
        protocol = self.client.protocol
        if "STARTTLS" not in protocol.capabilities:
            raise ImapError(f"mailbox {label(self.mailbox)}: server does not offer STARTTLS")
        command = aioimaplib.Command("STARTTLS", protocol.new_tag(), loop=protocol.loop)
        response = await asyncio.wait_for(protocol.execute(command), TIMEOUT)
        self._expect(response, "STARTTLS")
        loop = asyncio.get_running_loop()
        try:
            protocol.transport = await loop.start_tls(
                protocol.transport,
                protocol,
                _tls_context(self.mailbox),
                server_hostname=self.mailbox.host,
            )
        except BaseException:
            self.lost.set()  # asyncio has closed the connection
            raise
        await asyncio.wait_for(protocol.capability(), TIMEOUT)

    async def _login(self, config_dir: Path) -> None:
        mailbox = self.mailbox
        if mailbox.auth not in ("login", "xoauth2"):
            raise ImapError(f"mailbox {label(mailbox)}: auth must be 'login' or 'xoauth2'")
        try:
            if mailbox.auth == "xoauth2":
                token = await asyncio.to_thread(oauth_token, mailbox, config_dir)
                response = await self.client.xoauth2(mailbox.username, token)
            else:
                response = await self.client.login(_quoted(mailbox.username), mailbox.password)
        except (OSError, TimeoutError, aioimaplib.AioImapException) as err:
            # aioimaplib's exceptions may quote the command, and so the password.
            detail = str(err) if isinstance(err, OSError) else type(err).__name__
            raise ImapError(f"mailbox {label(mailbox)}: login failed: {detail}") from err
        if response.result != "OK":
            raise ImapError(f"mailbox {label(mailbox)}: login failed: {_text(response)}")
        await self._run(self.client.protocol.capability(), "CAPABILITY")

    async def select(self, folder: str) -> Folder:
        response = await self._run(self.client.select(folder_name(folder)), "SELECT")
        if response.result != "OK":
            raise ImapError(f"mailbox {label(self.mailbox)}: folder {folder!r}: {_text(response)}")
        validity = exists = None
        for line in _data(response):
            found_validity, found_exists = UIDVALIDITY.search(line), EXISTS.match(line)
            validity = int(found_validity.group(1)) if found_validity else validity
            exists = int(found_exists.group(1)) if found_exists else exists
        if validity is None:
            raise ImapError(f"mailbox {label(self.mailbox)}: folder {folder!r} has no UIDVALIDITY")
        return Folder(validity, exists or 0)

    async def require_folder(self, folder: str) -> None:
        """Raise `ImapError` unless `folder` exists (STATUS, so it stays unselected)."""
        response = await self._run(self.client.status(folder_name(folder), "(MESSAGES)"), "STATUS")
        if response.result != "OK":
            raise ImapError(f"mailbox {label(self.mailbox)}: folder {folder!r}: {_text(response)}")

    async def listing(self, uids: str, first: int = 1) -> list[Listed]:
        """`(uid, size)` of the messages in the UID set, those below `first` left out."""
        response = await self._uid("FETCH", uids, "(UID RFC822.SIZE)")
        found = [Listed(uid, size) for uid, size, _ in _fetch_items(response) if uid >= first]
        return sorted(found, key=lambda item: item.uid)

    async def search(self, *criteria: str) -> list[int]:
        response = await self._run(self.client.uid_search(*criteria, charset=None), "SEARCH")
        self._expect(response, "UID SEARCH")
        return sorted(int(n) for line in _data(response) for n in line.split() if n.isdigit())

    async def fetch(self, uids: Sequence[int]) -> list[Fetched]:
        response = await self._uid("FETCH", uid_set(uids), "(UID RFC822.SIZE BODY.PEEK[])")
        wanted = set(uids)
        found = [Fetched(uid, raw) for uid, _, raw in _fetch_items(response) if uid in wanted]
        return sorted(found, key=lambda item: item.uid)

    async def acknowledge(self, uids: Sequence[int], move_to: str) -> None:
        """Flag \\Seen, or move to `move_to`, the messages already committed."""
        if not uids:
            return
        which = uid_set(uids)
        if not move_to:
            await self._uid("STORE", which, "+FLAGS.SILENT", r"(\Seen)")
        elif self.client.has_capability("MOVE"):
            await self._uid("MOVE", which, folder_name(move_to))
        else:
            await self._uid("COPY", which, folder_name(move_to))
            await self._uid("STORE", which, "+FLAGS.SILENT", r"(\Seen \Deleted)")
            if self.client.has_capability("UIDPLUS"):
                await self._uid("EXPUNGE", which)
            else:
                self._expect(await self._run(self.client.expunge(), "EXPUNGE"), "EXPUNGE")

    async def idle(self, stop: asyncio.Event, seconds: float) -> None:
        """IDLE until the folder changes, `stop` is set, or `seconds` pass."""
        queue = self.client.protocol.idle_queue
        while not queue.empty():
            queue.get_nowait()
        try:
            command = await self.client.idle_start(timeout=seconds + TIMEOUT)
        except (OSError, aioimaplib.AioImapException) as err:
            raise ImapError(f"mailbox {label(self.mailbox)}: IDLE failed: {err}") from err
        try:
            await self._wait_push(stop, seconds)
        finally:
            if self.client.has_pending_idle() and not self.lost.is_set():
                self.client.idle_done()
                await self._run(command, "IDLE")

    async def _wait_push(self, stop: asyncio.Event, seconds: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while (remaining := deadline - loop.time()) > 0:
            push = asyncio.ensure_future(self.client.protocol.idle_queue.get())
            stopped = asyncio.ensure_future(stop.wait())
            lost = asyncio.ensure_future(self.lost.wait())
            done, pending = await asyncio.wait(
                {push, stopped, lost}, timeout=remaining, return_when=asyncio.FIRST_COMPLETED
            )
            for task in pending:
                task.cancel()
            if lost in done:
                raise ImapError(f"mailbox {label(self.mailbox)}: connection lost")
            if stopped in done or (push in done and _changed(push.result())):
                return

    async def close(self) -> None:
        """Log out when possible; the connection is closed either way."""
        try:
            if not self.lost.is_set() and self.client.get_state() in ("AUTH", "SELECTED"):
                await asyncio.wait_for(self.client.logout(), 5)
        except (OSError, TimeoutError, aioimaplib.AioImapException) as err:
            log.debug("logout from %s failed: %s", label(self.mailbox), err)
        transport = self.client.protocol.transport
        if transport is not None:
            await _shut(transport, self.lost)
        renewal = self.client._idle_waiter  # aioimaplib's IDLE renewal timer
        if renewal is not None:
            renewal.cancel()
        for task in (*self.client.tasks, *self.client.protocol.tasks):
            task.cancel()

    async def _uid(self, command: str, *args: str) -> aioimaplib.Response:
        # FETCH has aioimaplib's inactivity timer; the others get an overall limit.
        limit = None if command == "FETCH" else TIMEOUT
        response = await self._run(self.client.uid(command, *args), f"UID {command}", limit)
        self._expect(response, f"UID {command}")
        return response

    async def _run(self, step: Awaitable[T], name: str, limit: float | None = TIMEOUT) -> T:
        if self.lost.is_set():
            raise ImapError(f"mailbox {label(self.mailbox)}: connection lost")
        try:
            return await asyncio.wait_for(step, limit)
        except (OSError, TimeoutError, aioimaplib.AioImapException) as err:
            detail = str(err) or type(err).__name__
            raise ImapError(f"mailbox {label(self.mailbox)}: {name} failed: {detail}") from err

    def _expect(self, response: aioimaplib.Response, what: str) -> None:
        if response.result != "OK":
            raise ImapError(f"mailbox {label(self.mailbox)}: {what} refused: {_text(response)}")


def _tls_context(mailbox: MailboxSettings) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if not mailbox.verify_certificate:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def _quoted(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _text(response: aioimaplib.Response) -> str:
    last = response.lines[-1] if response.lines else b""
    return bytes(last).decode("utf-8", "replace").strip() or str(response.result)


def _data(response: aioimaplib.Response) -> list[bytes]:
    """The untagged lines of a response (the last line is the tagged status text)."""
    return [bytes(line) for line in response.lines[:-1] if isinstance(line, bytes)]


def _changed(push: list[bytes]) -> bool:
    return push is aioimaplib.STOP_WAIT_SERVER_PUSH or any(
        line.endswith((b"EXISTS", b"RECENT")) for line in push if isinstance(line, bytes)
    )


def _fetch_items(response: aioimaplib.Response) -> list[tuple[int, int, bytes]]:
    """(uid, size, body) of each FETCH response to our command.

    Unsolicited FETCH responses (flag changes) carry no RFC822.SIZE and are skipped.
    """
    items: list[tuple[int, int, bytes]] = []
    words: list[bytes] = []
    body = b""
    for line in [*response.lines[:-1], b"0 FETCH ("]:
        if isinstance(line, bytes) and FETCH_ITEM.match(line):
            text = b" ".join(words)
            uid, size = UID_ITEM.search(text), SIZE_ITEM.search(text)
            if uid is not None and size is not None:
                items.append((int(uid.group(1)), int(size.group(1)), body))
            words, body = [line], b""
        elif isinstance(line, bytes):
            words.append(line)
        else:
            body = bytes(line)
    return items


async def _shut(transport: asyncio.BaseTransport, lost: asyncio.Event) -> None:
    """Close and wait until the socket is released.

    A TLS transport closes only after its close_notify exchange; a peer that
    never answers would leave the socket open, so it is aborted after a while.
    """
    transport.close()
    try:
        await asyncio.wait_for(lost.wait(), CLOSE_WAIT)
    except TimeoutError:
        if isinstance(transport, asyncio.Transport):
            transport.abort()
    await asyncio.sleep(0)  # let the loop run the transport's connection_lost
