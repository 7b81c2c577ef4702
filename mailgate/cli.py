"""The `ticketd` command: argument parsing and the mapping of errors to exit codes.

Each subcommand is a function in `mailgate.commands`; this module only builds
the parser, loads the settings once and turns expected errors into one
`ticketd: ` line on stderr and the exit code of the contract.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from core.errors import TicketdError, TransientError

Handler = Callable[[argparse.Namespace], int]


class Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line and exit 2."""

    def error(self, message: str) -> NoReturn:
        where = self.prog.removeprefix("ticketd").strip()
        sys.stderr.write(f"ticketd: {where + ': ' if where else ''}{message}\n")
        raise SystemExit(2)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default=argparse.SUPPRESS, help="config file (TOML)")


def _json(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON document")


def _cmd(
    sub: Any, name: str, handler: Handler, help_text: str, json_output: bool = False
) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = sub.add_parser(name, help=help_text, description=help_text)
    parser.set_defaults(handler=handler)
    _common(parser)
    if json_output:
        _json(parser)
    return parser


def build_parser(light: bool = False) -> argparse.ArgumentParser:
    """The whole command line; `light` builds only `pipe`'s."""
    from mailgate import commands as c

    parser = Parser(prog="ticketd", description="Email-first support ticketing daemon.")
    _common(parser)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    if light:  # the MTA starts `ticketd pipe` once per message: build its parser alone
        _pipe_command(sub, c.cmd_pipe)
        return parser
    _cmd(sub, "init", c.cmd_init, "create or upgrade the database and data folders")
    _cmd(sub, "check-config", c.cmd_check_config, "validate the config and what it names")
    serve = _cmd(sub, "serve", c.cmd_serve, "run the SMTP listener, pollers, sender, scheduler")
    serve.add_argument("--no-smtp", action="store_true", help="do not listen for SMTP")
    _pipe_command(sub, c.cmd_pipe)
    poll = _cmd(sub, "poll", c.cmd_poll, "poll the configured IMAP mailboxes")
    poll.add_argument("--once", action="store_true", help="one pass, then exit")
    jobs = _cmd(sub, "run-jobs", c.cmd_run_jobs, "run the timed rules now")
    jobs.add_argument("--once", action="store_true", help="one pass, then exit")
    jobs.add_argument("--now", help="act as if it were this ISO-8601 time")
    from mailgate.cli_directory import add_directory_commands
    from mailgate.cli_outbox import add_outbox_commands
    from mailgate.cli_reports import add_report_commands
    from mailgate.cli_tickets import add_ticket_commands

    add_ticket_commands(sub, _cmd)
    add_directory_commands(sub, _cmd)
    add_outbox_commands(sub, _cmd)
    add_report_commands(sub, _cmd)
    return parser


def _pipe_command(sub: Any, handler: Handler) -> None:
    pipe = _cmd(sub, "pipe", handler, "import one message from stdin (MTA pipe)")
    pipe.add_argument("--department", help="the department address it was sent to")
    pipe.add_argument("--sender", help="the envelope sender, when the MTA passes it")


LIGHT_COMMANDS = frozenset({"pipe"})


def _subcommand(argv: Sequence[str]) -> str | None:
    """The subcommand's name, skipping `--config PATH` before it."""
    skip = False
    for word in argv:
        if skip:
            skip = False
        elif word == "--config":
            skip = True
        elif not word.startswith("-"):
            return word
    return None


def configure_logging() -> None:
    """WARNING and above to stderr (journald); importing `logging` costs `pipe` ~8 ms."""
    import logging

    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `ticketd` command."""
    argv = list(sys.argv[1:] if argv is None else argv)
    light = _subcommand(argv) in LIGHT_COMMANDS
    if not light:
        configure_logging()  # light commands call it before their first log line
    args = build_parser(light=light).parse_args(argv)
    try:
        code: int = args.handler(args)
    except TicketdError as err:
        sys.stderr.write(f"ticketd: {err}\n")
        return err.exit_code
    except KeyboardInterrupt:
        return 130
    except OSError as err:
        sys.stderr.write(f"ticketd: {err.strerror or err}: {err.filename or ''}\n".rstrip())
        return TransientError.exit_code if args.command == "pipe" else 1
    return code


if __name__ == "__main__":
    raise SystemExit(main())
