"""The knowledgebase, report and client-feedback commands: thin calls into core.

`kb add/list/remove`, `report feedback/ratings`, and `ticket feedback`, which
records a client's overall score of a closed ticket.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from core import knowledgebase, reports
from core.errors import UsageError
from mailgate.commands import emit_json, emit_table, ready_app

Command = Callable[..., argparse.ArgumentParser]


def add_report_commands(sub: Any, cmd: Command) -> None:
    """Register `kb` and `report`."""
    parser_class = type(sub.choices["ticket"])
    kb = sub.add_parser("kb", help="knowledgebase articles").add_subparsers(
        dest="kb_command", required=True, parser_class=parser_class
    )
    p = cmd(kb, "add", kb_add, "add an article suggested on new tickets; prints its id")
    p.add_argument("--title", required=True)
    p.add_argument("--body-file", required=True, metavar="FILE", help="the body; - for stdin")
    p.add_argument("--tag", action="append", default=[], help="repeat for several")
    cmd(kb, "list", kb_list, "list the articles", json_output=True)
    cmd(kb, "remove", kb_remove, "remove an article").add_argument("id", type=int)
    report = sub.add_parser("report", help="feedback and rating reports").add_subparsers(
        dest="report_command", required=True, parser_class=parser_class
    )
    cmd(report, "feedback", report_feedback, "feedback scores per admin and department", True)
    cmd(report, "ratings", report_ratings, "reply ratings per admin and department", True)


def kb_add(args: argparse.Namespace) -> int:
    body = _read_body(args.body_file)
    app = ready_app(args)
    with app.uow() as uow:
        article = knowledgebase.add_article(uow, args.title, body, args.tag)
        uow.commit()
    print(article.id)
    return 0


def _read_body(name: str) -> str:
    if name == "-":
        return sys.stdin.read()
    try:
        return Path(name).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise UsageError(f"--body-file: cannot read {name}: {err}") from err


def kb_list(args: argparse.Namespace) -> int:
    with ready_app(args).uow() as uow:
        rows = [(a.id, a.title, knowledgebase.article_tags(a), a.body) for a in uow.kb_articles()]
    if args.json:
        emit_json([{"id": i, "title": t, "tags": tags, "body": b} for i, t, tags, b in rows])
    else:
        emit_table(("ID", "TITLE", "TAGS"), [(i, t, ", ".join(tags)) for i, t, tags, _ in rows])
    return 0


def kb_remove(args: argparse.Namespace) -> int:
    app = ready_app(args)
    with app.uow() as uow:
        knowledgebase.remove_article(uow, args.id)
        uow.commit()
    print(f"removed {args.id}")
    return 0


def report_feedback(args: argparse.Namespace) -> int:
    with ready_app(args).uow() as uow:
        report = reports.feedback_report(uow)
    if args.json:
        emit_json(reports.report_document(report, comments=True))
        return 0
    _print_report(report, "feedback scores (1-10)")
    if report.comments:
        sys.stdout.write("\n")
        emit_table(
            ("TICKET", "SCORE", "DATE", "COMMENT"),
            [
                (c.ticket, c.score, c.created_at.isoformat()[:10], c.comment)
                for c in report.comments
            ],
        )
    return 0


def report_ratings(args: argparse.Namespace) -> int:
    with ready_app(args).uow() as uow:
        report = reports.ratings_report(uow)
    if args.json:
        emit_json(reports.report_document(report))
    else:
        _print_report(report, "reply ratings (1-5)")
    return 0


def _print_report(report: reports.Report, title: str) -> None:
    overall = report.overall
    sys.stdout.write(f"{title}: {overall.count}, average {overall.average:.2f}\n\n")
    for heading, scores in (("ADMIN", report.by_admin), ("DEPARTMENT", report.by_department)):
        emit_table(
            (heading, "COUNT", "AVERAGE"), [(s.name, s.count, f"{s.average:.2f}") for s in scores]
        )
        sys.stdout.write("\n")
