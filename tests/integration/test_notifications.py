"""Notifications end to end: who gets which email, over SMTP to a real aiosmtpd sink.

Each test changes tickets through core operations or `accept_message`, lets
`App.finish` queue the outbox rows, runs the sender once and reads back what
the sink received. One test per row and per condition of NOTIFICATIONS.md.
"""

from __future__ import annotations

import email
import email.policy
import json
import subprocess
import sys
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from core import directory, events
from core.actors import Actor
from core.intake import Envelope
from core.model import Suppression, Watch
from core.options import OptionChanges, update_ticket
from core.ticketing import NewTicket, add_note, admin_reply, client_reply, open_ticket
from mailgate.accept import accept_message
from mailgate.app import utcnow
from mailgate.outbound import SmtpTransport, send_due

SUPPORT = "support@example.com"
GUEST = "gina@guest.test"


@dataclass(frozen=True)
class Sent:
    rcpt: str
    mail_from: str
    msg: EmailMessage
    raw: bytes

    @property
    def event(self) -> str:
        return str(self.msg["X-Ticketd-Event"])


def deliver(app: Any, sink: Any) -> list[Sent]:
    """Run the sender once and return what the sink got."""
    transport = SmtpTransport(app.settings.outbound)
    try:
        send_due(app, transport)
    finally:
        transport.close()
    found = []
    for mail_from, rcpts, raw in sink.handler_obj.take():
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(msg, EmailMessage)
        found += [Sent(r.lower(), mail_from, msg, raw) for r in rcpts]
    return found


def to(sent: list[Sent], event: str | None = None) -> set[str]:
    return {s.rcpt for s in sent if event is None or s.event == event}


def count(sent: list[Sent]) -> dict[str, int]:
    totals: dict[str, int] = {}
    for s in sent:
        totals[s.rcpt] = totals.get(s.rcpt, 0) + 1
    return totals


def admin(uow: Any, username: str) -> Actor:
    found = uow.admin_by_username(username)
    return Actor(found.email, found.name, found.id, found.username)


@pytest.fixture
def desk(smtp_app: Any) -> dict[str, int]:
    """Client Acme: owner olga, users ulla (mail on) and uwe (off), contacts cora and conny."""
    now = utcnow()
    with smtp_app.uow() as uow:
        acme = directory.add_client(uow, "Olga Owner", "olga@acme.test", "Acme", now)
        assert acme.id is not None
        directory.add_client_user(uow, acme.id, "ulla@acme.test", "Ulla User", True, now)
        directory.add_client_user(uow, acme.id, "uwe@acme.test", "Uwe User", False, now)
        directory.add_contact(uow, acme.id, "cora@acme.test", "Cora Contact", True)
        directory.add_contact(uow, acme.id, "conny@acme.test", "Conny Contact", False)
        uow.commit()
    return {"acme": acme.id}


def open_by_client(app: Any, sender: str = GUEST, dept: str = SUPPORT, **kw: Any) -> str:
    with app.uow() as uow:
        request = NewTicket(
            dept, sender, sender.partition("@")[0].title(), "Help", "It broke.", **kw
        )
        ticket = open_ticket(uow, request, Actor(sender, ""), app.policy, utcnow())
        app.finish(uow)
    return ticket.number


def change(app: Any, number: str, fn: Any) -> None:
    """Run `fn(uow, ticket)` in a unit of work and finish it."""
    with app.uow() as uow:
        ticket = uow.ticket_by_number(number)
        fn(uow, ticket)
        app.finish(uow)


def settled(app: Any, sink: Any, sender: str = GUEST, **kw: Any) -> str:
    """A ticket whose opening mail has already gone out."""
    number = open_by_client(app, sender, **kw)
    deliver(app, sink)
    return number


def watch(uow: Any, ticket: Any, username: str) -> None:
    ticket.watches.append(Watch(admin_id=uow.admin_by_username(username).id))


def flag(app: Any, number: str, by: str, to_user: str) -> None:
    change(
        app,
        number,
        lambda uow, t: update_ticket(
            uow, t, admin(uow, by), OptionChanges(flag_username=to_user), app.policy, utcnow()
        ),
    )


# --- ticket opened -----------------------------------------------------------------


def test_ticket_opened_mails_department_members_and_acknowledges_requester(
    smtp_app: Any, sink: Any
) -> None:
    open_by_client(smtp_app)
    sent = deliver(smtp_app, sink)
    assert to(sent, "ticket_opened") == {"alice@example.com", "bob@example.com"}
    assert to(sent, "ticket_opened_ack") == {GUEST}
    assert "carol@example.com" not in to(sent)
    ack = next(s for s in sent if s.event == "ticket_opened_ack")
    assert ack.msg["Auto-Submitted"] == "auto-replied"


