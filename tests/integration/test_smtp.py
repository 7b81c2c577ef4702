"""The SMTP listener with a real smtplib client over loopback."""

from __future__ import annotations

import asyncio
import smtplib
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from core.intake import Envelope
from core.views import ticket_document
from mailgate.accept import accept_message
from mailgate.smtp import Listener, start_listener
from mailgate.spool import Spool

MESSAGE = (
    b"From: Dana Client <dana@client.test>\r\n"
    b"To: support@example.com\r\n"
    b"Subject: Printer on fire\r\n"
    b"Message-ID: <fire-1@client.test>\r\n"
    b"\r\n"
    b"Please help, the printer is on fire.\r\n"
)


class Running:
    """A listener on its own event loop in a thread, as the daemon runs it."""

    def __init__(self, app: Any) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        future = asyncio.run_coroutine_threadsafe(start_listener(app, "127.0.0.1", 0), self.loop)
        self.listener: Listener = future.result(10)

    @property
    def port(self) -> int:
        return self.listener.port

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.listener.close(), self.loop).result(40)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture
def server(app: Any) -> Iterator[Running]:
    running = Running(app)
    yield running
    running.stop()


def _client(server: Running) -> smtplib.SMTP:
    return smtplib.SMTP("127.0.0.1", server.port, timeout=30)


def _tickets(app: Any) -> list[dict[str, Any]]:
    """The tickets once every acknowledged message is imported, as a command sees them."""
    Spool(app.settings.data_dir).drain(app, wait_seconds=30)
    with app.uow() as uow:
        return [ticket_document(uow, t) for t in uow.tickets()]


def test_message_to_department_becomes_ticket_after_250(app: Any, server: Running) -> None:
    with _client(server) as client:
        refused = client.sendmail("dana@client.test", ["support@example.com"], MESSAGE)
    assert refused == {}
    [ticket] = _tickets(app)
    assert ticket["subject"] == "Printer on fire"
    assert ticket["requester"]["email"] == "dana@client.test"
    assert ticket["department"] == "support@example.com"


def test_unknown_recipient_refused_at_rcpt(server: Running) -> None:
    with _client(server) as client:
        client.ehlo()
        client.mail("dana@client.test")
        code, text = client.rcpt("nobody@example.com")
    assert code == 550
    assert text.startswith(b"5.1.1")


def test_alias_and_reply_token_addresses_accepted(server: Running) -> None:
    with _client(server) as client:
        client.ehlo()
        client.mail("dana@client.test")
        assert client.rcpt("orders@example.com")[0] == 250
        assert client.rcpt("support+abcdefghijklmnopqrstuvw@example.com")[0] == 250


def test_size_refused_at_mail_and_in_data(app: Any, server: Running) -> None:
    limit = app.settings.smtp.max_message_bytes
    with _client(server) as client:
        client.ehlo()
        assert client.has_extn("size")
        code, text = client.mail("dana@client.test", [f"SIZE={limit + 1}"])
        assert (code, text[:5]) == (552, b"5.3.4")
    big = MESSAGE + b"x" * 76 + b"\r\n"
    big = big * (limit // len(big) + 2)
    with _client(server) as client:
        client.ehlo()
        client.mail("dana@client.test")
        client.rcpt("support@example.com")
        code, text = client.data(big)
    assert (code, text[:5]) == (552, b"5.3.4")
    assert _tickets(app) == []


def test_long_lines_accepted(app: Any, server: Running) -> None:
    body = b"A" * 50_000
    with _client(server) as client:
        client.sendmail("dana@client.test", ["support@example.com"], MESSAGE + body + b"\r\n")
    [ticket] = _tickets(app)
    assert "A" * 1000 in ticket["messages"][0]["body"]


def test_database_unavailable_answers_451_then_delivers(app: Any, server: Running) -> None:
    if app.engine.dialect.name != "sqlite":
        pytest.skip("locks the SQLite file to simulate an unavailable database")
    import sqlite3

    path = app.engine.url.database
    blocker = sqlite3.connect(path, timeout=1)
    blocker.execute("BEGIN EXCLUSIVE")
    app.engine.dispose()
    original = app.settings.database.busy_timeout_ms
    object.__setattr__(app.settings.database, "busy_timeout_ms", 200)
    app.__dict__.pop("engine", None)
    try:
        with _client(server) as client:
            with pytest.raises(smtplib.SMTPDataError) as failed:
                client.sendmail("dana@client.test", ["support@example.com"], MESSAGE)
        assert failed.value.smtp_code == 451
    finally:
        blocker.rollback()
        blocker.close()
        object.__setattr__(app.settings.database, "busy_timeout_ms", original)
    with _client(server) as client:
        assert client.sendmail("dana@client.test", ["support@example.com"], MESSAGE) == {}
    assert len(_tickets(app)) == 1


def test_same_message_by_pipe_and_smtp_imports_once(app: Any, server: Running) -> None:
    first = accept_message(app, MESSAGE, Envelope("pipe", None, ("support@example.com",)))
    with _client(server) as client:
        client.sendmail("dana@client.test", ["support@example.com"], MESSAGE)
    assert first.outcome == "new_ticket"
    assert len(_tickets(app)) == 1
    with app.uow() as uow:
        reasons = [r.reason for r in uow.import_records()]
    assert reasons == ["duplicate", None]


def test_session_cap_refuses_extra_connections(app: Any, server: Running) -> None:
    cap = app.settings.smtp.max_sessions
    clients = [_client(server) for _ in range(cap)]
    try:
        with pytest.raises(smtplib.SMTPConnectError) as refused:
            _client(server)
        assert refused.value.smtp_code == 421
    finally:
        for client in clients:
            client.close()
