"""The directory commands: clients, users, contacts, bans, predefined replies, import log."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from core import directory
from core.errors import NotFound
from core.predefined import add_predefined_reply
from core.views import import_document, import_summary
from mailgate.app import utcnow
from mailgate.commands import emit_json, emit_table, ready_app

Command = Callable[..., argparse.ArgumentParser]


def add_directory_commands(sub: Any, cmd: Command) -> None:
    parser_class = type(sub.add_parser("client", help="client accounts"))
    client = sub.choices["client"].add_subparsers(
        dest="client_command", required=True, parser_class=parser_class
    )
    p = cmd(client, "add", client_add, "a client account with its owner; prints its id")
    p.add_argument("--name", required=True)
    p.add_argument("--email", required=True)
    p.add_argument("--company", default="")
    for name, handler in (("add-user", client_add_user), ("add-contact", client_add_contact)):
        p = cmd(client, name, handler, f"{name.removeprefix('add-')} of an account")
        p.add_argument("client_id", type=int)
        p.add_argument("--email", required=True)
        p.add_argument("--name", required=True)
        p.add_argument("--no-ticket-emails", action="store_true")
    user = sub.add_parser("user", help="registered users").add_subparsers(
        dest="user_command", required=True, parser_class=parser_class
    )
    p = cmd(user, "add", user_add, "a registered user with no account; prints its id")
    p.add_argument("--email", required=True)
    p.add_argument("--name", required=True)
    ban = sub.add_parser("ban", help="banned senders").add_subparsers(
        dest="ban_command", required=True, parser_class=parser_class
    )
    for name, handler in (("add", ban_add), ("remove", ban_remove)):
        cmd(ban, name, handler, f"{name} a banned address or domain").add_argument("pattern")
    cmd(ban, "list", ban_list, "list banned addresses and domains", json_output=True)
    pre = sub.add_parser("predefined", help="predefined replies").add_subparsers(
        dest="predefined_command", required=True, parser_class=parser_class
    )
    p = cmd(pre, "add", predefined_add, "store a predefined reply")
    p.add_argument("--title", required=True)
    p.add_argument("--body", required=True)
    p.add_argument("--category", default="")
    cmd(pre, "list", predefined_list, "list predefined replies", True).add_argument(
        "--search", default=""
    )
    log = sub.add_parser("importlog", help="the mail import log").add_subparsers(
        dest="importlog_command", required=True, parser_class=parser_class
    )
    cmd(log, "list", importlog_list, "list imported and blocked mail", True).add_argument(
        "--blocked", action="store_true"
    )
    cmd(log, "show", importlog_show, "one entry with its decision trace", True).add_argument(
        "id", type=int
    )
    cmd(log, "import", importlog_import, "import a blocked reply anyway").add_argument(
        "id", type=int
    )


def _save(args: argparse.Namespace, action: Callable[..., Any], *params: Any) -> int:
    app = ready_app(args)
    with app.uow() as uow:
        created = action(uow, *params)
        uow.commit()
    print(getattr(created, "pattern", None) or getattr(created, "id", None) or "ok")
    return 0


def client_add(args: argparse.Namespace) -> int:
    return _save(args, directory.add_client, args.name, args.email, args.company, utcnow())


def client_add_user(args: argparse.Namespace) -> int:
    return _save(
        args,
        directory.add_client_user,
        args.client_id,
        args.email,
        args.name,
        not args.no_ticket_emails,
        utcnow(),
    )


def client_add_contact(args: argparse.Namespace) -> int:
    return _save(
        args,
        directory.add_contact,
        args.client_id,
        args.email,
        args.name,
        not args.no_ticket_emails,
    )


def user_add(args: argparse.Namespace) -> int:
    return _save(args, directory.add_user, args.email, args.name, utcnow())


def ban_add(args: argparse.Namespace) -> int:
    return _save(args, directory.add_ban, args.pattern, utcnow())


def ban_remove(args: argparse.Namespace) -> int:
    app = ready_app(args)
    with app.uow() as uow:
        directory.remove_ban(uow, args.pattern)
        uow.commit()
    print(f"unbanned {args.pattern}")
    return 0


def ban_list(args: argparse.Namespace) -> int:
    with ready_app(args).uow() as uow:
        rows = [{"pattern": b.pattern, "created_at": b.created_at.isoformat()} for b in uow.bans()]
    if args.json:
        emit_json(rows)
    else:
        emit_table(("PATTERN", "SINCE"), [(r["pattern"], r["created_at"][:16]) for r in rows])
    return 0


def predefined_add(args: argparse.Namespace) -> int:
    return _save(args, add_predefined_reply, args.title, args.body, args.category)


def predefined_list(args: argparse.Namespace) -> int:
    with ready_app(args).uow() as uow:
        rows = [
            {"id": r.id, "title": r.title, "category": r.category}
            for r in uow.predefined_replies(args.search)
        ]
    if args.json:
        emit_json(rows)
    else:
        emit_table(("ID", "TITLE", "CATEGORY"), [tuple(r.values()) for r in rows])
    return 0


def _number(uow: Any, ticket_id: int | None) -> str | None:
    ticket = uow.ticket(ticket_id) if ticket_id is not None else None
    return ticket.number if ticket else None


def importlog_list(args: argparse.Namespace) -> int:
    with ready_app(args).uow() as uow:
        records = uow.import_records("blocked" if args.blocked else None)
        rows = [import_summary(r, _number(uow, r.ticket_id)) for r in records]
    if args.json:
        emit_json(rows)
    else:
        emit_table(
            ("ID", "RECEIVED", "OUTCOME", "REASON", "TICKET", "FROM", "SUBJECT"),
            [
                (
                    r["id"],
                    r["received_at"][:16],
                    r["outcome"],
                    r["reason"] or "",
                    r["ticket"] or "",
                    r["from"],
                    r["subject"],
                )
                for r in rows
            ],
        )
    return 0


def importlog_show(args: argparse.Namespace) -> int:
    with ready_app(args).uow() as uow:
        record = uow.import_record(args.id)
        if record is None:
            raise NotFound(f"no import log entry {args.id}")
        document = import_document(record, _number(uow, record.ticket_id))
    if args.json:
        emit_json(document)
        return 0
    for key, value in document.items():
        if key != "trace":
            sys.stdout.write(f"{key}: {value if value is not None else '-'}\n")
    sys.stdout.write("trace:\n")
    for step in document["trace"]:
        sys.stdout.write(f"  - {step}\n")
    return 0


def importlog_import(args: argparse.Namespace) -> int:
    from mailgate.accept import import_blocked

    app = ready_app(args)
    number = import_blocked(app, args.id)
    print(number)
    return 0
