"""`ticketd pipe`: one message from stdin, as an MTA's pipe transport runs it.

Exit 0 once the message is committed (as a ticket, a reply or an import-log
entry), 75 on any transient failure so the MTA keeps it and retries.
"""

from __future__ import annotations

import logging
import os
from typing import BinaryIO

from core.intake import Envelope
from mailgate.accept import accept_message, accept_oversized
from mailgate.app import App

log = logging.getLogger(__name__)
CHUNK = 1 << 20


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
    data = b"".join(chunks)
    while stream.read(CHUNK):
        pass
    return data[:limit], True


def run_pipe(app: App, stream: BinaryIO, department: str | None, sender: str | None) -> int:
    """Import the message on `stream`; returns the process exit code."""
    limit = app.settings.smtp.max_message_bytes
    raw, truncated = read_limited(stream, limit)
    recipients = tuple(r for r in (department, os.environ.get("ORIGINAL_RECIPIENT")) if r)
    envelope = Envelope("pipe", sender or os.environ.get("SENDER"), recipients[:1])
    app.upgrade_schema()
    if truncated:
        decision = accept_oversized(app, raw, envelope)
    else:
        decision = accept_message(app, raw, envelope)
    print(f"{decision.outcome} {decision.reason or ''} {decision.ticket_number or ''}".strip())
    return 0
