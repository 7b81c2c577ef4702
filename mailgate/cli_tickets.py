"""The `ticketd ticket ...` commands, each a thin call into core's operations."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from core import options, restructure, ticketing
from core.actors import Actor
from core.errors import NotFound, UsageError
from core.model import Ticket
from core.reports import record_feedback
from core.views import ticket_document, ticket_summary
from mailgate.app import App, utcnow
from mailgate.commands import emit_json, emit_table, parse_ids, ready_app
from storage.uow import SqlUnitOfWork

Command = Callable[..., argparse.ArgumentParser]


def add_ticket_commands(sub: Any, cmd: Command) -> None:
    ticket = sub.add_parser("ticket", help="work on tickets")
    tsub = ticket.add_subparsers(dest="ticket_command", required=True, parser_class=type(ticket))
    p = cmd(tsub, "list", ticket_list, "list tickets, newest activity first", json_output=True)
    p.add_argument("--status", action="append", default=[], help="repeat for several")
    p.add_argument("--department", help="department address")
    p.add_argument("--tag")
    p.add_argument("--flagged", metavar="ADMIN")
    p.add_argument("--search", metavar="TEXT")
    p = cmd(tsub, "show", ticket_show, "one ticket with its messages, notes and log", True)
    p.add_argument("number")
    p = cmd(tsub, "open", ticket_open, "open a ticket")
    p.add_argument("--department", required=True)
    p.add_argument("--from", dest="sender", required=True, metavar="EMAIL")
    p.add_argument("--name", default="", help="the requester's name")
    p.add_argument("--subject", required=True)
    p.add_argument("--body", required=True)
    p.add_argument("--priority", default="Medium")
    p.add_argument("--client", type=int, help="client id to open it for")
    p.add_argument("--admin", help="the admin opening it on someone's behalf")
    p = cmd(tsub, "reply", ticket_reply, "admin reply")
    _admin_args(p)
    p.add_argument("--body", default="")
    p.add_argument("--predefined", metavar="TITLE")
    p.add_argument("--status")
    p = cmd(tsub, "note", ticket_note, "private note; @username mentions notify")
    _admin_args(p, version=False)
    p.add_argument("--body", required=True)
    p = cmd(tsub, "update", ticket_update, "change ticket options")
    _admin_args(p)
    for option in ("--status", "--priority", "--department", "--subject", "--service", "--cc"):
        p.add_argument(option)
    flagging = p.add_mutually_exclusive_group()
    flagging.add_argument("--flag", metavar="ADMIN")
    flagging.add_argument("--unflag", action="store_true")
    p.add_argument("--client", type=int)
    p.add_argument("--add-tag", action="append", default=[])
    p.add_argument("--remove-tag", action="append", default=[])
    p.add_argument("--field", action="append", default=[], metavar="NAME=VALUE")
    for name, on in (("watch", True), ("unwatch", False)):
        p = cmd(tsub, name, ticket_watch, f"{name} a ticket")
        _admin_args(p, version=False)
        p.set_defaults(on=on)
    p = cmd(tsub, "merge", ticket_merge, "merge tickets into the oldest")
    p.add_argument("numbers", nargs="+")
    p.add_argument("--admin", required=True)
    p = cmd(tsub, "split", ticket_split, "move replies to a new ticket")
    _admin_args(p, version=False)
    p.add_argument("--messages", required=True, metavar="ID,ID")
    p.add_argument("--department")
    p.add_argument("--priority")
    p.add_argument("--subject")
    p.add_argument("--notify", action="store_true")
    p = cmd(tsub, "delete", ticket_delete, "delete tickets")
    p.add_argument("numbers", nargs="+")
    p.add_argument("--block-sender", action="store_true")
    p.add_argument("--admin")
    p = cmd(tsub, "delete-reply", ticket_delete_reply, "delete one message")
    p.add_argument("number")
    p.add_argument("message_id", type=int)
    p.add_argument("--admin")
    p = cmd(tsub, "edit-reply", ticket_edit_reply, "edit one message")
    p.add_argument("number")
    p.add_argument("message_id", type=int)
    p.add_argument("--body", required=True)
    p.add_argument("--admin")
    p = cmd(tsub, "rate", ticket_rate, "record a client's 1-5 rating of an admin reply")
    p.add_argument("number")
    p.add_argument("message_id", type=int)
    p.add_argument("rating", type=int)
    p = cmd(tsub, "feedback", ticket_feedback, "record a client's feedback on a closed ticket")
    p.add_argument("number")
    p.add_argument("--score", type=int, required=True, help="1 (poor) to 10 (excellent)")
    p.add_argument("--comment", default="")
    p = cmd(tsub, "bill", ticket_bill, "add a billable item")
    _admin_args(p, version=False)
    p.add_argument("--description", required=True)
    p.add_argument("--amount", required=True)
    p.add_argument("--invoice-action", default="none", choices=restructure.INVOICE_ACTIONS)


def _admin_args(parser: argparse.ArgumentParser, version: bool = True) -> None:
    parser.add_argument("number")
    parser.add_argument("--admin", required=True, metavar="USER")
    if version:
        parser.add_argument("--expect-version", type=int, metavar="V")


@contextmanager
def _work(args: argparse.Namespace) -> Iterator[tuple[App, SqlUnitOfWork]]:
    app = ready_app(args)
    with app.uow() as uow:
        yield app, uow


def admin_actor(uow: SqlUnitOfWork, username: str | None) -> Actor:
    """The admin named on the command line (the shell user is trusted as admin)."""
    if not username:
        return Actor(email="", name="System", username="cli")
    admin = uow.admin_by_username(username)
    if admin is None:
        raise NotFound(f"no admin {username}")
    return Actor(admin.email, admin.name, admin.id, admin.username)


def _ticket(uow: SqlUnitOfWork, args: argparse.Namespace, actor: Actor | None) -> Ticket:
    return ticketing.load_ticket(uow, args.number, actor, getattr(args, "expect_version", None))


def _done(app: App, uow: SqlUnitOfWork, message: str) -> int:
    app.finish(uow)
    print(message)
    return 0


def ticket_list(args: argparse.Namespace) -> int:
    with _work(args) as (_app, uow):
        department_ids = None
        if args.department:
            department = uow.department_by_email(args.department)
            if department is None:
                raise NotFound(f"no department {args.department}")
            department_ids = [department.id or 0]
        flagged = admin_actor(uow, args.flagged).admin_id if args.flagged else None
        found = uow.tickets(args.status, department_ids, args.tag, flagged, args.search)
        rows = [ticket_summary(uow, t) for t in found]
    if args.json:
        emit_json(rows)
    else:
        emit_table(
            ("NUMBER", "STATUS", "PRIORITY", "LAST REPLY", "FLAG", "SUBJECT"),
            [
                (
                    r["number"],
                    r["status"],
                    r["priority"],
                    r["last_reply_at"][:16],
                    r["flagged_to"] or "",
                    r["subject"],
                )
                for r in rows
            ],
        )
    return 0


def ticket_show(args: argparse.Namespace) -> int:
    """The ticket itself; a merged one shows where it went (`merged_into`)."""
    with _work(args) as (_app, uow):
        ticket = uow.ticket_by_number(args.number.strip().lstrip("#"))
        if ticket is None:
            raise NotFound(f"no ticket {args.number}")
        document = ticket_document(uow, ticket)
    if args.json:
        emit_json(document)
        return 0
    _print_ticket(document)
    return 0


def _print_ticket(doc: dict[str, Any]) -> None:
    out = sys.stdout.write
    out(f"Ticket #{doc['number']}: {doc['subject']}\n")
    out(f"  status {doc['status']}, priority {doc['priority']}, department {doc['department']}\n")
    out(f"  requester {doc['requester']['name']} <{doc['requester']['email']}>")
    out(f", client {doc['client_id']}\n" if doc["client_id"] else "\n")
    for label, key in (("flagged to", "flagged_to"), ("merged into", "merged_into")):
        if doc[key]:
            out(f"  {label} {doc[key]}\n")
    for label, key in (("cc", "cc"), ("tags", "tags"), ("watchers", "watchers")):
        if doc[key]:
            out(f"  {label}: {', '.join(doc[key])}\n")
    out(f"  version {doc['version']}, opened {doc['created_at']}\n")
    if doc["blocked_replies"]:
        out(f"  {len(doc['blocked_replies'])} blocked repl(ies): see 'ticketd importlog list'\n")
    for m in doc["messages"]:
        kind = "NOTE" if m["kind"] == "note" else m["badge"]
        out(
            f"\n--- #{m['id']} {m['created_at'][:16]} {m['author_name']} <{m['author_email']}>"
            f" [{kind}]\n"
        )
        out(m["body"].rstrip() + "\n")
        for a in m["attachments"]:
            out(f"  [attachment] {a['filename']} ({a['content_type']}, {a['size']} bytes)\n")
    out("\nLog:\n")
    for e in doc["log"]:
        out(f"  {e['at'][:19]} {e['actor']}: {e['action']} {e['detail']}\n")


def ticket_open(args: argparse.Namespace) -> int:
    with _work(args) as (app, uow):
        actor = admin_actor(uow, args.admin) if args.admin else Actor(args.sender, args.name)
        request = ticketing.NewTicket(
            department_email=args.department,
            requester_email=_email(args.sender),
            requester_name=args.name or args.sender.partition("@")[0],
            subject=args.subject,
            body=args.body,
            priority=args.priority,
            client_id=args.client,
        )
        ticket = ticketing.open_ticket(uow, request, actor, app.policy, utcnow())
        return _done(app, uow, ticket.number)


def _email(text: str) -> str:
    from core.addresses import valid_email

    address = valid_email(text)
    if address is None:
        raise UsageError(f"not a valid email address: {text!r}")
    return address


def ticket_reply(args: argparse.Namespace) -> int:
    with _work(args) as (app, uow):
        actor = admin_actor(uow, args.admin)
        ticket = _ticket(uow, args, actor)
        body = args.body
        if args.predefined:
            from core.predefined import fill_predefined

            body = fill_predefined(uow, ticket, args.predefined, body)
        if not body.strip():
            raise UsageError("a reply needs --body or --predefined")
        message = ticketing.admin_reply(
            uow, ticket, actor, body, app.policy, utcnow(), status=args.status
        )
        return _done(app, uow, str(message.id))


def ticket_note(args: argparse.Namespace) -> int:
    with _work(args) as (app, uow):
        actor = admin_actor(uow, args.admin)
        ticket = _ticket(uow, args, actor)
        message = ticketing.add_note(uow, ticket, actor, args.body, utcnow())
        return _done(app, uow, str(message.id))


def ticket_update(args: argparse.Namespace) -> int:
    fields = {}
    for item in args.field:
        name, sep, value = item.partition("=")
        if not sep:
            raise UsageError(f"--field expects NAME=VALUE, got {item!r}")
        fields[name.strip()] = value
    changes = options.OptionChanges(
        status=args.status,
        priority=args.priority,
        department_email=args.department,
        subject=args.subject,
        flag_username=args.flag,
        unflag=args.unflag,
        cc=args.cc.split(",") if args.cc is not None else None,
        client_id=args.client,
        service_ref=args.service,
        add_tags=args.add_tag,
        remove_tags=args.remove_tag,
        custom_fields=fields,
    )
    with _work(args) as (app, uow):
        actor = admin_actor(uow, args.admin)
        ticket = _ticket(uow, args, actor)
        options.update_ticket(uow, ticket, actor, changes, app.policy, utcnow())
        return _done(app, uow, f"{ticket.number} version {ticket.version}")


def ticket_watch(args: argparse.Namespace) -> int:
    with _work(args) as (app, uow):
        actor = admin_actor(uow, args.admin)
        ticket = _ticket(uow, args, actor)
        options.watch(uow, ticket, actor, args.on, utcnow())
        return _done(app, uow, f"{'watching' if args.on else 'not watching'} {ticket.number}")


def ticket_merge(args: argparse.Namespace) -> int:
    with _work(args) as (app, uow):
        actor = admin_actor(uow, args.admin)
        tickets = [ticketing.load_ticket(uow, n, actor) for n in args.numbers]
        target = restructure.merge_tickets(uow, tickets, actor, utcnow())
        return _done(app, uow, target.number)


def ticket_split(args: argparse.Namespace) -> int:
    with _work(args) as (app, uow):
        actor = admin_actor(uow, args.admin)
        ticket = _ticket(uow, args, actor)
        new = restructure.split_ticket(
            uow,
            ticket,
            parse_ids(args.messages),
            actor,
            app.policy,
            utcnow(),
            args.department,
            args.priority,
            args.subject,
            args.notify,
        )
        return _done(app, uow, new.number)


def ticket_delete(args: argparse.Namespace) -> int:
    with _work(args) as (app, uow):
        actor = admin_actor(uow, args.admin)
        tickets = [ticketing.load_ticket(uow, n, actor) for n in args.numbers]
        for ticket in tickets:
            restructure.delete_ticket(uow, ticket, actor, utcnow(), args.block_sender)
        return _done(app, uow, f"deleted {len(tickets)} ticket(s)")


def ticket_delete_reply(args: argparse.Namespace) -> int:
    with _work(args) as (app, uow):
        actor = admin_actor(uow, args.admin)
        ticket = _ticket(uow, args, actor)
        whole = restructure.delete_reply(uow, ticket, args.message_id, actor, utcnow())
        return _done(app, uow, "ticket deleted" if whole else "reply deleted")


def ticket_edit_reply(args: argparse.Namespace) -> int:
    with _work(args) as (app, uow):
        actor = admin_actor(uow, args.admin)
        ticket = _ticket(uow, args, actor)
        restructure.edit_reply(uow, ticket, args.message_id, args.body, actor, utcnow())
        return _done(app, uow, "reply edited")


def ticket_rate(args: argparse.Namespace) -> int:
    with _work(args) as (app, uow):
        ticket = _ticket(uow, args, None)
        restructure.rate_reply(uow, ticket, args.message_id, args.rating)
        return _done(app, uow, f"rated {args.rating}")


def ticket_bill(args: argparse.Namespace) -> int:
    with _work(args) as (app, uow):
        actor = admin_actor(uow, args.admin)
        ticket = _ticket(uow, args, actor)
        item = restructure.add_billable_item(
            uow, ticket, actor, args.description, args.amount, args.invoice_action, utcnow()
        )
        return _done(app, uow, str(item.id))


def ticket_feedback(args: argparse.Namespace) -> int:
    app = ready_app(args)
    with app.uow() as uow:
        ticket = ticketing.load_ticket(uow, args.number)
        author = Actor(ticket.requester_email, ticket.requester_name)
        record_feedback(uow, ticket, author, args.score, args.comment, utcnow())
        app.finish(uow)
    print(f"feedback {args.score} recorded on {ticket.number}")
    return 0
