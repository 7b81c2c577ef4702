"""Ingest throughput and memory, each against a baseline measured in the same run.

    python bench/ingest_bench.py pipe   [-n 100] [--database-url URL]
    python bench/ingest_bench.py smtp   [-n 400] [--database-url URL]
    python bench/ingest_bench.py memory [--mb 20]

pipe:   `ticketd pipe`, one process per message as an MTA runs it (with `ticketd
        serve` running, the production set-up), against a bare Python process that
        parses one message with the stdlib and inserts one SQLite row.
smtp:   `ticketd serve` over loopback, one connection for all messages and 4
        concurrent clients, against a bare aiosmtpd sink that writes each message
        to disk and fsyncs it; once with the default (250 after the import's
        commit) and once with `smtp.spool = true` (250 once the message is
        durable in the spool; the rate until all are imported for reference).
memory: peak memory allocated (tracemalloc) while one message of N MB with
        attachments is imported, as a ratio to the message size.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import smtplib
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TICKETD = str(Path(sys.executable).parent / "ticketd")
sys.path.insert(0, str(REPO / "tests"))

from conftest import Daemon, free_port, write_config  # noqa: E402


def sample(i: int, lines: int = 30) -> bytes:
    body = "\r\n".join(f"Line {n} of a message about a broken printer." for n in range(lines))
    return (
        f"From: Customer {i % 50} <customer{i % 50}@client.test>\r\n"
        f"To: support@example.com\r\nSubject: Printer problem number {i}\r\n"
        f"Message-ID: <bench-{i}-{time.time_ns()}@client.test>\r\n"
        f"Date: Tue, 24 Nov 2026 10:00:00 +0000\r\n\r\n{body}\r\n"
    ).encode()


def rate(count: int, seconds: float) -> float:
    return count / seconds if seconds else float("inf")


def report(name: str, ours: float, baseline: float) -> None:
    print(
        f"{name}: ticketd {ours:.1f} msg/s, baseline {baseline:.1f} msg/s, "
        f"ratio {ours / baseline:.2f}"
    )


BARE_PIPE = textwrap.dedent(
    """
    import email, email.policy, sqlite3, sys
    msg = email.message_from_binary_file(sys.stdin.buffer, policy=email.policy.default)
    db = sqlite3.connect(sys.argv[1])
    db.execute("PRAGMA journal_mode=WAL"); db.execute("PRAGMA synchronous=FULL")
    db.execute("CREATE TABLE IF NOT EXISTS m (subject TEXT, sender TEXT, body TEXT)")
    body = msg.get_body(("plain",))
    db.execute("INSERT INTO m VALUES (?, ?, ?)",
               (str(msg["subject"]), str(msg["from"]), body.get_content() if body else ""))
    db.commit()
    """
)


def time_processes(command: Callable[[int], list[str]], count: int) -> float:
    started = time.perf_counter()
    for i in range(count):
        subprocess.run(command(i), input=sample(i), check=True, capture_output=True)
    return time.perf_counter() - started


def bench_pipe(count: int, url: str | None, folder: Path) -> None:
    database = folder / "bare.sqlite3"
    bare = time_processes(lambda _: [sys.executable, "-c", BARE_PIPE, str(database)], count)
    daemon = Daemon(folder / "served", url or f"sqlite:///{folder / 'served' / 'var/t.db'}")
    try:
        served = time_processes(
            lambda _: [
                TICKETD,
                "--config",
                str(daemon.config),
                "pipe",
                "--department",
                "support@example.com",
            ],
            count,
        )
    finally:
        daemon.stop()
    config = write_config(folder / "alone", url or f"sqlite:///{folder / 'alone' / 'var/t.db'}")
    subprocess.run([TICKETD, "--config", str(config), "init"], check=True, capture_output=True)
    alone = time_processes(
        lambda _: [TICKETD, "--config", str(config), "pipe", "--department", "support@example.com"],
        max(count // 4, 5),
    )
    report("pipe (daemon running)", rate(count, served), rate(count, bare))
    report(
        "pipe (no daemon, imports in process)", rate(max(count // 4, 5), alone), rate(count, bare)
    )


def send(port: int, messages: list[bytes]) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=60) as client:
        for raw in messages:
            client.sendmail("c@client.test", ["support@example.com"], raw)


def time_clients(port: int, count: int, clients: int) -> float:
    batches = [[sample(i) for i in range(c, count, clients)] for c in range(clients)]
    threads = [threading.Thread(target=send, args=(port, batch)) for batch in batches]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started


class DiskSink:
    """The baseline: write each message to its own file and fsync it."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.count = 0

    async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
        data = envelope.original_content  # type: ignore[attr-defined]
        self.count += 1
        path = self.folder / f"{self.count}.eml"
        await asyncio.to_thread(_write_synced, path, data)
        return "250 OK"


