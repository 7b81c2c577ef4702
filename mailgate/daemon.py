"""`ticketd serve`: the SMTP listener, IMAP pollers, outbound sender and scheduler
in one event loop. SIGTERM and SIGINT stop it gracefully; SIGHUP reloads the config.

Each background part is `async def run_...(app, stop)` and returns when `stop`
is set; one part failing is logged and restarted, never taking the others down.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from core.errors import TicketdError
from mailgate.app import App
from mailgate.settings import load_settings, locate_config

if TYPE_CHECKING:
    from mailgate.smtp import Listener

log = logging.getLogger(__name__)
Part = Callable[[App, asyncio.Event], Awaitable[None]]
RESTART_DELAY = 5.0


def serve(app: App, smtp: bool = True) -> int:
    """Run until a stop signal; returns the exit code."""
    logging.getLogger().setLevel(app.settings.log_level.upper())
    return asyncio.run(_main(app, smtp))


def _parts() -> list[tuple[str, Part]]:
    from mailgate.imap import run_pollers
    from mailgate.jobs import run_scheduler
    from mailgate.outbound import run_sender

    return [("outbound sender", run_sender), ("imap", run_pollers), ("scheduler", run_scheduler)]


async def _main(app: App, smtp: bool) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    listener = None
    if smtp:
        from mailgate.smtp import start_listener

        listener = await start_listener(app)
    loop.add_signal_handler(signal.SIGHUP, _reload, app, listener)
    tasks = [asyncio.create_task(_supervise(name, part, app, stop)) for name, part in _parts()]
    log.info("ticketd serving (config: %s)", app.settings.source)
    await stop.wait()
    log.info("stopping")
    if listener is not None:
        await listener.close()
    await asyncio.gather(*tasks, return_exceptions=True)
    app.engine.dispose()
    return 0


async def _supervise(name: str, part: Part, app: App, stop: asyncio.Event) -> None:
    while not stop.is_set():
        try:
            await part(app, stop)
            return
        except Exception:
            log.exception("%s failed; restarting in %.0f s", name, RESTART_DELAY)
        try:
            await asyncio.wait_for(stop.wait(), RESTART_DELAY)
        except TimeoutError:
            continue


def _reload(app: App, listener: Listener | None) -> None:
    """Re-read the config; keep running on the old one when the new one is invalid."""
    source = None if app.settings.source == "built-in defaults" else app.settings.source
    try:
        settings = load_settings(locate_config(source))
    except TicketdError as err:
        log.error("reload refused, keeping the running config: %s", err)
        return
    app.reload(settings)
    if listener is not None:
        listener.reload(app.settings)
    log.info("config reloaded from %s", settings.source)
