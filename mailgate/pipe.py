"""`ticketd pipe`: one message from stdin, as an MTA's pipe transport runs it.

The MTA starts one process per message, so start-up cost is the throughput
limit. When `ticketd serve` is listening, the message is handed to it over
SMTP on loopback (the daemon answers 250 only after its commit), the way
rt-mailgate hands mail to a running RT; otherwise it is imported in this
process. Exit 0 once committed, 75 on any transient failure so the MTA retries.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import sys
from typing import TYPE_CHECKING, BinaryIO

from mailgate.settings import Settings

if TYPE_CHECKING:
    import logging

CHUNK = 1 << 20
PIPE_HELO = "ticketd-pipe.invalid"
CONNECT_TIMEOUT = 2.0
REPLY_TIMEOUT = 600.0
MAX_REPLY_LINE = 8192  # smtplib's limit
# addresses smtplib would send unchanged inside <>; others go through smtplib itself
PLAIN_ADDRESS = re.compile(
    r"[A-Za-z0-9_+-]+(?:\.[A-Za-z0-9_+-]+)*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*"
)


def read_limited(stream: BinaryIO, limit: int) -> tuple[bytes, bool]:
    """Read at most `limit` bytes; the flag says whether more was left unread."""
    chunks: list[bytes] = []
    size = 0
    while size <= limit:
        chunk = stream.read(min(CHUNK, limit + 1 - size))
        if not chunk:
            return b"".join(chunks), False
        chunks.append(chunk)
        size += len(chunk)
    while stream.read(CHUNK):
        pass
    return b"".join(chunks)[:limit], True


def run_pipe(
    settings: Settings, stream: BinaryIO, department: str | None, sender: str | None
) -> int:
    """Import the message on `stream`; returns the process exit code."""
    raw, truncated = read_limited(stream, settings.smtp.max_message_bytes)
    department = department or os.environ.get("ORIGINAL_RECIPIENT")
    sender = sender or os.environ.get("SENDER")
    if not truncated and department and settings.smtp.enabled:
        handed = _hand_to_daemon(settings, raw, department, sender or "")
        if handed is not None:
            return handed
    return _import_here(settings, raw, truncated, department, sender)


def _hand_to_daemon(settings: Settings, raw: bytes, department: str, sender: str) -> int | None:
    """0 when the daemon committed it, 75 when it said to retry, None to import here."""
    host, port = settings.smtp.host_port
    if port == 0:
        return None
    if not (
        PLAIN_ADDRESS.fullmatch(department) and (not sender or PLAIN_ADDRESS.fullmatch(sender))
    ):
        return _hand_over_smtplib(host, port, raw, department, sender)
    try:
        conn = socket.create_connection((host, port), timeout=CONNECT_TIMEOUT)
    except OSError:
        return None
    with conn, conn.makefile("rb") as replies:
        try:
            code, _ = _reply(replies)
        except OSError:
            return None
        if code != 220:
            return None  # as smtplib.SMTPConnectError, an OSError, was taken before
        conn.settimeout(REPLY_TIMEOUT)
        try:
            code = _session(conn, replies, raw, department, sender)
        except OSError as err:
            _logger().warning("daemon hand-off failed (%s); importing here", err)
            return None
        finally:
            with contextlib.suppress(OSError):
                conn.sendall(b"quit\r\n")
    return _exit_code(code)


def _session(
    conn: socket.socket, replies: BinaryIO, raw: bytes, department: str, sender: str
) -> int:
    """EHLO, MAIL, RCPT and DATA as smtplib sends them; the last reply code."""
    code, text = _command(conn, replies, f"ehlo {PIPE_HELO}")
    if code == -1 and not text:
        raise _LostDaemon("Server not connected")
    code, _ = _command(conn, replies, f"mail FROM:<{sender}>")
    if code == 250:
        code, _ = _command(conn, replies, f"rcpt TO:<{department}>")
    if code == 250:
        code, text = _command(conn, replies, "data")
        if code != 354:
            raise _LostDaemon(str((code, text)))  # worded as smtplib.SMTPDataError
        data = re.sub(rb"(?m)^\.", b"..", raw)  # dot-stuffing, bytes sent as they are
        conn.sendall(data + (b"" if data.endswith(b"\r\n") else b"\r\n") + b".\r\n")
        code, _ = _reply(replies)
    return code


class _LostDaemon(OSError):
    """The daemon closed the connection, or answered out of protocol."""


def _command(conn: socket.socket, replies: BinaryIO, line: str) -> tuple[int, bytes]:
    conn.sendall(line.encode("ascii") + b"\r\n")
    return _reply(replies)


def _reply(replies: BinaryIO) -> tuple[int, bytes]:
    """The code and last text line of one (multi-line) reply, read as smtplib reads it."""
    while True:
        line = replies.readline(MAX_REPLY_LINE + 1)
        if not line:
            raise _LostDaemon("Connection unexpectedly closed")
        if len(line) > MAX_REPLY_LINE:
            raise _LostDaemon("Line too long.")
        try:
            code = int(line[:3])
        except ValueError:
            return -1, line[4:].strip(b" \t\r\n")
        if line[3:4] != b"-":
            return code, line[4:].strip(b" \t\r\n")


def _exit_code(code: int) -> int | None:
    if code == 250:
        return 0
    if 400 <= code < 500:
        sys.stderr.write(f"ticketd: daemon asked to retry later (SMTP {code})\n")
        return 75
    return None


def _hand_over_smtplib(
    host: str, port: int, raw: bytes, department: str, sender: str
) -> int | None:
    """The hand-off with smtplib, for addresses that are not plain addr-specs."""
    import smtplib

    try:
        client = smtplib.SMTP(host, port, local_hostname=PIPE_HELO, timeout=CONNECT_TIMEOUT)
    except OSError:
        return None
    try:
        if client.sock is not None:
            client.sock.settimeout(REPLY_TIMEOUT)
        client.ehlo(PIPE_HELO)
        code, _ = client.mail(sender)
        if code == 250:
            code, _ = client.rcpt(department)
        if code == 250:
            code, _ = client.data(raw)
    except (OSError, smtplib.SMTPException) as err:
        _logger().warning("daemon hand-off failed (%s); importing here", err)
        return None
    finally:
        try:
            client.quit()
        except (OSError, smtplib.SMTPException):
            client.close()
    return _exit_code(code)


def _import_here(
    settings: Settings, raw: bytes, truncated: bool, department: str | None, sender: str | None
) -> int:
    _logger()  # logging configured before the import logs anything
    from core.intake import Envelope
    from mailgate.accept import accept_message, accept_oversized
    from mailgate.app import App

    app = App(settings)
    app.ensure_schema()
    envelope = Envelope("pipe", sender, (department,) if department else ())
    try:
        if truncated:
            accept_oversized(app, raw, envelope)
        else:
            accept_message(app, raw, envelope)
    finally:
        app.engine.dispose()
    return 0


def _logger() -> logging.Logger:
    """This module's logger, configuring logging first (the pipe defers both)."""
    import logging

    from mailgate.cli import configure_logging

    configure_logging()
    return logging.getLogger(__name__)
