"""`ticketd serve` as ops run it: SIGHUP reloads the config, SIGTERM stops cleanly."""

from __future__ import annotations

import json
import signal
import smtplib
import time
from pathlib import Path

from conftest import Daemon, run_cli

from mailgate.settings import load_settings
from mailgate.spool import Spool

BILLING_MAIL = (
    b"From: dana@client.test\r\nTo: billing@example.com\r\nSubject: Invoice\r\n"
    b"Message-ID: <invoice-1@client.test>\r\n\r\nWrong amount.\r\n"
)


def _rcpt(port: int, address: str) -> int:
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.ehlo()
        client.mail("dana@client.test")
        return int(client.rcpt(address)[0])


def test_sighup_reloads_departments_and_sigterm_exits_zero(
    tmp_path: Path, database_url: str
) -> None:
    daemon = Daemon(tmp_path, database_url, smtp="spool = true")
    try:
        assert _rcpt(daemon.port, "billing@example.com") == 550
        text = daemon.config.read_text(encoding="utf-8")
        daemon.config.write_text(
            text + '[[departments]]\nname = "Billing"\nemail = "billing@example.com"\n'
            'members = ["alice"]\n',
            encoding="utf-8",
        )
        daemon.process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 15
        while _rcpt(daemon.port, "billing@example.com") != 250:
            assert time.monotonic() < deadline, "config was not reloaded"
            time.sleep(0.1)
        with smtplib.SMTP("127.0.0.1", daemon.port, timeout=30) as client:
            client.sendmail("dana@client.test", ["billing@example.com"], BILLING_MAIL)
        spool = Spool(load_settings(daemon.config).data_dir)
        while spool.pending():  # imported by the spool worker, not by the command below
            assert time.monotonic() < deadline + 15, "the spool was not imported"
            time.sleep(0.05)
        listed = run_cli(daemon.config, "ticket", "list", "--json")
        assert [t["department"] for t in json.loads(listed.stdout)] == ["billing@example.com"]
        daemon.config.write_text("not = [valid", encoding="utf-8")
        daemon.process.send_signal(signal.SIGHUP)
        time.sleep(0.5)
        assert _rcpt(daemon.port, "billing@example.com") == 250
    finally:
        assert daemon.stop() == 0
