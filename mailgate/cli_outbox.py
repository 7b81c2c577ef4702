"""The outbox and suppression commands: list and send notifications, lift suppressions."""

from __future__ import annotations

import argparse
import asyncio
import signal
from collections.abc import Callable
from typing import Any

from core.errors import NotFound
from core.model import OutboxItem, Suppression
from core.views import iso
from mailgate.app import App, utcnow
from mailgate.commands import emit_json, emit_table, ready_app
from mailgate.outbound import make_transport, run_sender, send_due

Command = Callable[..., argparse.ArgumentParser]
FAILED = ("failed", "bounced")


def add_outbox_commands(sub: Any, cmd: Command) -> None:
    parser_class = type(sub.add_parser("outbox", help="queued, sent and failed notifications"))
    outbox = sub.choices["outbox"].add_subparsers(
        dest="outbox_command", required=True, parser_class=parser_class
    )
    p = cmd(outbox, "list", outbox_list, "list notifications, newest first", json_output=True)
    p.add_argument("--failed", action="store_true", help="only failed and bounced ones")
    p = cmd(outbox, "send", outbox_send, "send due notifications now")
    p.add_argument("--once", action="store_true", help="one pass, then exit")
    sup = sub.add_parser("suppression", help="addresses held back after hard bounces")
    suppression = sup.add_subparsers(
        dest="suppression_command", required=True, parser_class=parser_class
    )
    cmd(suppression, "list", suppression_list, "list suppressed addresses", json_output=True)
    cmd(suppression, "remove", suppression_remove, "mail an address again").add_argument("email")


def _outbox_row(item: OutboxItem, number: str | None) -> dict[str, Any]:
    return {
        "id": item.id,
        "created_at": iso(item.created_at),
        "event": item.event,
        "ticket": number,
        "recipient": item.recipient,
        "subject": item.subject,
        "message_id": item.mail_message_id,
        "status": item.status,
        "attempts": item.attempts,
        "next_attempt_at": iso(item.next_attempt_at),
        "sent_at": iso(item.sent_at),
        "last_error": item.last_error,
    }


def outbox_list(args: argparse.Namespace) -> int:
    with ready_app(args).uow() as uow:
        items = uow.outbox_items()
        numbers = {t: _number(uow, t) for t in {i.ticket_id for i in items}}
        rows = [
            _outbox_row(i, numbers[i.ticket_id])
            for i in items
            if not args.failed or i.status in FAILED
        ]
    if args.json:
        emit_json(rows)
        return 0
    emit_table(
        ("ID", "CREATED", "STATUS", "EVENT", "TICKET", "RECIPIENT", "ERROR"),
        [
            (
                r["id"],
                r["created_at"][:16],
                r["status"],
                r["event"],
                r["ticket"] or "",
                r["recipient"],
                r["last_error"],
            )
            for r in rows
        ],
    )
    return 0


def _number(uow: Any, ticket_id: int | None) -> str | None:
    ticket = uow.ticket(ticket_id) if ticket_id is not None else None
    return ticket.number if ticket else None


def outbox_send(args: argparse.Namespace) -> int:
    app = ready_app(args)
    if not args.once:
        asyncio.run(_send_until_stopped(app))
        return 0
    transport = make_transport(app.settings.outbound)
    try:
        report = send_due(app, transport)
    finally:
        transport.close()
    print(f"sent {report.sent}, retrying {report.retried}, failed {report.failed}")
    return 0


async def _send_until_stopped(app: App) -> None:
    """The sender alone, as `serve` runs it, until SIGTERM or SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await run_sender(app, stop)


def _suppression_row(item: Suppression, active: bool) -> dict[str, Any]:
    return {
        "email": item.email,
        "bounces": item.bounces,
        "until": iso(item.until),
        "active": active,
        "reason": item.reason,
    }


def suppression_list(args: argparse.Namespace) -> int:
    now = utcnow()
    with ready_app(args).uow() as uow:
        rows = [
            _suppression_row(s, s.until is not None and s.until > now) for s in uow.suppressions()
        ]
    if args.json:
        emit_json(rows)
        return 0
    emit_table(
        ("EMAIL", "BOUNCES", "SUPPRESSED UNTIL", "REASON"),
        [
            (r["email"], r["bounces"], (r["until"] or "")[:16] if r["active"] else "-", r["reason"])
            for r in rows
        ],
    )
    return 0


def suppression_remove(args: argparse.Namespace) -> int:
    """Lift the suppression; earlier bounces no longer count towards a new one."""
    app = ready_app(args)
    with app.uow() as uow:
        item = uow.suppression(args.email)
        if item is None:
            raise NotFound(f"{args.email} is not suppressed")
        item.until = utcnow()
        item.bounces = 0
        uow.commit()
    print(f"mail to {item.email} resumes")
    return 0
