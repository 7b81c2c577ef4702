"""Accepting one raw message from any transport: store it durably, parse it,
decide its outcome in one transaction, and only then report success.

Pipe, SMTP and IMAP all call `accept_message`; what it returns is what the
transport acknowledges. Transient failures raise `TransientError` so the
sender retries; anything else wrong with the message is an import-log entry.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace

from sqlalchemy.exc import OperationalError, SQLAlchemyError

from core.errors import Conflict, MalformedMail, NotFound, TransientError, UsageError
from core.intake import (
    Decision,
    Envelope,
    Stored,
    force_import,
    receive_mail,
    record_unreadable,
)
from mailgate.app import App, utcnow
from mailgate.parse import MessageLimits, parse_message
from storage.uow import SqlUnitOfWork

log = logging.getLogger(__name__)
ATTEMPTS = 3
Also = Callable[[SqlUnitOfWork, Decision], None]
UNIMPORTABLE = frozenset({"duplicate", "malformed", "too_large"})


def limits_for(app: App) -> MessageLimits:
    return replace(MessageLimits(), max_bytes=app.settings.smtp.max_message_bytes)


def _store(app: App, raw: bytes) -> Stored:
    try:
        return Stored(app.blobs.put(raw), len(raw))
    except OSError as err:
        raise TransientError(f"cannot store the message: {err.strerror}") from err


def accept_oversized(app: App, head: bytes, envelope: Envelope) -> Decision:
    """Log a message over the size limit, keeping the part that was read."""
    stored = _store(app, head)
    detail = f"larger than {len(head)} bytes; the first {len(head)} bytes are kept"
    return _commit(
        app, lambda uow: record_unreadable(uow, envelope, stored, "too_large", detail, utcnow())
    )


def accept_message(app: App, raw: bytes, envelope: Envelope, also: Also | None = None) -> Decision:
    """Take in one message; returns once its outcome is committed.

    `also` runs inside the same transaction, after the decision (the IMAP
    poller records the message's UID there, so import and checkpoint commit
    together).
    """
    policy = app.policy
    stored = _store(app, raw)
    try:
        mail = parse_message(raw, limits_for(app))
    except MalformedMail as err:
        log.warning("message %s unreadable: %s", stored.sha256[:12], err.detail)
        reason, detail = err.reason, err.detail
        return _commit(
            app,
            lambda uow: record_unreadable(uow, envelope, stored, reason, detail, utcnow()),
            also,
        )
    try:
        return _commit(
            app, lambda uow: receive_mail(uow, mail, envelope, stored, policy, utcnow()), also
        )
    except TransientError:
        raise
    except Exception as err:  # the one catch-all for a message
        log.exception("message %s could not be processed", stored.sha256[:12])
        detail = f"processing failed ({type(err).__name__}); raw kept, importable once fixed"
        return _commit(
            app,
            lambda uow: record_unreadable(
                uow, envelope, stored, "internal_error", detail, utcnow()
            ),
            also,
        )


def _commit(
    app: App, decide: Callable[[SqlUnitOfWork], Decision], also: Also | None = None
) -> Decision:
    """Run one decision in a transaction, retrying a lost race on the same message."""
    for attempt in range(1, ATTEMPTS + 1):
        try:
            with app.uow() as uow:
                decision: Decision = decide(uow)
                if also is not None:
                    also(uow, decision)
                app.finish(uow)
            log.info(
                "import %s: %s %s ticket %s",
                decision.import_id,
                decision.outcome,
                decision.reason or "",
                decision.ticket_number or "-",
            )
            return decision
        except Conflict:
            if attempt == ATTEMPTS:
                raise
        except OperationalError as err:
            raise TransientError(f"database unavailable: {err.orig}") from err
        except SQLAlchemyError as err:
            raise TransientError(f"database error: {err}") from err
    raise TransientError("could not record the message")


def import_blocked(app: App, import_id: int) -> str:
    """Import a blocked message anyway (the import log's Import action); its ticket number."""
    with app.uow() as uow:
        record = uow.import_record(import_id)
        if record is None:
            raise NotFound(f"no import log entry {import_id}")
        if record.outcome != "blocked" or record.reason in UNIMPORTABLE:
            raise UsageError(
                f"import {import_id} is {record.outcome} ({record.reason}): nothing to import"
            )
        try:
            mail = parse_message(app.blobs.get(record.raw_sha256), limits_for(app))
        except MalformedMail as err:
            raise UsageError(f"import {import_id} cannot be parsed: {err.detail}") from err
        ticket = force_import(uow, record, mail, app.policy, utcnow())
        app.finish(uow)
        return ticket.number