def test_ticket_opened_acknowledges_owner_users_contacts_and_cc(
    smtp_app: Any, sink: Any, desk: dict[str, int]
) -> None:
    number = open_by_client(smtp_app, "ulla@acme.test")
    sent = deliver(smtp_app, sink)
    assert to(sent, "ticket_opened_ack") == {"ulla@acme.test", "olga@acme.test", "cora@acme.test"}
    change(
        smtp_app,
        number,
        lambda uow, t: update_ticket(
            uow,
            t,
            admin(uow, "alice"),
            OptionChanges(cc=["carl@cc.test"]),
            smtp_app.policy,
            utcnow(),
        ),
    )
    deliver(smtp_app, sink)
    with smtp_app.uow() as uow:
        ticket = uow.ticket_by_number(number)
        uow.events.append(events.TicketOpened(ticket.id, None, ticket.messages[0].id, False))
        smtp_app.finish(uow)
    assert "carl@cc.test" in to(deliver(smtp_app, sink), "ticket_opened_ack")


def test_ticket_opened_department_members_with_notify_off_get_nothing(
    smtp_app: Any, sink: Any
) -> None:
    with smtp_app.uow() as uow:
        for member in uow.members(uow.department_by_email(SUPPORT).id):
            member.notify = member.admin_id != uow.admin_by_username("bob").id
        uow.commit()
    open_by_client(smtp_app)
    assert to(deliver(smtp_app, sink), "ticket_opened") == {"alice@example.com"}


def test_ticket_opened_by_admin_mails_requester_not_the_admin(smtp_app: Any, sink: Any) -> None:
    with smtp_app.uow() as uow:
        request = NewTicket(SUPPORT, GUEST, "Gina", "Call me", "Opened by phone.")
        open_ticket(uow, request, admin(uow, "alice"), smtp_app.policy, utcnow())
        smtp_app.finish(uow)
    sent = deliver(smtp_app, sink)
    assert to(sent) == {"bob@example.com", GUEST}
    ack = next(s for s in sent if s.rcpt == GUEST)
    assert ack.msg["Auto-Submitted"] == "auto-generated"


def test_acknowledgement_off_for_department(app_maker: Any, sink: Any) -> None:
    app = app_maker(outbound={"transport": "smtp", "smtp_port": sink.port})
    with app.uow() as uow:
        uow.department_by_email(SUPPORT).auto_acknowledge = False
        uow.commit()
    open_by_client(app)
    sent = deliver(app, sink)
    assert to(sent, "ticket_opened_ack") == set()
    assert to(sent, "ticket_opened") == {"alice@example.com", "bob@example.com"}


def test_acknowledgement_at_most_once_per_address_in_window(smtp_app: Any, sink: Any) -> None:
    open_by_client(smtp_app)
    open_by_client(smtp_app)
    sent = deliver(smtp_app, sink)
    assert [s.rcpt for s in sent if s.event == "ticket_opened_ack"] == [GUEST]
    assert len([s for s in sent if s.event == "ticket_opened"]) == 4


def test_no_acknowledgement_for_auto_reply_or_bounce(smtp_app: Any, sink: Any) -> None:
    auto = (
        b"From: Gina <gina@guest.test>\r\nTo: support@example.com\r\nSubject: Out of office"
        b"\r\nAuto-Submitted: auto-replied\r\nMessage-ID: <ooo-1@guest.test>\r\n\r\nAway.\r\n"
    )
    decision = accept_message(smtp_app, auto, Envelope("smtp", GUEST, (SUPPORT,)))
    assert decision.reason == "auto_reply"
    assert deliver(smtp_app, sink) == []


# --- client reply ------------------------------------------------------------------


def test_client_reply_mails_department_when_nobody_flagged(smtp_app: Any, sink: Any) -> None:
    number = settled(smtp_app, sink)
    change(
        smtp_app,
        number,
        lambda uow, t: client_reply(uow, t, Actor(GUEST, "Gina"), "guest", "More info", utcnow()),
    )
    sent = deliver(smtp_app, sink)
    assert to(sent, "client_reply") == {"alice@example.com", "bob@example.com"}
    assert GUEST not in to(sent)


def test_client_reply_mails_watchers_and_flagged_not_department(smtp_app: Any, sink: Any) -> None:
    number = settled(smtp_app, sink)
    flag(smtp_app, number, "alice", "alice")
    change(smtp_app, number, lambda uow, t: watch(uow, t, "alice"))
    deliver(smtp_app, sink)
    change(
        smtp_app,
        number,
        lambda uow, t: client_reply(uow, t, Actor(GUEST, "Gina"), "guest", "More info", utcnow()),
    )
    sent = deliver(smtp_app, sink)
    assert to(sent) == {"alice@example.com"}
    assert count(sent) == {"alice@example.com": 1}


def test_client_reply_author_is_not_mailed_their_own_reply(smtp_app: Any, sink: Any) -> None:
    number = settled(smtp_app, sink)
    change(
        smtp_app,
        number,
        lambda uow, t: client_reply(
            uow, t, Actor("bob@example.com", "Bob"), "guest", "Writing as a client", utcnow()
        ),
    )
    assert to(deliver(smtp_app, sink)) == {"alice@example.com"}


