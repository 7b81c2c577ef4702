"""The daemon-level commands (init, check-config, serve, pipe, poll, run-jobs) and
the helpers every command shares: loading the app, printing text or JSON.

Imports stay light here: `ticketd pipe` runs once per message and loads this
module, so anything heavy is imported inside the command that needs it."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.errors import ConfigError, TransientError, UsageError
from mailgate.settings import load_settings, locate_config

if TYPE_CHECKING:
    from mailgate.app import App


DRAIN_WAIT_SECONDS = 60.0


def load_app(args: argparse.Namespace) -> App:
    """Settings from `--config` (or the defaults) and the app built on them."""
    from mailgate.app import App

    return App(load_settings(locate_config(getattr(args, "config", None))))


def ready_app(args: argparse.Namespace) -> App:
    """The app with its schema in place (created on first use, as `init` would) and
    every message the SMTP listener acknowledged imported, so a read right after a
    250 sees it."""
    from mailgate.spool import Spool

    app = load_app(args)
    app.ensure_schema()
    Spool(app.settings.data_dir).drain(app, wait_seconds=DRAIN_WAIT_SECONDS)
    return app


def emit_json(document: Any) -> None:
    import json

    json.dump(document, sys.stdout, indent=2, sort_keys=False, ensure_ascii=False)
    sys.stdout.write("\n")


def emit_table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> None:
    """A plain aligned table, cells cut to keep lines within a terminal."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [min(max([len(h)] + [len(r[i]) for r in cells]), 40) for i, h in enumerate(headers)]
    for row in [list(headers), *cells]:
        line = "  ".join(v[: widths[i]].ljust(widths[i]) for i, v in enumerate(row))
        sys.stdout.write(line.rstrip() + "\n")
    if not cells:
        sys.stdout.write("(none)\n")


def _cell(value: object) -> str:
    text = "" if value is None else str(value)
    return " ".join(text.split())


def cmd_init(args: argparse.Namespace) -> int:
    app = load_app(args)
    for line in app.init():
        print(f"ok: {line}")
    return 0


def cmd_check_config(args: argparse.Namespace) -> int:
    try:
        app = load_app(args)
    except ConfigError as err:
        sys.stderr.write(f"ticketd: {err}\n")
        return 78
    settings = app.settings
    print(f"ok: config {settings.source} parsed and validated")
    print(f"ok: {len(settings.departments)} department(s), addresses unique")
    print(f"ok: {len(settings.admins)} admin(s), every department member known")
    host, port = settings.smtp.host_port
    print(f"ok: smtp.listen {host}:{port} parseable")
    failures = [_check_writable(settings.data_dir), _check_database(app)]
    from mailgate.imap_check import check_mailboxes

    failures += check_mailboxes(settings)
    for failure in filter(None, failures):
        sys.stderr.write(f"ticketd: {failure}\n")
    return 78 if any(failures) else 0


def _unwritable(folder: Path) -> str | None:
    """Why files cannot be made in `folder` (or, if it is missing, its nearest parent)."""
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    try:
        import tempfile

        with tempfile.NamedTemporaryFile(dir=existing):
            pass
    except OSError as err:
        return f"{existing}: {err.strerror}"
    return None


def _check_writable(folder: str) -> str | None:
    """Checks only: a missing data_dir is fine when `ticketd init` can create it."""
    problem = _unwritable(Path(folder))
    if problem:
        return f"data_dir {folder} is not writable: {problem}"
    missing = "" if Path(folder).is_dir() else " (missing; 'ticketd init' creates it)"
    print(f"ok: data_dir {folder} writable{missing}")
    return None


def _check_database(app: App) -> str | None:
    from sqlalchemy import text
    from sqlalchemy.exc import SQLAlchemyError

    url = app.engine.url
    shown = url.render_as_string()
    path = Path(url.database or ":memory:")
    if url.get_backend_name() == "sqlite" and str(path) != ":memory:" and not path.exists():
        problem = _unwritable(path.parent)
        if problem:
            return f"database {shown} cannot be created: {problem}"
        print(f"ok: database {shown} can be created ('ticketd init' creates it)")
        return None
    try:
        with app.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except SQLAlchemyError as err:
        reason = " ".join(str(getattr(err, "orig", None) or err).split())
        return f"database {shown} unreachable: {reason}"
    print(f"ok: database {shown} reachable")
    return None


def cmd_serve(args: argparse.Namespace) -> int:
    from mailgate.daemon import serve

    app = load_app(args)
    app.init()
    return serve(app, smtp=not args.no_smtp)


def cmd_pipe(args: argparse.Namespace) -> int:
    """Never a traceback and never exit 1: 0, 75 (retry) or 78 (bad config)."""
    from mailgate.pipe import run_pipe

    try:
        settings = load_settings(locate_config(getattr(args, "config", None)))
    except ConfigError as err:
        sys.stderr.write(f"ticketd: {err}\n")
        return 78
    try:
        return run_pipe(settings, sys.stdin.buffer, args.department, args.sender)
    except TransientError as err:
        sys.stderr.write(f"ticketd: {err}\n")
        return 75
    except Exception as err:  # the one catch-all of the pipe: the MTA must retry, not bounce
        import logging

        from mailgate.cli import configure_logging

        configure_logging()
        logging.getLogger(__name__).exception("pipe failed")
        sys.stderr.write(f"ticketd: temporary failure: {type(err).__name__}: {err}\n")
        return 75


def cmd_poll(args: argparse.Namespace) -> int:
    from mailgate.imap import poll_command

    return poll_command(ready_app(args), once=args.once)


def cmd_run_jobs(args: argparse.Namespace) -> int:
    from mailgate.jobs import run_jobs_command

    return run_jobs_command(ready_app(args), once=args.once, now=args.now)


def parse_ids(text: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError as err:
        raise UsageError(f"expected comma-separated ids, got {text!r}") from err
