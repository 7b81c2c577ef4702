"""IMAP import throughput: `ticketd poll --once` against plain fetching.

Starts a throwaway Dovecot (tests/dovecot.py), appends N corpus-like messages
(the shared corpus cycled, each given a unique Message-ID), then measures:

  fetch     stdlib imaplib, one `UID FETCH 1:* (BODY.PEEK[])`, bodies discarded
  poll      `poll --once` in-process: list, fetch in batches, import, flag \\Seen
  pipeline  the same bytes through `accept_message` into a fresh database
            (the intake's own ceiling, no IMAP)

and prints messages/second for each with the ratios poll/fetch and
poll/pipeline. Run: .venv/bin/python bench/imap_bench.py [--messages 300]
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from dovecot import Account, Dovecot  # noqa: E402

from core.intake import Envelope  # noqa: E402
from mailgate.accept import accept_message  # noqa: E402
from mailgate.app import App  # noqa: E402
from mailgate.imap import poll_command  # noqa: E402
from mailgate.settings import load_settings  # noqa: E402

CORPUS = REPO.parent / "shared" / "corpus"
MESSAGE_ID = re.compile(rb"^Message-ID:.*\r?\n(?:[ \t].*\r?\n)*", re.IGNORECASE | re.MULTILINE)
CONFIG = """\
data_dir = "var"
[database]
url = "{url}"
[tickets]
rate_limit_count = 100000
[[departments]]
name = "Support"
email = "support@example.com"
members = ["alice"]
[[admins]]
username = "alice"
name = "Alice Admin"
email = "alice@example.com"
"""
MAILBOX = """\
[[mailboxes]]
host = "127.0.0.1"
port = {port}
tls = false
username = "{username}"
password = "{password}"
department = "support@example.com"
"""


def messages(count: int) -> list[bytes]:
    """The corpus cycled (synthetic mail without it), each with its own Message-ID."""
    sources = sorted(CORPUS.glob("*/*.eml")) if CORPUS.is_dir() else []
    raws = [p.read_bytes() for p in sources] or [
        b"From: Dana <dana@client.test>\r\nTo: support@example.com\r\n"
        b"Subject: Printer on fire\r\n\r\n" + b"Please help.\r\n" * 40
    ]
    out = []
    for n in range(count):
        raw = MESSAGE_ID.sub(b"", raws[n % len(raws)], count=1)
        out.append(b"Message-ID: <bench-%d@bench.test>\r\n" % n + raw)
    return out


def make_app(folder: Path, url: str, extra: str = "") -> App:
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "ticketd.toml"
    config.write_text(CONFIG.format(url=url) + extra, encoding="utf-8")
    app = App(load_settings(config))
    app.init()
    return app


def fetch_rate(account: Account, count: int) -> float:
    client = account.connect()
    started = time.perf_counter()
    client.select("INBOX", readonly=True)
    status, data = client.uid("FETCH", "1:*", "(BODY.PEEK[])")
    elapsed = time.perf_counter() - started
    client.logout()
    fetched = sum(1 for part in data if isinstance(part, tuple))
    assert status == "OK" and fetched == count, (status, fetched)
    return count / elapsed


def poll_rate(app: App, count: int) -> float:
    started = time.perf_counter()
    assert poll_command(app, once=True) == 0
    elapsed = time.perf_counter() - started
    with app.uow() as uow:
        assert len(uow.import_records()) == count
    return count / elapsed


def pipeline_rate(app: App, raws: list[bytes]) -> float:
    envelope = Envelope("pipe", None, ("support@example.com",))
    started = time.perf_counter()
    for raw in raws:
        accept_message(app, raw, envelope)
    return len(raws) / (time.perf_counter() - started)


def main() -> int:
    logging.disable(logging.ERROR)  # the intake logs tracebacks for odd corpus addresses
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=300)
    parser.add_argument("--database-url", help="default: SQLite in a temporary folder")
    args = parser.parse_args()
    raws = messages(args.messages)
    server = Dovecot().start()
    try:
        account = server.add_user()
        account.append(raws)
        with tempfile.TemporaryDirectory(prefix="ticketd-bench-") as tmp:
            root = Path(tmp)
            url = args.database_url or f"sqlite:///{root / 'imap.sqlite3'}"
            mailbox = MAILBOX.format(
                port=account.port, username=account.username, password=account.password
            )
            fetch = fetch_rate(account, len(raws))
            poll = poll_rate(make_app(root / "imap", url, mailbox), len(raws))
            piped = make_app(root / "pipe", f"sqlite:///{root / 'pipe.sqlite3'}")
            pipeline = pipeline_rate(piped, raws)
    finally:
        server.stop()
    print(f"messages: {len(raws)} ({sum(map(len, raws)) / len(raws) / 1024:.1f} KiB average)")
    print(f"imaplib fetch only:   {fetch:9.1f} messages/s")
    print(f"ticketd poll --once:  {poll:9.1f} messages/s")
    print(f"accept_message only:  {pipeline:9.1f} messages/s")
    print(f"ratio poll/fetch:     {poll / fetch:9.3f}")
    print(f"ratio poll/pipeline:  {poll / pipeline:9.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