# --- admin reply -------------------------------------------------------------------


def test_admin_reply_mails_client_side_with_attachments_admins_without(
    smtp_app: Any, sink: Any, desk: dict[str, int]
) -> None:
    from core.mail import Attachment

    number = settled(smtp_app, sink, "ulla@acme.test")
    change(smtp_app, number, lambda uow, t: watch(uow, t, "bob"))
    files = [Attachment("fix.txt", "text/plain", b"the fix\n")]
    change(
        smtp_app,
        number,
        lambda uow, t: admin_reply(
            uow, t, admin(uow, "alice"), "Try this.", smtp_app.policy, utcnow(), attachments=files
        ),
    )
    sent = deliver(smtp_app, sink)
    assert to(sent, "admin_reply") == {
        "ulla@acme.test",
        "olga@acme.test",
        "cora@acme.test",
        "bob@example.com",
    }
    for item in sent:
        names = [p.get_filename() for p in item.msg.iter_attachments()]
        if item.rcpt.endswith("@acme.test"):
            assert names == ["fix.txt"]
            part = next(item.msg.iter_attachments())
            assert isinstance(part, EmailMessage)
            assert part.get_content() == "the fix\n"
        else:
            assert names == []
    assert "alice@example.com" not in to(sent)


def test_admin_reply_respects_ticket_emails_but_requester_always_gets_it(
    smtp_app: Any, sink: Any, desk: dict[str, int]
) -> None:
    number = settled(smtp_app, sink, "uwe@acme.test")
    change(
        smtp_app,
        number,
        lambda uow, t: admin_reply(uow, t, admin(uow, "alice"), "Done.", smtp_app.policy, utcnow()),
    )
    sent = to(deliver(smtp_app, sink), "admin_reply")
    assert "uwe@acme.test" in sent
    assert "conny@acme.test" not in sent
    assert {"olga@acme.test", "ulla@acme.test", "cora@acme.test"} <= sent


def test_admin_reply_mails_guest_requester_and_cc(smtp_app: Any, sink: Any) -> None:
    number = settled(smtp_app, sink)
    change(
        smtp_app,
        number,
        lambda uow, t: update_ticket(
            uow,
            t,
            admin(uow, "alice"),
            OptionChanges(cc=["Carl@CC.test", GUEST.upper()]),
            smtp_app.policy,
            utcnow(),
        ),
    )
    deliver(smtp_app, sink)
    change(
        smtp_app,
        number,
        lambda uow, t: admin_reply(uow, t, admin(uow, "bob"), "Answer", smtp_app.policy, utcnow()),
    )
    sent = deliver(smtp_app, sink)
    assert count(sent) == {GUEST: 1, "carl@cc.test": 1}


# --- options, department, flag ------------------------------------------------------


def test_options_changed_mails_watchers_and_flagged_old_to_new(smtp_app: Any, sink: Any) -> None:
    number = settled(smtp_app, sink)
    flag(smtp_app, number, "alice", "bob")
    change(smtp_app, number, lambda uow, t: watch(uow, t, "alice"))
    deliver(smtp_app, sink)
    change(
        smtp_app,
        number,
        lambda uow, t: update_ticket(
            uow, t, admin(uow, "alice"), OptionChanges(priority="High"), smtp_app.policy, utcnow()
        ),
    )
    sent = deliver(smtp_app, sink)
    assert to(sent) == {"bob@example.com"}
    body = sent[0].msg.get_body(("plain",))
    assert body is not None and "priority: Medium -> High" in body.get_content()


def test_department_changed_mails_new_department_members_when_unflagged(
    smtp_app: Any, sink: Any
) -> None:
    number = settled(smtp_app, sink)
    change(
        smtp_app,
        number,
        lambda uow, t: update_ticket(
            uow,
            t,
            admin(uow, "alice"),
            OptionChanges(department_email="sales@example.com"),
            smtp_app.policy,
            utcnow(),
        ),
    )
    sent = deliver(smtp_app, sink)
    assert to(sent, "department_changed") == {"carol@example.com"}
    assert "bob@example.com" not in to(sent)


def test_department_changed_skips_department_when_flagged(smtp_app: Any, sink: Any) -> None:
    with smtp_app.uow() as uow:
        sales = uow.department_by_email("sales@example.com")
        from core.model import DepartmentMember

        uow.add(DepartmentMember(sales.id, uow.admin_by_username("bob").id))
        uow.commit()
    number = settled(smtp_app, sink)
    flag(smtp_app, number, "alice", "bob")
    deliver(smtp_app, sink)
    change(
        smtp_app,
        number,
        lambda uow, t: update_ticket(
            uow,
            t,
            admin(uow, "alice"),
            OptionChanges(department_email="sales@example.com"),
            smtp_app.policy,
            utcnow(),
        ),
    )
    assert to(deliver(smtp_app, sink)) == {"bob@example.com"}


