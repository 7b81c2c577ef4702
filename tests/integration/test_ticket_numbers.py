"""Ticket numbers: the configured mask through `ticketd ticket open`, uniqueness when
many processes open tickets at once, and no number ever issued twice."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO, run_cli, write_config
from sqlalchemy import select

from mailgate.app import App
from mailgate.settings import load_settings
from storage import tables


def _config(folder: Path, url: str, mask: str) -> Path:
    path = write_config(folder, url)
    text = path.read_text(encoding="utf-8")
    marker = "rate_limit_count = 1000\n"
    path.write_text(text.replace(marker, f'{marker}number_mask = "{mask}"\n'), encoding="utf-8")
    return path


def _open(config: Path) -> subprocess.CompletedProcess[str]:
    command = "--department support@example.com --from dana@client.test --subject Hi --body Please"
    return run_cli(config, "ticket", "open", *command.split())


def _issued(app: App) -> set[str]:
    with app.engine.connect() as connection:
        return set(connection.scalars(select(tables.issued_numbers.c.number)))


def test_mask_shapes_through_ticket_open(tmp_path: Path, database_url: str) -> None:
    config = _config(tmp_path, database_url, "T-%y%m-%A%n%n")
    app = App(load_settings(config))
    app.init()
    app.engine.dispose()
    before = datetime.now(UTC).strftime("%y%m")
    result = _open(config)
    after = datetime.now(UTC).strftime("%y%m")
    assert result.returncode == 0, result.stderr
    number = result.stdout.strip()
    match = re.fullmatch(r"T-(\d{4})-[A-Z]\d\d", number)
    assert match, number
    assert match.group(1) in (before, after)
    shown = run_cli(config, "ticket", "show", f"#{number}", "--json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["number"] == number


def test_a_deleted_tickets_number_is_never_reused(tmp_path: Path, database_url: str) -> None:
    config = _config(tmp_path, database_url, "%n")
    app = App(load_settings(config))
    try:
        app.init()
        opened = _open(config)
        assert opened.returncode == 0, opened.stderr
        number = opened.stdout.strip()
        deleted = run_cli(config, "ticket", "delete", number)
        assert deleted.returncode == 0, deleted.stderr
        assert _issued(app) == {number}
        others = [str(d) for d in range(10) if str(d) != number]
        with app.engine.begin() as connection:
            connection.execute(tables.issued_numbers.insert(), [{"number": n} for n in others])
        # Only the deleted ticket's number looks free; it must not come back.
        refused = _open(config)
        assert refused.returncode == 1, refused
        assert refused.stderr.startswith("ticketd: no free ticket number")
        assert len(refused.stderr.splitlines()) == 1
        with app.engine.connect() as connection:
            assert list(connection.execute(select(tables.tickets.c.number))) == []
    finally:
        app.engine.dispose()


def test_a_number_is_issued_once_per_transaction_and_the_transaction_goes_on(
    app: App,
) -> None:
    with app.uow() as uow:
        assert uow.try_issue_number("000001") is True
        assert uow.try_issue_number("000001") is False
        assert uow.try_issue_number("000002") is True
        uow.commit()
    assert _issued(app) == {"000001", "000002"}


def test_a_number_taken_by_a_concurrent_transaction_is_refused(postgres_url: str) -> None:
    """The race the unique index settles: checked free, then committed by someone else."""
    from storage.blobs import BlobStore
    from storage.engine import make_engine
    from storage.schema import upgrade
    from storage.uow import SqlUnitOfWork

    engine = make_engine(postgres_url)
    try:
        upgrade(engine)
        blobs = BlobStore(Path("/nonexistent"))
        with SqlUnitOfWork(engine, blobs) as first, SqlUnitOfWork(engine, blobs) as second:
            assert first.try_issue_number("424242")
            assert not second.number_issued("424242")  # not committed yet: looks free
            first.commit()
            assert second.try_issue_number("424242") is False
            assert second.try_issue_number("424243") is True  # the transaction survived
            second.commit()
        with engine.connect() as connection:
            issued = set(connection.scalars(select(tables.issued_numbers.c.number)))
        assert issued == {"424242", "424243"}
    finally:
        engine.dispose()


WORKER = """
import json, sys, time
from pathlib import Path
from core.actors import Actor
from core.ticketing import NewTicket, open_ticket
from mailgate.app import App, utcnow
from mailgate.settings import load_settings

config, count, go = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
app = App(load_settings(Path(config)))
policy = app.policy
with app.uow() as uow:
    uow.user_by_email("warm-up@client.test")
print("ready", flush=True)
while not go.exists():
    time.sleep(0.005)
numbers = []
for i in range(count):
    request = NewTicket("support@example.com", f"c{i}@client.test", "C", f"load {i}", "body")
    with app.uow() as uow:
        ticket = open_ticket(uow, request, Actor(request.requester_email, "C"), policy, utcnow())
        uow.commit()
    numbers.append(ticket.number)
print(json.dumps(numbers))
"""


@pytest.mark.slow
def test_concurrent_processes_get_unique_numbers(tmp_path: Path, postgres_url: str) -> None:
    # 80 tickets from 100 numbers: draws of the same free number at once are common.
    processes, each = 8, 10
    config = _config(tmp_path, postgres_url, "%n%n")
    app = App(load_settings(config))
    try:
        app.init()
        go = tmp_path / "go"
        workers = [
            subprocess.Popen(
                [sys.executable, "-c", WORKER, str(config), str(each), str(go)],
                cwd=REPO,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(processes)
        ]
        for worker in workers:  # every process connected and waiting: start them at once
            assert worker.stdout is not None
            assert worker.stdout.readline() == "ready\n", worker.communicate()[1]
        go.touch()
        results: list[Any] = [w.communicate(timeout=120) for w in workers]
        for worker, (_out, err) in zip(workers, results, strict=True):
            assert worker.returncode == 0, err
        numbers = [n for out, _ in results for n in json.loads(out)]
        assert len(numbers) == processes * each
        assert len(set(numbers)) == len(numbers)
        assert all(re.fullmatch(r"\d{2}", n) for n in numbers)
        assert _issued(app) == set(numbers)
        with app.engine.connect() as connection:
            stored = list(connection.scalars(select(tables.tickets.c.number)))
        assert sorted(stored) == sorted(numbers)
    finally:
        app.engine.dispose()
