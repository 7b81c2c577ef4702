"""Shared fixtures: a configured App on a throwaway database, and service checks.

`TICKETD_TEST_DATABASE_URL` (a PostgreSQL server URL) runs every database test
on PostgreSQL, each in a database of its own; `TICKETD_TEST_POSTGRES_URL`
enables only the tests that need PostgreSQL itself (advisory locks, row locks
across processes); `TICKETD_REQUIRE_SERVICES=1` turns skips for missing
servers into failures.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
TICKETD = str(Path(sys.executable).parent / "ticketd")


def require_service(reason: str) -> None:
    """Skip for a missing server, or fail when CI demands every service."""
    if os.environ.get("TICKETD_REQUIRE_SERVICES") == "1":
        pytest.fail(f"required service missing: {reason}")
    pytest.skip(reason)


def _server_url() -> str | None:
    return os.environ.get("TICKETD_TEST_DATABASE_URL") or None


def _create_database(server_url: str, template: str | None = None) -> str:
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = f"ticketd_t_{uuid.uuid4().hex[:12]}"
    copy = f' TEMPLATE "{template}"' if template else ""
    engine = create_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"{copy}'))
    finally:
        engine.dispose()
    return make_url(server_url).set(database=name).render_as_string(hide_password=False)


_TEMPLATES: dict[str, str] = {}


def _migrated_template(server_url: str) -> str:
    """A database with the schema in place, created once per run and copied per test."""
    if server_url not in _TEMPLATES:
        import atexit

        from sqlalchemy.engine import make_url

        from storage import schema
        from storage.engine import make_engine

        url = _create_database(server_url)
        engine = make_engine(url)
        schema.upgrade(engine)
        engine.dispose()
        _TEMPLATES[server_url] = str(make_url(url).database)
        atexit.register(_drop_database, server_url, url)
    return _TEMPLATES[server_url]


def _drop_database(server_url: str, url: str) -> None:
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = make_url(url).database
    engine = create_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        engine.dispose()


@pytest.fixture
def database_url(tmp_path: Path) -> Iterator[str]:
    """SQLite in tmp_path, or a fresh PostgreSQL database when one is configured."""
    server = _server_url()
    if server is None:
        yield f"sqlite:///{tmp_path / 'var' / 'ticketd.sqlite3'}"
        return
    url = _create_database(server, _migrated_template(server))
    try:
        yield url
    finally:
        _drop_database(server, url)


@pytest.fixture
def another_database_url(tmp_path: Path) -> Iterator[str]:
    """A second database of the same kind as `database_url`, for comparing two runs."""
    server = _server_url()
    if server is None:
        yield f"sqlite:///{tmp_path / 'second' / 'var' / 'ticketd.sqlite3'}"
        return
    url = _create_database(server, _migrated_template(server))
    try:
        yield url
    finally:
        _drop_database(server, url)


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database; skips (or fails in CI) without a server."""
    server = os.environ.get("TICKETD_TEST_POSTGRES_URL") or _server_url()
    if server is None:
        require_service("PostgreSQL not configured (set TICKETD_TEST_POSTGRES_URL)")
    assert server is not None
    url = _create_database(server)
    try:
        yield url
    finally:
        _drop_database(server, url)


BASE_CONFIG = """\
data_dir = "var"
[database]
url = "{url}"
[smtp]
listen = "127.0.0.1:0"
max_sessions = 8
{smtp}
[outbound]
transport = "maildir"
maildir = "var/outbox"
[tickets]
close_inactive_hours = 72
rate_limit_count = 1000
[[departments]]
name = "Support"
email = "support@example.com"
members = ["alice", "bob"]
[[departments]]
name = "Sales"
email = "sales@example.com"
aliases = ["orders@example.com"]
members = ["carol"]
[[admins]]
username = "alice"
name = "Alice Admin"
email = "alice@example.com"
signature = "-- Alice, Support"
[[admins]]
username = "bob"
name = "Bob Admin"
email = "bob@example.com"
[[admins]]
username = "carol"
name = "Carol Sales"
email = "carol@example.com"
"""