def test_ticket_flagged_mails_flagged_admin_and_watchers(smtp_app: Any, sink: Any) -> None:
    number = settled(smtp_app, sink)
    change(smtp_app, number, lambda uow, t: watch(uow, t, "alice"))
    flag(smtp_app, number, "bob", "bob")
    assert deliver(smtp_app, sink) == []
    flag(smtp_app, number, "bob", "alice")
    sent = deliver(smtp_app, sink)
    assert to(sent, "ticket_flagged") == {"alice@example.com"}
    assert to(sent, "ticket_unflagged") == set()


def test_flagging_to_yourself_sends_nothing(smtp_app: Any, sink: Any) -> None:
    number = settled(smtp_app, sink)
    change(smtp_app, number, lambda uow, t: watch(uow, t, "bob"))
    flag(smtp_app, number, "alice", "alice")
    assert deliver(smtp_app, sink) == []


def test_ticket_unflagged_mails_the_unassigned_admin(smtp_app: Any, sink: Any) -> None:
    number = settled(smtp_app, sink)
    flag(smtp_app, number, "alice", "bob")
    deliver(smtp_app, sink)
    change(
        smtp_app,
        number,
        lambda uow, t: update_ticket(
            uow, t, admin(uow, "alice"), OptionChanges(unflag=True), smtp_app.policy, utcnow()
        ),
    )
    assert to(deliver(smtp_app, sink), "ticket_unflagged") == {"bob@example.com"}


# --- notes -----------------------------------------------------------------------------


def test_note_mails_watchers_and_flagged_and_each_mention_once(
    smtp_app: Any, sink: Any, desk: dict[str, int]
) -> None:
    number = settled(smtp_app, sink, "olga@acme.test")
    flag(smtp_app, number, "alice", "bob")
    change(smtp_app, number, lambda uow, t: watch(uow, t, "bob"))
    deliver(smtp_app, sink)
    change(
        smtp_app,
        number,
        lambda uow, t: add_note(
            uow, t, admin(uow, "alice"), "Secret: @bob @carol @alice", utcnow()
        ),
    )
    sent = deliver(smtp_app, sink)
    assert count(sent) == {"bob@example.com": 1}
    assert sent[0].event == "note_mention"
    assert "Secret" in sent[0].raw.decode()


def test_client_side_never_gets_note_mail(smtp_app: Any, sink: Any) -> None:
    number = settled(smtp_app, sink)
    change(smtp_app, number, lambda uow, t: watch(uow, t, "bob"))
    change(
        smtp_app,
        number,
        lambda uow, t: add_note(uow, t, admin(uow, "alice"), "Internal only", utcnow()),
    )
    sent = deliver(smtp_app, sink)
    assert to(sent) == {"bob@example.com"}
    assert to(sent, "note_added") == {"bob@example.com"}


# --- automation rows ----------------------------------------------------------------------


def emit(app: Any, number: str, event_type: Any) -> None:
    change(app, number, lambda uow, t: uow.events.append(event_type(t.id, None)))


def test_auto_close_mails_owner_cc_and_requester(
    smtp_app: Any, sink: Any, desk: dict[str, int]
) -> None:
    number = settled(smtp_app, sink, "ulla@acme.test")
    change(
        smtp_app,
        number,
        lambda uow, t: update_ticket(
            uow,
            t,
            admin(uow, "alice"),
            OptionChanges(cc=["carl@cc.test"]),
            smtp_app.policy,
            utcnow(),
        ),
    )
    change(smtp_app, number, lambda uow, t: watch(uow, t, "alice"))
    deliver(smtp_app, sink)
    emit(smtp_app, number, events.TicketAutoClosed)
    sent = deliver(smtp_app, sink)
    assert to(sent, "auto_close") == {"olga@acme.test", "carl@cc.test", "ulla@acme.test"}
    assert to(sent) == to(sent, "auto_close")


def test_feedback_request_mails_requester_only(
    smtp_app: Any, sink: Any, desk: dict[str, int]
) -> None:
    number = settled(smtp_app, sink, "cora@acme.test")
    emit(smtp_app, number, events.FeedbackRequested)
    assert to(deliver(smtp_app, sink)) == {"cora@acme.test"}


# --- rules for every row ---------------------------------------------------------------------


def test_admins_outside_the_department_get_nothing(smtp_app: Any, sink: Any) -> None:
    number = settled(smtp_app, sink)
    change(smtp_app, number, lambda uow, t: watch(uow, t, "carol"))
    change(
        smtp_app,
        number,
        lambda uow, t: client_reply(uow, t, Actor(GUEST, "Gina"), "guest", "Hello?", utcnow()),
    )
    assert "carol@example.com" not in to(deliver(smtp_app, sink))


