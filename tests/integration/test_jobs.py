"""`ticketd run-jobs`, `kb`, `report` and `ticket feedback`, driven as real subprocesses
on a SQLite database in tmp_path; plus the daemon's scheduler part, in-process."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from mailgate.app import App
from mailgate.jobs import run_scheduler
from mailgate.settings import load_settings

TICKETD = str(Path(sys.executable).with_name("ticketd"))
ESCALATION = """
[[escalations]]
name = "stale-open"
statuses = ["Open"]
idle_minutes = 60
set_priority = "High"
flag_to = "alice"
note = "Escalated: @alice please look"
"""


def write_config(folder: Path, name: str = "ticketd.toml", extra: str = "") -> Path:
    path = folder / name
    path.write_text(
        f"""
data_dir = "var"
{extra}
[database]
url = "sqlite:///var/ticketd.sqlite3"
[outbound]
maildir = "var/outbox"
[[departments]]
name = "Support"
email = "support@example.com"
members = ["alice"]
[[departments]]
name = "Sales"
email = "sales@example.com"
members = ["alice"]
feedback_requests = false
[[admins]]
username = "alice"
name = "Alice Admin"
email = "alice@example.com"
""",
        encoding="utf-8",
    )
    return path


class Cli:
    def __init__(self, config: Path) -> None:
        self.config = config

    def run(self, *args: str, code: int = 0) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [TICKETD, "--config", str(self.config), *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == code, done.stderr
        return done

    def out(self, *args: str) -> str:
        return self.run(*args).stdout.strip()

    def json(self, *args: str) -> Any:
        return json.loads(self.run(*args, "--json").stdout)

    def open(self, department: str, subject: str) -> str:
        return self.out(
            "ticket", "open", "--department", department, "--from", "bob@client.example",
            "--subject", subject, "--body", "help",
        )  # fmt: skip


def later(hours: float) -> str:
    """A naive ISO time (so: UTC) `hours` from now."""
    return (datetime.now(UTC) + timedelta(hours=hours)).replace(tzinfo=None).isoformat()


def actions(document: dict[str, Any], action: str) -> list[dict[str, Any]]:
    return [e for e in document["log"] if e["action"] == action]


def test_auto_close_escalation_and_feedback_requests(tmp_path: Path) -> None:
    cli = Cli(write_config(tmp_path, extra=""))
    cli.config.write_text(cli.config.read_text() + ESCALATION)
    cli.run("init")
    answered = cli.open("support@example.com", "Printer")
    still_open = cli.open("support@example.com", "Scanner")
    sales = cli.open("sales@example.com", "Quote")
    for number in (answered, sales):
        cli.run("ticket", "reply", number, "--admin", "alice", "--body", "Try this.")

    disabled = Cli(write_config(tmp_path, "off.toml", "[tickets]\nclose_inactive_hours = 0"))
    assert disabled.out("run-jobs", "--once", "--now", later(100)) == ""

    lines = cli.out("run-jobs", "--once", "--now", later(73)).splitlines()
    assert lines == [  # Sales asks for no feedback
        f"{still_open}: escalation 'stale-open': priority -> High, flag -> alice, note added",
        f"{answered}: auto-closed after 73 h without activity",
        f"{sales}: auto-closed after 73 h without activity",
        f"{answered}: feedback requested from bob@client.example",
    ]
    assert cli.out("run-jobs", "--once", "--now", later(74)) == ""

    closed = cli.json("ticket", "show", answered)
    assert closed["status"] == "Closed"
    assert len(actions(closed, "auto-closed")) == 1
    assert len(actions(closed, "feedback requested")) == 1
    escalated = cli.json("ticket", "show", still_open)
    assert (escalated["status"], escalated["priority"]) == ("Open", "High")
    assert escalated["flagged_to"] == "alice"
    assert [e["detail"] for e in actions(escalated, "escalation")] == ["stale-open"]
    assert escalated["messages"][-1]["kind"] == "note"


def test_knowledgebase_feedback_and_ratings(tmp_path: Path) -> None:
    cli = Cli(write_config(tmp_path))
    cli.run("init")
    body = tmp_path / "article.md"
    body.write_text("Unplug the printer, wait ten seconds.\n", encoding="utf-8")
    article = cli.out(
        "kb", "add", "--title", "Printer offline", "--body-file", str(body),
        "--tag", "Printer", "--tag", "hardware",
    )  # fmt: skip
    listed = cli.json("kb", "list")
    assert listed == [
        {
            "id": int(article),
            "title": "Printer offline",
            "tags": ["printer", "hardware"],
            "body": "Unplug the printer, wait ten seconds.\n",
        }
    ]
    cli.run("kb", "remove", article)
    assert cli.json("kb", "list") == []

    number = cli.open("support@example.com", "Printer")
    reply = cli.out(
        "ticket", "reply", number, "--admin", "alice", "--body", "Done.", "--status", "Closed"
    )
    cli.run("ticket", "rate", number, reply, "4")
    cli.run("ticket", "feedback", number, "--score", "9", "--comment", "Quick, thanks")
    ratings = cli.json("report", "ratings")
    assert ratings["overall"] == {"count": 1, "average": 4.0}
    assert ratings["by_admin"] == [{"admin": "alice", "count": 1, "average": 4.0}]
    assert ratings["by_department"] == [
        {"department": "support@example.com", "count": 1, "average": 4.0}
    ]
    feedback = cli.json("report", "feedback")
    assert feedback["by_admin"] == [{"admin": "alice", "count": 1, "average": 9.0}]
    assert [(c["ticket"], c["score"], c["comment"]) for c in feedback["comments"]] == [
        (number, 9, "Quick, thanks")
    ]

    bad = cli.run("run-jobs", "--once", "--now", "next tuesday", code=2)
    assert bad.stderr.startswith("ticketd: ")
    assert len(bad.stderr.splitlines()) == 1


def test_scheduler_runs_a_pass_and_returns_when_stopped(tmp_path: Path) -> None:
    app = App(load_settings(write_config(tmp_path, extra="")))
    app.init()

    async def main() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(run_scheduler(app, stop))
        await asyncio.sleep(0.2)
        stop.set()
        await asyncio.wait_for(task, 5)

    asyncio.run(main())
    app.engine.dispose()
