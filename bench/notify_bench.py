"""Benchmark: notifications rendered and delivered per second, against a bare smtplib loop.

Both send to the same local aiosmtpd sink, a process of its own as a relay
is. ticketd's figure covers routing, rendering, the outbox rows and their
commit (`App.finish`), claiming, building, SMTP delivery and marking each row
sent; the bare loop only sends prebuilt messages over one connection. The two
alternate for `--rounds` rounds and the medians are compared, so that a burst
of noise on a shared machine does not decide the ratio. Target: ratio >= 0.5.

    .venv/bin/python bench/notify_bench.py [--count 1000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import smtplib
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from aiosmtpd.controller import Controller

from core.actors import Actor
from core.options import OptionChanges, update_ticket
from core.ticketing import NewTicket, admin_reply, open_ticket
from mailgate.app import App, utcnow
from mailgate.outbound import Claimed, SmtpTransport, outgoing, send_due
from mailgate.settings import load_settings

PER_REPLY = 100
CONFIG = """\
data_dir = "var"
[database]
url = "sqlite:///var/bench.sqlite3"
[outbound]
transport = "smtp"
smtp_host = "127.0.0.1"
smtp_port = {port}
batch_size = 200
[[departments]]
name = "Support"
email = "support@example.com"
members = ["alice"]
[[admins]]
username = "alice"
name = "Alice Admin"
email = "alice@example.com"
"""


class Counter:
    def __init__(self) -> None:
        self.count = 0

    async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
        self.count += 1
        return "250 OK"


def run_sink(port: int) -> None:
    """The sink process: counts messages until its stdin closes."""
    controller = Controller(Counter(), hostname="127.0.0.1", port=port)
    controller.start()
    print("ready", flush=True)
    sys.stdin.read()
    controller.stop()


def start_sink(port: int) -> subprocess.Popen[str]:
    command = [sys.executable, __file__, "--sink", str(port)]
    sink = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert sink.stdout is not None and sink.stdout.readline().strip() == "ready"
    return sink


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def make_app(folder: Path, port: int) -> App:
    path = folder / "ticketd.toml"
    path.write_text(CONFIG.format(port=port), encoding="utf-8")
    app = App(load_settings(path))
    app.init()
    return app


def ticketd_run(app: App, count: int) -> float:
    """Seconds to queue and deliver `count` client notifications of admin replies."""
    with app.uow() as uow:
        request = NewTicket("support@example.com", "gina@guest.test", "Gina", "Bench", "Hi")
        ticket = open_ticket(uow, request, Actor("gina@guest.test", "Gina"), app.policy, utcnow())
        cc = [f"c{i}@cc.test" for i in range(PER_REPLY - 1)]
        alice = uow.admin_by_username("alice")
        assert alice is not None and alice.id is not None
        actor = Actor(alice.email, alice.name, alice.id, alice.username)
        update_ticket(uow, ticket, actor, OptionChanges(cc=cc), app.policy, utcnow())
        uow.events.clear()
        uow.commit()
        number = ticket.number
    transport = SmtpTransport(app.settings.outbound)
    started = time.perf_counter()
    for n in range(count // PER_REPLY):
        with app.uow() as uow:
            ticket = uow.ticket_by_number(number)
            assert ticket is not None
            admin_reply(uow, ticket, actor, f"Reply {n}", app.policy, utcnow())
            app.finish(uow)
    queued = time.perf_counter()
    report = send_due(app, transport)
    elapsed = time.perf_counter() - started
    print(f"  (queue: {queued - started:.2f} s, send: {elapsed - (queued - started):.2f} s)")
    transport.close()
    assert report.sent == count // PER_REPLY * PER_REPLY, report
    return elapsed


def bare_run(app: App, port: int, count: int) -> float:
    """Seconds for smtplib to send `count` prebuilt copies of one of our messages."""
    with app.uow() as uow:
        item = uow.outbox_items("sent")[0]
        mail = outgoing(app, Claimed(item.id or 0, item.mail_message_id, item.payload))
    started = time.perf_counter()
    with smtplib.SMTP("127.0.0.1", port) as conn:
        for _ in range(count):
            conn.sendmail(mail.envelope_from, [mail.recipient], mail.data)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000, help="notifications (x100)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sink", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.sink:
        run_sink(args.sink)
        return
    count = max(PER_REPLY, args.count // PER_REPLY * PER_REPLY)
    port = free_port()
    sink = start_sink(port)
    ours, bare = [], []
    try:
        with tempfile.TemporaryDirectory() as folder:
            app = make_app(Path(folder), port)
            for _ in range(max(1, args.rounds)):
                ours.append(ticketd_run(app, count))
                bare.append(bare_run(app, port, count))
            app.engine.dispose()
    finally:
        assert sink.stdin is not None
        sink.stdin.close()
        sink.wait(10)
    ours_rate, bare_rate = count / statistics.median(ours), count / statistics.median(bare)
    print(f"ticketd render+deliver: {count} per round, median {ours_rate:.0f} msg/s")
    print(f"bare smtplib loop:      {count} per round, median {bare_rate:.0f} msg/s")
    print(f"ratio: {ours_rate / bare_rate:.2f} (target >= 0.5)")


if __name__ == "__main__":
    main()