def test_one_email_per_person_per_event(smtp_app: Any, sink: Any) -> None:
    number = settled(smtp_app, sink)
    change(
        smtp_app,
        number,
        lambda uow, t: update_ticket(
            uow,
            t,
            admin(uow, "alice"),
            OptionChanges(cc=["ALICE@example.com", GUEST]),
            smtp_app.policy,
            utcnow(),
        ),
    )
    flag(smtp_app, number, "bob", "alice")
    change(smtp_app, number, lambda uow, t: watch(uow, t, "alice"))
    deliver(smtp_app, sink)
    change(
        smtp_app,
        number,
        lambda uow, t: admin_reply(uow, t, admin(uow, "bob"), "Reply", smtp_app.policy, utcnow()),
    )
    assert count(deliver(smtp_app, sink)) == {"alice@example.com": 1, GUEST: 1}


def test_suppressed_address_gets_nothing(smtp_app: Any, sink: Any) -> None:
    from datetime import timedelta

    with smtp_app.uow() as uow:
        uow.add(Suppression(email=GUEST, bounces=3, until=utcnow() + timedelta(days=1)))
        uow.commit()
    open_by_client(smtp_app)
    assert GUEST not in to(deliver(smtp_app, sink))


def test_daily_cap_on_automatic_mail(app_maker: Any, sink: Any) -> None:
    app = app_maker(
        outbound={"transport": "smtp", "smtp_port": sink.port, "max_automatic_per_day": 3}
    )
    for _ in range(5):
        open_by_client(app)
    sent = deliver(app, sink)
    assert count(sent)["alice@example.com"] == 3


# --- delivery -------------------------------------------------------------------------------


def test_threading_headers_and_reply_to_token(smtp_app: Any, sink: Any) -> None:
    raw = (
        b"From: Gina <gina@guest.test>\r\nTo: support@example.com\r\nSubject: Broken\r\n"
        b"Message-ID: <first@guest.test>\r\n\r\nIt broke.\r\n"
    )
    decision = accept_message(smtp_app, raw, Envelope("smtp", GUEST, (SUPPORT,)))
    sent = deliver(smtp_app, sink)
    ack = next(s for s in sent if s.rcpt == GUEST)
    assert f"[Ticket #{decision.ticket_number}]" in str(ack.msg["Subject"])
    assert ack.msg["In-Reply-To"] == "<first@guest.test>"
    assert ack.msg["References"] == "<first@guest.test>"
    assert str(ack.msg["Reply-To"]).split("<")[1].startswith("support+")
    assert ack.msg["X-Ticketd-Loop"] == SUPPORT
    assert ack.msg["X-Auto-Response-Suppress"] == "All"
    assert ack.msg["Thread-Index"]
    assert ack.mail_from.startswith("support+bounce-")
    with smtp_app.uow() as uow:
        mail_id = str(ack.msg["Message-ID"]).strip("<>")
        assert mail_id.startswith("ticketd.")
        assert uow.tickets_by_mail_id([mail_id], ("sent",))


def test_smtp_5xx_fails_and_logs_on_ticket(smtp_app: Any, sink: Any) -> None:
    sink.handler_obj.refuse[GUEST] = "550 5.1.1 no such user"
    number = open_by_client(smtp_app)
    sent = deliver(smtp_app, sink)
    assert GUEST not in to(sent)
    with smtp_app.uow() as uow:
        failed = uow.outbox_items("failed")
        assert [f.recipient for f in failed] == [GUEST]
        assert "550" in failed[0].last_error
        log = uow.ticket_by_number(number).log
        assert any(e.action == "delivery failed" and GUEST in e.detail for e in log)


def test_smtp_4xx_retries_with_backoff(smtp_app: Any, sink: Any) -> None:
    sink.handler_obj.refuse[GUEST] = "451 4.3.0 try later"
    open_by_client(smtp_app)
    deliver(smtp_app, sink)
    with smtp_app.uow() as uow:
        item = next(i for i in uow.outbox_items("queued") if i.recipient == GUEST)
        assert item.attempts == 1 and "451" in item.last_error
        assert item.next_attempt_at > utcnow()
        item.next_attempt_at = utcnow()
        uow.commit()
    del sink.handler_obj.refuse[GUEST]
    assert to(deliver(smtp_app, sink)) == {GUEST}


def test_connection_refused_retries(app_maker: Any) -> None:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    app = app_maker(outbound={"transport": "smtp", "smtp_port": port})
    open_by_client(app)
    deliver_report = send_due(app, SmtpTransport(app.settings.outbound))
    assert deliver_report.sent == 0 and deliver_report.retried == 3
    with app.uow() as uow:
        assert {i.status for i in uow.outbox_items()} == {"queued"}


def test_maildir_resend_overwrites(app_maker: Any, tmp_path: Any) -> None:
    from mailgate.outbound import MaildirTransport

    app = app_maker()
    open_by_client(app)
    transport = MaildirTransport(tmp_path / "var" / "outbox")
    assert send_due(app, transport).sent == 3
    with app.uow() as uow:
        for item in uow.outbox_items():
            item.status, item.next_attempt_at = "queued", utcnow()
        uow.commit()
    assert send_due(app, transport).sent == 3
    files = list((tmp_path / "var" / "outbox" / "new").iterdir())
    assert len(files) == 3
    assert all(f.read_bytes().startswith(b"Return-Path: <support+bounce-") for f in files)


