"""Timed jobs: passes of `core.automation`'s rules, for `ticketd run-jobs` and the daemon.

A pass runs each stage of `core.automation.stages` as of one moment; every
ticket is acted on in its own unit of work, committed through `App.finish`
(which queues the notifications), so one bad ticket is logged and skipped and
never aborts the pass. Each action taken is handed on as one line of text.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from core.automation import Stage, rule_problems, stages
from core.errors import TicketdError, UsageError
from core.policy import Policy
from mailgate.app import App, utcnow

log = logging.getLogger(__name__)
INTERVAL_SECONDS = 60.0
Report = Callable[[str], None]


def run_pass(app: App, now: datetime, report: Report) -> int:
    """One pass of every timed rule as of `now`; returns how many actions were taken."""
    policy = app.policy
    for problem in rule_problems(policy):
        log.error("%s; the rule is skipped", problem)
    done = 0
    for stage in stages(policy):
        with app.uow() as uow:
            ticket_ids = stage.candidates(uow, policy, now)
        for ticket_id in ticket_ids:
            line = _apply(app, stage, ticket_id, policy, now)
            if line is not None:
                report(line)
                done += 1
    return done


def _apply(app: App, stage: Stage, ticket_id: int, policy: Policy, now: datetime) -> str | None:
    """One stage on one ticket in its own transaction; failures are logged, never raised."""
    label = f"ticket id {ticket_id}"
    try:
        with app.uow() as uow:
            ticket = uow.ticket(ticket_id, lock=True)
            if ticket is None:
                return None
            label = f"ticket {ticket.number}"
            result = stage.apply(uow, ticket, policy, now)
            if result is not None:
                app.finish(uow)
                return f"{ticket.number}: {result}"
    except TicketdError as err:
        log.warning("%s: %s failed: %s", label, stage.name, err)
    except Exception:
        log.exception("%s: %s failed", label, stage.name)
    return None


def parse_now(text: str | None) -> datetime:
    """`--now` as an aware UTC time (naive means UTC); the current time when not given."""
    if text is None:
        return utcnow()
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError as err:
        raise UsageError(f"--now: not an ISO-8601 date and time: {text!r}") from err
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _print(line: str) -> None:
    print(line, flush=True)


def run_jobs_command(app: App, once: bool, now: str | None) -> int:
    """`ticketd run-jobs`: one pass, or a pass every minute until SIGTERM or SIGINT.

    With `--now` and no `--once`, the clock runs on from that moment.
    """
    start = parse_now(now)
    if once:
        run_pass(app, start, _print)
        return 0
    offset = start - utcnow() if now is not None else timedelta(0)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda _signum, _frame: stop.set())
    while not stop.is_set():
        try:
            run_pass(app, utcnow() + offset, _print)
        except Exception:
            log.exception("job pass failed; next try in %.0f s", INTERVAL_SECONDS)
        stop.wait(INTERVAL_SECONDS)
    return 0


async def run_scheduler(app: App, stop: asyncio.Event) -> None:
    """The daemon's scheduler: a pass every minute, off the event loop, until `stop`.

    A plain loop rather than APScheduler: one fixed interval needs no job store,
    and awaiting the pass lets a stop wait for it to finish before the engine goes.
    """
    while not stop.is_set():
        await asyncio.to_thread(run_pass, app, utcnow(), _log_action)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), INTERVAL_SECONDS)


def _log_action(line: str) -> None:
    log.info("job: %s", line)
