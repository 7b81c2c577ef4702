"""The SMTP spool: durable before 250, imported once by whichever process gets it,
drained by any command that reads, recovered after a crash."""

from __future__ import annotations

import fcntl
import json
import os
import smtplib
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import TICKETD, Daemon, run_cli, write_config
from test_smtp import Running

from core.intake import Envelope
from mailgate.spool import Spool

SMTP_IN = Envelope("smtp", "dana@client.test", ("support@example.com",))
SPOOL = "spool = true"


@pytest.fixture
def config_path(tmp_path: Path, database_url: str) -> Path:
    """The standard test config with the spool on (the `app` fixture is built on it)."""
    return write_config(tmp_path, database_url, smtp=SPOOL)


@pytest.fixture
def daemon(tmp_path: Path, database_url: str) -> Iterator[Daemon]:
    running = Daemon(tmp_path, database_url, smtp=SPOOL)
    yield running
    running.stop()


def _mail(n: int) -> bytes:
    return (
        f"From: Dana Client <dana@client.test>\r\nTo: support@example.com\r\n"
        f"Subject: Spooled {n}\r\nMessage-ID: <spooled-{n}@client.test>\r\n\r\nBody {n}\r\n"
    ).encode()


def _spool(app: Any) -> Spool:
    return Spool(app.settings.data_dir)


def _wait_until_imported(app: Any) -> None:
    """Until the daemon's worker has emptied the spool (at most 30 s)."""
    deadline = time.monotonic() + 30
    while _spool(app).pending() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _spool(app).pending() == []


def _imports(config: Path) -> list[dict[str, Any]]:
    done = run_cli(config, "importlog", "list", "--json")
    assert done.returncode == 0, done.stderr
    entries: list[dict[str, Any]] = json.loads(done.stdout)
    return entries


def test_a_command_right_after_the_250_sees_the_message(app: Any, config_path: Path) -> None:
    _spool(app).put(_mail(1), SMTP_IN)
    done = run_cli(config_path, "ticket", "list", "--json")
    assert done.returncode == 0, done.stderr
    assert [t["subject"] for t in json.loads(done.stdout)] == ["Spooled 1"]
    assert _spool(app).pending() == []


def test_two_processes_draining_at_once_import_each_message_once(
    app: Any, config_path: Path
) -> None:
    spool = _spool(app)
    for n in range(40):
        spool.put(_mail(n), SMTP_IN)
    command = [TICKETD, "--config", str(config_path), "importlog", "list", "--json"]
    readers = [subprocess.Popen(command, stdout=subprocess.PIPE) for _ in range(2)]
    for reader in readers:
        reader.communicate(timeout=120)
        assert reader.returncode == 0
    entries = _imports(config_path)
    assert sorted(e["subject"] for e in entries) == sorted(f"Spooled {n}" for n in range(40))
    assert {e["outcome"] for e in entries} == {"new_ticket"}


def test_a_file_another_process_holds_is_left_to_it(app: Any) -> None:
    spool = _spool(app)
    spool.put(_mail(1), SMTP_IN)
    [path] = spool.pending()
    with path.open("rb") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        assert spool.drain(app, wait_seconds=0) == 0
        assert spool.pending() == [path]
    assert spool.drain(app) == 1
    assert spool.pending() == []


def test_interrupted_writes_are_recovered_or_removed(app: Any) -> None:
    spool = _spool(app)
    spool.put(_mail(1), SMTP_IN)
    [done] = spool.pending()
    os.replace(done, spool.tmp / done.name)  # fsynced, but the rename was lost
    partial = spool.tmp / "partial"
    partial.write_bytes(b'{"size": 999}\nFrom: cut')
    old = time.time() - 3600
    os.utime(partial, (old, old))
    spool.sweep()
    assert [p.name for p in spool.pending()] == [done.name]
    assert list(spool.tmp.iterdir()) == []


def test_an_unreadable_spool_file_lands_in_the_import_log(app: Any, config_path: Path) -> None:
    spool = _spool(app)
    spool.put(_mail(1), SMTP_IN)
    [path] = spool.pending()
    path.write_bytes(b"\x00not an envelope line\nSubject: x\r\n\r\nbody\r\n")
    [entry] = _imports(config_path)
    assert entry["outcome"] == "blocked"
    assert spool.pending() == []


def test_a_full_spool_answers_451(app: Any) -> None:
    running = Running(app)
    try:
        importer = running.listener.handler.spool
        assert importer is not None
        importer.backlog = app.settings.smtp.spool_max_messages
        with smtplib.SMTP("127.0.0.1", running.port, timeout=30) as client:
            try:
                client.sendmail("dana@client.test", ["support@example.com"], _mail(1))
                raise AssertionError("accepted into a full spool")
            except smtplib.SMTPDataError as refused:
                assert refused.smtp_code == 451
    finally:
        running.stop()
    assert _spool(app).pending() == []


def test_the_daemon_imports_what_it_spooled(app: Any) -> None:
    running = Running(app)
    try:
        with smtplib.SMTP("127.0.0.1", running.port, timeout=30) as client:
            for n in range(5):
                reply = client.sendmail("dana@client.test", ["support@example.com"], _mail(n))
                assert reply == {}
        _wait_until_imported(app)
    finally:
        running.stop()
    with app.uow() as uow:
        assert len(uow.tickets()) == 5


def test_a_dead_worker_is_replaced_and_its_mail_imported(app: Any) -> None:
    running = Running(app)
    try:
        importer = running.listener.handler.spool
        assert importer is not None and importer._process is not None
        first = importer._process
        first.kill()
        first.join(10)
        with smtplib.SMTP("127.0.0.1", running.port, timeout=30) as client:
            assert client.sendmail("dana@client.test", ["support@example.com"], _mail(1)) == {}
        assert importer._process is not first and importer._process.is_alive()
        _wait_until_imported(app)
    finally:
        running.stop()


def test_the_worker_leaves_when_the_daemon_is_killed(daemon: Any) -> None:
    children = [pid for pid in _pids() if _parent(pid) == str(daemon.process.pid)]
    assert children, "the daemon runs its spool worker as a child process"
    daemon.kill()
    deadline = time.monotonic() + 15
    while any(_running(pid) for pid in children):
        assert time.monotonic() < deadline, "the spool worker outlived the daemon"
        time.sleep(0.05)


def _running(pid: str) -> bool:
    """Alive and not a zombie waiting for whoever adopted it to reap it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def _pids() -> list[str]:
    return [entry.name for entry in Path("/proc").iterdir() if entry.name.isdigit()]


def _parent(pid: str) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[1]
    except (OSError, IndexError):
        return None