def test_sent_marks_commit_each_row_and_leave_the_pooled_connection_as_found(
    app_maker: Any,
) -> None:
    """Marks are visible to other connections at once; SQLite's relaxed sync is undone."""
    from storage.engine import is_sqlite
    from storage.sent_marks import SentMarks

    app = app_maker()
    open_by_client(app)
    with app.uow() as uow:
        ids = [i.id for i in uow.outbox_items("queued")]
    assert len(ids) == 3
    when = utcnow()
    with SentMarks(app.engine) as marks:
        marks.mark(ids[0], when)
        with app.uow() as uow:  # another connection sees the committed mark
            [sent] = uow.outbox_items("sent")
            assert sent.id == ids[0] and sent.sent_at == when and sent.last_error == ""
    if is_sqlite(app.engine):
        app.engine.pool.dispose()  # so the next checkout cannot hide a leftover setting
        with SentMarks(app.engine):
            pass
        with app.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL


# --- threading: replies to notifications land on their ticket ----------------------------


def _ack_of(app: Any, sink: Any, subject: str, sender: str = GUEST) -> tuple[str, Sent]:
    raw = (
        f"From: <{sender}>\r\nTo: {SUPPORT}\r\nSubject: {subject}\r\n"
        f"Message-ID: <{subject.replace(' ', '-')}@guest.test>\r\n\r\nHelp.\r\n"
    ).encode()
    decision = accept_message(app, raw, Envelope("smtp", sender, (SUPPORT,)))
    assert decision.outcome == "new_ticket" and decision.ticket_number
    sent = deliver(app, sink)
    return decision.ticket_number, next(s for s in sent if s.rcpt == sender)


def _reply(msg_id: str, to_addr: str, subject: str, extra: str = "", body: str = "Thanks") -> bytes:
    return (
        f"From: Gina <{GUEST}>\r\nTo: {to_addr}\r\nSubject: {subject}\r\n"
        f"Message-ID: <{msg_id}@guest.test>\r\n{extra}\r\n{body}\r\n"
    ).encode()


@pytest.mark.parametrize(
    "variant", ["in_reply_to", "references", "subject_edited", "token_only", "quoted"]
)
def test_reply_to_notification_lands_on_its_ticket(smtp_app: Any, sink: Any, variant: str) -> None:
    first, _ = _ack_of(smtp_app, sink, "First problem", "hank@guest.test")
    second, ack = _ack_of(smtp_app, sink, "Second problem")
    ours = str(ack.msg["Message-ID"])
    reply_to = str(ack.msg["Reply-To"]).rpartition("<")[2].rstrip(">")
    quoted = "\r\n".join(
        f"> {line}" for line in ack.msg.get_body(("plain",)).get_content().splitlines()
    )
    raw = {
        "in_reply_to": _reply("r1", SUPPORT, "Re: whatever", f"In-Reply-To: {ours}\r\n"),
        "references": _reply("r2", SUPPORT, "Re: whatever", f"References: <x@y.test> {ours}\r\n"),
        "subject_edited": _reply(
            "r3", SUPPORT, f"Re: [Ticket #{first}] oops", f"In-Reply-To: {ours}\r\n"
        ),
        "token_only": _reply("r4", reply_to, "New words"),
        "quoted": _reply(
            "r5",
            SUPPORT,
            str(ack.msg["Subject"]),
            f"In-Reply-To: {ours}\r\n",
            f"Fixed now.\r\n\r\nOn Monday you wrote:\r\n{quoted}",
        ),
    }[variant]
    decision = accept_message(smtp_app, raw, Envelope("smtp", GUEST, (SUPPORT,)))
    assert (decision.outcome, decision.ticket_number) == ("reply", second)


# --- header injection ---------------------------------------------------------------------

EXPECTED_HEADERS = {
    "from",
    "to",
    "reply-to",
    "subject",
    "date",
    "message-id",
    "in-reply-to",
    "references",
    "thread-topic",
    "thread-index",
    "auto-submitted",
    "x-auto-response-suppress",
    "x-ticketd-loop",
    "x-ticketd-event",
    "mime-version",
    "content-type",
}
HOSTILE_SUBJECTS = [
    b"=?utf-8?q?x=0D=0ABcc:_evil@x.test?=",
    b"=?utf-8?b?" + __import__("base64").b64encode(b"a\r\nBcc: evil@x.test") + b"?=",
    b"Help =?utf-8?q?=0ABcc=3A_evil@x.test?= now",
    b"Long " + b"word" * 600,
    b"Lots of words " * 120,
]