def write_config(folder: Path, url: str, extra: str = "", smtp: str = "") -> Path:
    """A config file in `folder` for the standard test directory, plus `extra` TOML
    at the end and `smtp` keys in its [smtp] table."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "ticketd.toml"
    path.write_text(BASE_CONFIG.format(url=url, smtp=smtp) + extra, encoding="utf-8")
    return path


@pytest.fixture
def config_path(tmp_path: Path, database_url: str) -> Path:
    return write_config(tmp_path, database_url)


@pytest.fixture
def app(config_path: Path) -> Iterator[Any]:
    """An initialised App on the standard test config."""
    from mailgate.app import App
    from mailgate.settings import load_settings

    application = App(load_settings(config_path))
    application.init()
    yield application
    application.engine.dispose()


def run_cli(
    config: Path, *args: str, stdin: bytes | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the installed `ticketd` command against `config`."""
    return subprocess.run(
        [TICKETD, "--config", str(config), *args],
        input=stdin.decode("utf-8", "surrogateescape") if stdin is not None else None,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def run_pipe(config: Path, raw: bytes, *args: str) -> subprocess.CompletedProcess[bytes]:
    """`ticketd pipe` with raw bytes on stdin."""
    return subprocess.run(
        [TICKETD, "--config", str(config), "pipe", *args],
        input=raw,
        capture_output=True,
        timeout=60,
        check=False,
    )


def have(binary: str) -> bool:
    return shutil.which(binary) is not None


# --- notification fixtures ---


def make_app(tmp_path: Path, **overrides: Any) -> Any:
    """An initialised App on SQLite in `tmp_path`; keyword overrides replace settings.

    A dict replaces fields of that settings section (`outbound={"transport": "smtp"}`),
    anything else the top-level field.
    """
    from dataclasses import replace

    from mailgate.app import App
    from mailgate.settings import load_settings

    url = f"sqlite:///{tmp_path / 'var' / 'ticketd.sqlite3'}"
    settings = load_settings(write_config(tmp_path, url))
    for key, value in overrides.items():
        if isinstance(value, dict):
            value = replace(getattr(settings, key), **value)
        settings = replace(settings, **{key: value})
    application = App(settings)
    application.init()
    return application


class Sink:
    """An aiosmtpd handler that keeps every envelope; `refuse` maps addresses to replies."""

    def __init__(self) -> None:
        import threading

        self.envelopes: list[tuple[str, tuple[str, ...], bytes]] = []
        self.refuse: dict[str, str] = {}
        self.lock = threading.Lock()

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        if address.lower() in self.refuse:
            return self.refuse[address.lower()]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        data = envelope.original_content or envelope.content
        with self.lock:
            self.envelopes.append((envelope.mail_from, tuple(envelope.rcpt_tos), bytes(data)))
        return "250 Message accepted"

    def take(self) -> list[tuple[str, tuple[str, ...], bytes]]:
        with self.lock:
            taken, self.envelopes = self.envelopes, []
        return taken


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def sink() -> Iterator[Any]:
    """A running aiosmtpd sink on loopback; `.port` and `.handler` (a Sink)."""
    from aiosmtpd.controller import Controller

    handler = Sink()
    controller = Controller(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    controller.handler_obj = handler
    yield controller
    controller.stop()


@pytest.fixture
def smtp_app(tmp_path: Path, sink: Any) -> Iterator[Any]:
    """An App whose notifications go over SMTP to the sink."""
    application = make_app(
        tmp_path, outbound={"transport": "smtp", "smtp_host": "127.0.0.1", "smtp_port": sink.port}
    )
    yield application
    application.engine.dispose()


@pytest.fixture
def app_maker(tmp_path: Path) -> Iterator[Any]:
    """`make_app` bound to this test's tmp_path; every app made is disposed after."""
    made: list[Any] = []

    def build(**overrides: Any) -> Any:
        made.append(make_app(tmp_path, **overrides))
        return made[-1]

    yield build
    for application in made:
        application.engine.dispose()


class Daemon:
    """`ticketd serve` as a subprocess on a free SMTP port of its own."""

    def __init__(self, folder: Path, url: str, extra: str = "", smtp: str = "") -> None:
        self.folder = folder
        self.port = free_port()
        self.config = write_config(folder, url, extra, smtp)
        text = self.config.read_text(encoding="utf-8")
        self.config.write_text(
            text.replace('listen = "127.0.0.1:0"', f'listen = "127.0.0.1:{self.port}"'),
            encoding="utf-8",
        )
        self.starts = 0
        self.start()

    def start(self, wait: bool = True) -> None:
        """Start (or restart) the daemon and wait until it listens."""
        import time

        self.starts += 1
        log_path = self.folder / f"serve{self.starts}.log"
        self.log = log_path.open("wb")
        self.process = subprocess.Popen(
            [TICKETD, "--config", str(self.config), "serve"],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while wait and not self.listening():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(log_path.read_text(errors="replace"))
            time.sleep(0.05)

    def listening(self) -> bool:
        import socket

        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
        except OSError:
            return False
        return True

    def stop(self) -> int:
        import signal

        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()
        return int(self.process.returncode)

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()
        self.log.close()


@pytest.fixture
def daemon(tmp_path: Path, database_url: str) -> Iterator[Daemon]:
    running = Daemon(tmp_path, database_url)
    yield running
    running.stop()


# --- dovecot fixture ---
@pytest.fixture(scope="session")
def dovecot_server() -> Iterator[Any]:
    """One Dovecot for the session (tests/dovecot.py); skips when it is not installed."""
    from dovecot import Dovecot, binary

    if binary() is None:
        require_service("dovecot not installed (apt-get install dovecot-imapd)")
    server = Dovecot().start()
    yield server
    server.stop()


@pytest.fixture
def imap_account(dovecot_server: Any) -> Any:
    """A fresh, empty IMAP account on the session's Dovecot."""
    return dovecot_server.add_user()


# --- end dovecot fixture ---
