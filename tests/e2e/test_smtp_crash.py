"""kill -9 of `ticketd serve` during a burst from 4 SMTP clients that retry on 4xx:
every message that got 250 is present exactly once afterwards."""

from __future__ import annotations

import smtplib
import threading
import time
from pathlib import Path

import pytest
from conftest import Daemon

CLIENTS = 4
PER_CLIENT = 250


def _message(client: int, n: int) -> bytes:
    return (
        f"From: sender{client}@client.test\r\nTo: support@example.com\r\n"
        f"Subject: burst {client}-{n}\r\nMessage-ID: <burst-{client}-{n}@client.test>\r\n\r\n"
        f"message {n} from client {client}\r\n"
    ).encode()


def _send_all(port: int, client: int, accepted: list[str], stop: threading.Event) -> None:
    """Send each message until it gets 250, reconnecting after any failure."""
    n = 0
    connection: smtplib.SMTP | None = None
    deadline = time.monotonic() + 240
    while n < PER_CLIENT and time.monotonic() < deadline and not stop.is_set():
        try:
            if connection is None:
                connection = smtplib.SMTP("127.0.0.1", port, timeout=30)
            connection.sendmail(
                f"sender{client}@client.test", ["support@example.com"], _message(client, n)
            )
            accepted.append(f"burst-{client}-{n}@client.test")
            n += 1
        except (OSError, smtplib.SMTPException):
            if connection is not None:
                try:
                    connection.close()
                except OSError:
                    pass
            connection = None
            time.sleep(0.05)
    if connection is not None:
        try:
            connection.quit()
        except (OSError, smtplib.SMTPException):
            pass


@pytest.mark.slow
@pytest.mark.parametrize("smtp", ["", "spool = true"], ids=["import-before-250", "spool"])
def test_kill_9_during_burst_loses_and_duplicates_nothing(
    tmp_path: Path, database_url: str, smtp: str
) -> None:
    daemon = Daemon(tmp_path, database_url, smtp=smtp)
    accepted: list[list[str]] = [[] for _ in range(CLIENTS)]
    stop = threading.Event()
    threads = [
        threading.Thread(target=_send_all, args=(daemon.port, i, accepted[i], stop))
        for i in range(CLIENTS)
    ]
    for thread in threads:
        thread.start()
    while sum(map(len, accepted)) < CLIENTS * PER_CLIENT // 3:
        time.sleep(0.02)
    daemon.kill()
    daemon.start(wait=False)
    try:
        for thread in threads:
            thread.join(300)
    finally:
        stop.set()
        daemon.stop()
    got = [mid for per_client in accepted for mid in per_client]
    assert len(got) == CLIENTS * PER_CLIENT
    from mailgate.app import App
    from mailgate.settings import load_settings
    from mailgate.spool import Spool

    app = App(load_settings(daemon.config))
    Spool(app.settings.data_dir).drain(app, wait_seconds=60)  # as a reading command does
    with app.uow() as uow:
        stored = [m.mail_message_id for t in uow.tickets() for m in t.messages if m.mail_message_id]
    app.engine.dispose()
    assert sorted(stored) == sorted(got)