@pytest.mark.parametrize("subject", HOSTILE_SUBJECTS)
def test_hostile_subject_and_name_never_add_or_split_a_header(
    smtp_app: Any, sink: Any, subject: bytes
) -> None:
    raw = (
        b"From: =?utf-8?q?Eve=0D=0ABcc:_evil?= <eve@guest.test>\r\n"
        b"To: support@example.com\r\nSubject: " + subject + b"\r\n"
        b"Message-ID: <hostile@guest.test>\r\n\r\nHi\r\n"
    )
    decision = accept_message(smtp_app, raw, Envelope("smtp", "eve@guest.test", (SUPPORT,)))
    assert decision.outcome == "new_ticket"
    sent = deliver(smtp_app, sink)
    assert to(sent) == {"eve@guest.test", "alice@example.com", "bob@example.com"}
    for item in sent:
        head = item.raw.split(b"\r\n\r\n", 1)[0]
        names = [
            line.split(b":", 1)[0].decode().lower()
            for line in head.split(b"\r\n")
            if line[:1] not in (b" ", b"\t")
        ]
        assert set(names) == EXPECTED_HEADERS
        assert len(names) == len(EXPECTED_HEADERS)
        assert all(len(line) <= 998 for line in head.split(b"\r\n"))
        assert "bcc" not in {k.lower() for k in item.msg}
        for name in ("Subject", "To", "Thread-Topic"):
            value = str(item.msg[name])
            assert "\r" not in value and "\n" not in value
        assert f"[Ticket #{decision.ticket_number}]" in str(item.msg["Subject"])


def test_encoded_display_name_cannot_change_the_requester(smtp_app: Any) -> None:
    raw = (
        b"From: =?utf-8?q?Eve_Bcc:_evil@x.test?= <eve@guest.test>\r\n"
        b"To: support@example.com\r\nSubject: Hi\r\n\r\nHi\r\n"
    )
    accept_message(smtp_app, raw, Envelope("smtp", "eve@guest.test", (SUPPORT,)))
    with smtp_app.uow() as uow:
        assert [t.requester_email for t in uow.tickets()] == ["eve@guest.test"]


# --- loops and bounce storms stop by themselves -------------------------------------------


def _auto_reply(item: Sent, marker: str, target: str) -> tuple[bytes, Envelope]:
    address = {
        "return_path": item.mail_from,
        "reply_to": str(item.msg["Reply-To"]).rpartition("<")[2].rstrip(">"),
        "from": SUPPORT,
    }[target]
    raw = (
        f"From: <{item.rcpt}>\r\nTo: <{address}>\r\n"
        f"Subject: Automatic reply: {item.msg['Subject']}\r\n"
        f"In-Reply-To: {item.msg['Message-ID']}\r\n{marker}\r\n"
        f"Message-ID: <auto-{abs(hash(item.raw))}@{item.rcpt.partition('@')[2]}>\r\n"
        f"\r\nI am away until Monday.\r\n"
    ).encode()
    return raw, Envelope("smtp", item.rcpt, (address,))


@pytest.mark.parametrize("target", ["return_path", "reply_to", "from"])
@pytest.mark.parametrize(
    "marker",
    [
        "Auto-Submitted: auto-replied",
        "X-Autoreply: yes",
        "Precedence: auto_reply",
        "X-Auto-Response-Suppress: All",
        "X-Ticketd-Loop: support@example.com",
    ],
)
def test_autoresponder_loop_stops_by_itself(
    smtp_app: Any, sink: Any, marker: str, target: str
) -> None:
    open_by_client(smtp_app)
    ours: dict[str, int] = {}
    theirs: dict[str, int] = {}
    for _ in range(6):
        sent = deliver(smtp_app, sink)
        if not sent:
            break
        for item in sent:
            ours[item.rcpt] = ours.get(item.rcpt, 0) + 1
            theirs[item.rcpt] = theirs.get(item.rcpt, 0) + 1
            decision = accept_message(smtp_app, *_auto_reply(item, marker, target))
            assert decision.outcome == "blocked"
    assert ours == {GUEST: 1, "alice@example.com": 1, "bob@example.com": 1}
    assert max(theirs.values()) <= 1


def _dsn(item: Sent) -> tuple[bytes, Envelope]:
    raw = (
        "From: Mail Delivery System <MAILER-DAEMON@mx.guest.test>\r\n"
        f"To: <{item.mail_from}>\r\nSubject: Undelivered Mail Returned to Sender\r\n"
        f"Message-ID: <dsn-{abs(hash(item.raw))}@mx.guest.test>\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n\r\n'
        "--B\r\nContent-Type: text/plain\r\n\r\nThe mail could not be delivered.\r\n"
        "--B\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.guest.test\r\n\r\n"
        f"Final-Recipient: rfc822; {item.rcpt}\r\nAction: failed\r\n"
        "Status: 5.1.1\r\nDiagnostic-Code: smtp; 550 5.1.1 no such user\r\n\r\n"
        "--B\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        f"Message-ID: {item.msg['Message-ID']}\r\nTo: {item.rcpt}\r\n\r\n--B--\r\n"
    ).encode()
    return raw, Envelope("smtp", "", (item.mail_from,))


