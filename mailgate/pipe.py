"""`ticketd pipe`: one message from stdin, as an MTA's pipe transport runs it.

The MTA starts one process per message, so start-up cost is the throughput
limit. When `ticketd serve` is listening, the message is handed to it over
SMTP on loopback (the daemon answers 250 only after its commit), the way
rt-mailgate hands mail to a running RT; otherwise it is imported in this
process. Exit 0 once committed, 75 on any transient failure so the MTA retries.
"""

from __future__ import annotations

import logging
import os
import smtplib
import sys
from typing import BinaryIO

from mailgate.settings import Settings

log = logging.getLogger(__name__)
CHUNK = 1 << 20
PIPE_HELO = "ticketd-pipe.invalid"
CONNECT_TIMEOUT = 2.0
REPLY_TIMEOUT = 600.0


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
        log.warning("daemon hand-off failed (%s); importing here", err)
        return None
    finally:
        try:
            client.quit()
        except (OSError, smtplib.SMTPException):
            client.close()
    if code == 250:
        return 0
    if 400 <= code < 500:
        sys.stderr.write(f"ticketd: daemon asked to retry later (SMTP {code})\n")
        return 75
    return None


def _import_here(
    settings: Settings, raw: bytes, truncated: bool, department: str | None, sender: str | None
) -> int:
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