def _write_synced(path: Path, data: bytes) -> None:
    with path.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def bench_smtp(count: int, url: str | None, folder: Path) -> None:
    from aiosmtpd.controller import Controller

    sink_dir = folder / "sink"
    sink_dir.mkdir()
    port = free_port()
    controller = Controller(DiskSink(sink_dir), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        bare_one = time_clients(port, count, 1)
        bare_four = time_clients(port, count, 4)
    finally:
        controller.stop()
    for mode, smtp in (("import before 250", ""), ("spool", "spool = true")):
        served = folder / mode.replace(" ", "-")
        daemon = Daemon(served, url or f"sqlite:///{served / 'var/t.db'}", smtp=smtp)
        spooled = served / "var" / "spool" / "new"
        try:
            ours_one = time_clients(daemon.port, count, 1)
            imported_one = ours_one + time_spool_drained(spooled)
            ours_four = time_clients(daemon.port, count, 4)
            imported_four = ours_four + time_spool_drained(spooled)
        finally:
            daemon.stop()
        report(f"smtp ({mode}), 1 connection", rate(count, ours_one), rate(count, bare_one))
        report(f"smtp ({mode}), 4 clients", rate(count, ours_four), rate(count, bare_four))
        if smtp:
            print(
                "  imported (the last 250 until the spool is empty): "
                f"1 connection {rate(count, imported_one):.1f} msg/s, "
                f"4 clients {rate(count, imported_four):.1f} msg/s"
            )


def time_spool_drained(folder: Path) -> float:
    """Seconds until the daemon has imported every spooled message."""
    started = time.perf_counter()
    while folder.is_dir() and any(folder.iterdir()):
        time.sleep(0.01)
    return time.perf_counter() - started


MEMORY_PROBE = textwrap.dedent(
    """
    import sys, tracemalloc
    sys.path.insert(0, sys.argv[3])
    from conftest import write_config
    from pathlib import Path
    from core.intake import Envelope
    from mailgate.accept import accept_message
    from mailgate.app import App
    from mailgate.settings import load_settings
    app = App(load_settings(write_config(Path(sys.argv[1]), "sqlite:///" + sys.argv[1] + "/t.db")))
    app.init()
    envelope = Envelope("pipe", None, ("support@example.com",))
    accept_message(app, b"From: a@b.test\\r\\nSubject: warm\\r\\n\\r\\nx\\r\\n", envelope)
    raw = Path(sys.argv[2]).read_bytes()
    tracemalloc.start()
    decision = accept_message(app, raw, envelope)
    current, peak = tracemalloc.get_traced_memory()
    print(decision.outcome, peak)
    """
)


def big_message(megabytes: int) -> bytes:
    import base64

    parts = []
    chunk = os.urandom(megabytes * 1024 * 1024 // 4 * 3 // 4)
    for name in ("logs.zip", "scan.pdf", "photo.jpg", "trace.log"):
        encoded = base64.encodebytes(chunk).decode()
        parts.append(
            f"--B\r\nContent-Type: application/octet-stream\r\n"
            f'Content-Disposition: attachment; filename="{name}"\r\n'
            f"Content-Transfer-Encoding: base64\r\n\r\n{encoded}\r\n"
        )
    return (
        "From: Big <big@client.test>\r\nTo: support@example.com\r\nSubject: big files\r\n"
        'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="B"\r\n\r\n'
        "--B\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n" + "".join(parts) + "--B--\r\n"
    ).encode()


def bench_memory(megabytes: int, folder: Path) -> None:
    raw = big_message(megabytes)
    path = folder / "big.eml"
    path.write_bytes(raw)
    (folder / "probe").mkdir()
    out = subprocess.run(
        [sys.executable, "-c", MEMORY_PROBE, str(folder / "probe"), str(path), str(REPO / "tests")],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    outcome, peak = out[0], int(out[1])
    print(
        f"memory: {len(raw) / 1e6:.1f} MB message ({outcome}), peak allocation while importing "
        f"{peak / 1e6:.1f} MB, ratio {peak / len(raw):.2f} of the message size (target < 4)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("pipe", "smtp", "memory"))
    parser.add_argument("-n", type=int, default=0, help="messages")
    parser.add_argument("--database-url", help="PostgreSQL database for ticketd (default SQLite)")
    parser.add_argument("--mb", type=int, default=20, help="message size for memory")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        if args.what == "pipe":
            bench_pipe(args.n or 100, args.database_url, folder)
        elif args.what == "smtp":
            bench_smtp(args.n or 400, args.database_url, folder)
        else:
            bench_memory(args.mb, folder)


if __name__ == "__main__":
    main()