def test_bounce_storm_stops_by_itself_and_suppresses(smtp_app: Any, sink: Any) -> None:
    number = open_by_client(smtp_app)
    to_guest = 0
    for round_number in range(8):
        for item in deliver(smtp_app, sink):
            if item.rcpt == GUEST:
                to_guest += 1
                decision = accept_message(smtp_app, *_dsn(item))
                assert (decision.outcome, decision.reason) == ("blocked", "bounce")
        change(
            smtp_app,
            number,
            lambda uow, t, n=round_number: admin_reply(
                uow, t, admin(uow, "alice"), f"Reply {n}", smtp_app.policy, utcnow()
            ),
        )
    assert to_guest == smtp_app.settings.outbound.bounce_suppress_after
    with smtp_app.uow() as uow:
        suppression = uow.suppression(GUEST)
        assert suppression.bounces == to_guest and suppression.until > utcnow()
        assert len(uow.outbox_items("bounced")) == to_guest
        log = uow.ticket_by_number(number).log
        assert sum(e.action == "delivery failed" for e in log) == to_guest
        assert len(uow.tickets()) == 1


def _cli(app: Any, *args: str) -> str:
    ticketd = Path(sys.executable).parent / "ticketd"
    done = subprocess.run(
        [str(ticketd), "--config", app.settings.source, *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_outbox_and_suppression_commands(smtp_app: Any, sink: Any) -> None:
    from datetime import timedelta

    with smtp_app.uow() as uow:
        uow.add(Suppression(email=GUEST, bounces=3, until=utcnow() + timedelta(days=1)))
        uow.commit()
    open_by_client(smtp_app)
    listed = json.loads(_cli(smtp_app, "outbox", "list", "--json"))
    assert {r["recipient"] for r in listed} == {"alice@example.com", "bob@example.com"}
    assert {r["status"] for r in listed} == {"queued"}
    assert json.loads(_cli(smtp_app, "outbox", "list", "--failed", "--json")) == []
    rows = json.loads(_cli(smtp_app, "suppression", "list", "--json"))
    assert [(r["email"], r["active"]) for r in rows] == [(GUEST, True)]
    _cli(smtp_app, "suppression", "remove", GUEST)
    rows = json.loads(_cli(smtp_app, "suppression", "list", "--json"))
    assert [(r["email"], r["active"]) for r in rows] == [(GUEST, False)]
    open_by_client(smtp_app)
    assert GUEST in to(deliver(smtp_app, sink))


# --- crash safety ---------------------------------------------------------------------------


@pytest.mark.slow
def test_kill_9_while_sending_delivers_each_notification_once(smtp_app: Any, sink: Any) -> None:
    """500 notifications, the sender killed with SIGKILL mid-way, then run again.

    SMTP cannot take part in our transaction: the one message the server had
    accepted when the sender died may arrive twice (asserted: at most one).
    """
    import signal
    import time

    number = settled(smtp_app, sink)
    cc = [f"c{i}@cc.test" for i in range(499)]
    change(
        smtp_app,
        number,
        lambda uow, t: update_ticket(
            uow, t, admin(uow, "alice"), OptionChanges(cc=cc), smtp_app.policy, utcnow()
        ),
    )
    change(
        smtp_app,
        number,
        lambda uow, t: admin_reply(
            uow, t, admin(uow, "alice"), "To everyone", smtp_app.policy, utcnow()
        ),
    )
    with smtp_app.uow() as uow:
        expected = {i.mail_message_id for i in uow.outbox_items("queued")}
    assert len(expected) == 500
    config = Path(smtp_app.settings.source)
    config.write_text(
        config.read_text().replace(
            'transport = "maildir"',
            (
                f'transport = "smtp"\nsmtp_host = "127.0.0.1"\nsmtp_port = {sink.port}\n'
                "claim_seconds = 2\nbatch_size = 20"
            ),
        )
    )
    ticketd = str(Path(sys.executable).parent / "ticketd")
    sender = subprocess.Popen([ticketd, "--config", str(config), "outbox", "send", "--once"])
    received: list[bytes] = []
    deadline = time.monotonic() + 60
    while len(received) < 150 and time.monotonic() < deadline:
        received += [raw for _, _, raw in sink.handler_obj.take()]
        time.sleep(0.005)
    sender.send_signal(signal.SIGKILL)
    sender.wait(10)
    received += [raw for _, _, raw in sink.handler_obj.take()]
    assert 150 <= len(received) < 500
    time.sleep(2.5)
    done = subprocess.run(
        [ticketd, "--config", str(config), "outbox", "send", "--once"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    received += [raw for _, _, raw in sink.handler_obj.take()]
    ids = [email.message_from_bytes(r)["Message-ID"].strip("<>") for r in received]
    assert set(ids) == expected
    assert len(ids) - len(set(ids)) <= 1
    with smtp_app.uow() as uow:
        assert {i.status for i in uow.outbox_items()} == {"sent"}
