"""The intake pipeline: classification, matching, who may reply, idempotency.

Messages go through `accept_message`, the entry every transport uses, into a
real database; outcomes are read back from tickets and the import log.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import run_cli, run_pipe, write_config

from core import directory
from core.intake import Decision, Envelope
from core.tokens import issue_token, reply_address
from core.views import ticket_document
from mailgate.accept import accept_message, import_blocked

SUPPORT = "support@example.com"


def mail(
    sender: str = "dana@client.test",
    subject: str = "Printer on fire",
    body: str = "Please help.",
    message_id: str | None = "m1@client.test",
    to: str = SUPPORT,
    extra: str = "",
) -> bytes:
    lines = [f"From: Dana <{sender}>", f"To: {to}", f"Subject: {subject}"]
    if message_id:
        lines.append(f"Message-ID: <{message_id}>")
    head = "\r\n".join(lines) + "\r\n" + extra.replace("\n", "\r\n")
    return (head + "\r\n" + body + "\r\n").encode()


def take(app: Any, raw: bytes, recipient: str = SUPPORT) -> Decision:
    return accept_message(app, raw, Envelope("pipe", None, (recipient,)))


def show(app: Any, number: str | None) -> dict[str, Any]:
    with app.uow() as uow:
        ticket = uow.ticket_by_number(number or "")
        assert ticket is not None
        return ticket_document(uow, ticket)


def test_new_message_opens_ticket_in_receiving_department(app: Any) -> None:
    decision = take(app, mail(to="orders@example.com"), "orders@example.com")
    assert decision.outcome == "new_ticket"
    ticket = show(app, decision.ticket_number)
    assert ticket["department"] == "sales@example.com"
    assert ticket["status"] == "Open"
    assert ticket["messages"][0]["badge"] == "guest"


def test_unknown_department_is_logged(app: Any) -> None:
    decision = take(app, mail(to="nobody@example.org"), "nobody@example.org")
    assert (decision.outcome, decision.reason) == ("blocked", "unknown_department")


def test_reply_matched_by_in_reply_to(app: Any) -> None:
    first = take(app, mail())
    reply = take(
        app,
        mail(
            subject="Re: something else",
            message_id="m2@client.test",
            extra="In-Reply-To: <m1@client.test>\n",
        ),
    )
    assert (reply.outcome, reply.ticket_number) == ("reply", first.ticket_number)
    assert show(app, first.ticket_number)["status"] == "Customer-Reply"


def test_reply_matched_by_references_only(app: Any) -> None:
    first = take(app, mail())
    reply = take(
        app,
        mail(
            subject="Re: x",
            message_id="m2@client.test",
            extra="References: <other@x.test> <m1@client.test>\n",
        ),
    )
    assert reply.ticket_number == first.ticket_number


def test_reply_matched_by_subject_tag_from_requester(app: Any) -> None:
    first = take(app, mail())
    subject = f"AW: Re: [ticket #{first.ticket_number}] Printer on fire"
    reply = take(app, mail(subject=subject, message_id="m2@client.test"))
    assert (reply.outcome, reply.ticket_number) == ("reply", first.ticket_number)
    assert any("subject tag" in step for step in reply.trace)


def test_stranger_matched_only_by_subject_is_blocked_then_importable(app: Any) -> None:
    first = take(app, mail())
    subject = f"Re: [Ticket #{first.ticket_number}] Printer on fire"
    blocked = take(app, mail(sender="eve@elsewhere.test", subject=subject, message_id="e1@x.test"))
    assert (blocked.outcome, blocked.reason) == ("blocked", "not_authorized")
    ticket = show(app, first.ticket_number)
    assert [b["id"] for b in ticket["blocked_replies"]] == [blocked.import_id]
    assert len(ticket["messages"]) == 1
    assert import_blocked(app, blocked.import_id) == first.ticket_number
    assert len(show(app, first.ticket_number)["messages"]) == 2


def test_cc_recipient_may_reply(app: Any) -> None:
    first = take(app, mail())
    with app.uow() as uow:
        from core.actors import Actor
        from core.options import OptionChanges, update_ticket
        from core.ticketing import load_ticket

        alice = uow.admin_by_username("alice")
        actor = Actor(alice.email, alice.name, alice.id, alice.username)
        ticket = load_ticket(uow, first.ticket_number or "", actor)
        update_ticket(
            uow,
            ticket,
            actor,
            OptionChanges(cc=["colleague@client.test"]),
            app.policy,
            datetime.now(UTC),
        )
        app.finish(uow)
    subject = f"Re: [Ticket #{first.ticket_number}]"
    reply = take(app, mail(sender="colleague@client.test", subject=subject, message_id="c1@x"))
    assert reply.outcome == "reply"


def test_admin_address_without_token_is_not_an_operator(app: Any) -> None:
    first = take(app, mail())
    subject = f"Re: [Ticket #{first.ticket_number}]"
    reply = take(app, mail(sender="alice@example.com", subject=subject, message_id="a1@x"))
    assert reply.outcome == "reply"
    message = show(app, first.ticket_number)["messages"][-1]
    assert message["badge"] == "guest"
    assert show(app, first.ticket_number)["status"] == "Customer-Reply"


def test_reply_token_of_an_admin_makes_an_operator_reply(app: Any) -> None:
    first = take(app, mail())
    with app.uow() as uow:
        ticket = uow.ticket_by_number(first.ticket_number or "")
        token = issue_token(app.policy.token_secret, ticket.id, ticket.version, "alice@example.com")
    to = reply_address(SUPPORT, token)
    reply = take(
        app,
        mail(
            sender="alice@example.com",
            subject="Re: fire",
            message_id="a2@x",
            to=to,
            body="On our way.",
        ),
        to,
    )
    assert any("token" in step for step in reply.trace)
    ticket = show(app, first.ticket_number)
    assert ticket["messages"][-1]["badge"] == "operator"
    assert ticket["status"] == "Answered"


def test_forged_token_for_another_sender_does_not_verify(app: Any) -> None:
    first = take(app, mail())
    with app.uow() as uow:
        ticket = uow.ticket_by_number(first.ticket_number or "")
        token = issue_token(app.policy.token_secret, ticket.id, ticket.version, "alice@example.com")
    to = reply_address(SUPPORT, token)
    reply = take(app, mail(sender="eve@elsewhere.test", subject="hi", message_id="f1@x", to=to), to)
    assert reply.outcome == "new_ticket"
    assert any("does not verify" in step for step in reply.trace)


def test_thread_delivered_newest_first_ends_as_one_ticket(app: Any) -> None:
    third = mail(
        message_id="c@x.test",
        subject="Re: Re: topic",
        extra="In-Reply-To: <b@x.test>\nReferences: <a@x.test> <b@x.test>\n",
    )
    second = mail(
        message_id="b@x.test",
        subject="Re: topic",
        extra="In-Reply-To: <a@x.test>\nReferences: <a@x.test>\n",
    )
    first = mail(message_id="a@x.test", subject="topic")
    numbers = {take(app, raw).ticket_number for raw in (third, second, first)}
    assert len(numbers) == 1
    assert len(show(app, numbers.pop())["messages"]) == 3


def test_duplicate_by_message_id_and_by_hash(app: Any) -> None:
    assert take(app, mail()).outcome == "new_ticket"
    assert take(app, mail()).reason == "duplicate"
    no_id = mail(message_id=None, subject="no id")
    assert take(app, no_id).outcome == "new_ticket"
    assert take(app, no_id).reason == "duplicate"


@pytest.mark.parametrize(
    ("extra", "sender", "reason"),
    [
        ("Auto-Submitted: auto-replied\n", "dana@client.test", "auto_reply"),
        ("Precedence: bulk\n", "dana@client.test", "auto_reply"),
        ("X-Autoreply: yes\n", "dana@client.test", "auto_reply"),
        ("List-Id: <users.lists.example.org>\n", "dana@client.test", "auto_reply"),
        ("", "MAILER-DAEMON@mx.client.test", "bounce"),
        ("X-Ticketd-Loop: support@example.com\n", "dana@client.test", "loop"),
    ],
)
def test_automatic_mail_is_never_a_ticket(app: Any, extra: str, sender: str, reason: str) -> None:
    decision = take(app, mail(sender=sender, extra=extra))
    assert (decision.outcome, decision.reason) == ("blocked", reason)
    with app.uow() as uow:
        assert uow.tickets() == []
        assert uow.outbox_items() == []


def test_banned_address_and_domain(app: Any) -> None:
    with app.uow() as uow:
        directory.add_ban(uow, "spam.test", datetime.now(UTC))
        directory.add_ban(uow, "eve@elsewhere.test", datetime.now(UTC))
        uow.commit()
    assert take(app, mail(sender="x@spam.test")).reason == "banned"
    assert take(app, mail(sender="eve@elsewhere.test", message_id="e@x")).reason == "banned"


def test_rate_limit_counts_in_the_database(tmp_path: Path, database_url: str) -> None:
    from mailgate.app import App
    from mailgate.settings import load_settings

    config = write_config(tmp_path, database_url, "")
    text = config.read_text().replace("rate_limit_count = 1000", "rate_limit_count = 3")
    config.write_text(text)
    reasons = []
    for attempt in range(5):
        app = App(load_settings(config))
        app.ensure_schema()
        reasons.append(take(app, mail(message_id=f"r{attempt}@x")).reason)
        app.engine.dispose()
    assert reasons == [None, None, None, "rate_limited", "rate_limited"]


def test_closed_ticket_reply_blocked_when_department_does_not_reopen(
    tmp_path: Path, database_url: str
) -> None:
    from mailgate.app import App
    from mailgate.settings import load_settings

    config = write_config(tmp_path, database_url)
    text = config.read_text().replace(
        'email = "support@example.com"\n',
        'email = "support@example.com"\nreopen_on_reply = false\n',
    )
    config.write_text(text)
    app = App(load_settings(config))
    app.init()
    first = take(app, mail())
    assert (
        run_cli(
            config,
            "ticket",
            "update",
            first.ticket_number or "",
            "--admin",
            "alice",
            "--status",
            "Closed",
        ).returncode
        == 0
    )
    reply = take(app, mail(message_id="m2@x", extra="In-Reply-To: <m1@client.test>\n"))
    assert (reply.outcome, reply.reason) == ("blocked", "ticket_closed")
    app.engine.dispose()


def test_clients_only_department_refuses_strangers(tmp_path: Path, database_url: str) -> None:
    from mailgate.app import App
    from mailgate.settings import load_settings

    config = write_config(tmp_path, database_url)
    text = config.read_text().replace(
        'email = "sales@example.com"\n', 'email = "sales@example.com"\nclients_only = true\n'
    )
    config.write_text(text)
    app = App(load_settings(config))
    app.init()
    with app.uow() as uow:
        directory.add_client(uow, "Known Co", "owner@known.test", "", datetime.now(UTC))
        uow.commit()
    stranger = take(app, mail(to="sales@example.com"), "sales@example.com")
    assert stranger.reason == "not_authorized"
    client = take(
        app,
        mail(sender="owner@known.test", to="sales@example.com", message_id="k@x"),
        "sales@example.com",
    )
    assert client.outcome == "new_ticket"
    assert show(app, client.ticket_number)["messages"][0]["badge"] == "owner"
    app.engine.dispose()


def test_disallowed_attachment_dropped_and_explained(app: Any) -> None:
    boundary = "b1"
    raw = (
        "From: dana@client.test\r\nTo: support@example.com\r\nSubject: files\r\n"
        "Message-ID: <att@x>\r\nMIME-Version: 1.0\r\n"
        f'Content-Type: multipart/mixed; boundary="{boundary}"\r\n\r\n'
        f"--{boundary}\r\nContent-Type: text/plain\r\n\r\nsee files\r\n"
        f"--{boundary}\r\nContent-Type: text/plain\r\n"
        'Content-Disposition: attachment; filename="../../etc/notes.txt"\r\n\r\nhello\r\n'
        f"--{boundary}\r\nContent-Type: application/octet-stream\r\n"
        'Content-Disposition: attachment; filename="setup.exe"\r\n\r\nMZ\r\n'
        f"--{boundary}--\r\n"
    ).encode()
    decision = take(app, raw)
    message = show(app, decision.ticket_number)["messages"][0]
    assert [a["filename"] for a in message["attachments"]] == ["notes.txt"]
    assert any("setup.exe" in step and "not allowed" in step for step in decision.trace)


def test_importlog_show_has_trace(app: Any, config_path: Path) -> None:
    decision = take(app, mail())
    result = run_cli(config_path, "importlog", "show", str(decision.import_id), "--json")
    document = json.loads(result.stdout)
    assert document["outcome"] == "new_ticket"
    assert any("dedupe" in step for step in document["trace"])


def test_pipe_in_process_exit_codes(config_path: Path) -> None:
    assert run_cli(config_path, "init").returncode == 0
    assert run_pipe(config_path, mail(), "--department", SUPPORT).returncode == 0
    garbage = b"\x00\xff" * 100 + b"\r\n\r\n--broken"
    result = run_pipe(config_path, garbage, "--department", SUPPORT)
    assert result.returncode == 0
    assert result.stderr == b""
    listed = json.loads(run_cli(config_path, "importlog", "list", "--json").stdout)
    assert listed[0]["reason"] == "malformed"


def test_pipe_bad_config_exits_78(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("[smtp]\nlisten = 25\n")
    result = run_pipe(config, mail())
    assert result.returncode == 78
    assert result.stderr.startswith(b"ticketd: ")


def test_pipe_database_locked_exits_75(config_path: Path, database_url: str) -> None:
    if not database_url.startswith("sqlite"):
        pytest.skip("locks the SQLite file")
    import sqlite3

    assert run_cli(config_path, "init").returncode == 0
    text = config_path.read_text().replace("[database]\n", "[database]\nbusy_timeout_ms = 200\n")
    config_path.write_text(text)
    blocker = sqlite3.connect(database_url.removeprefix("sqlite:///"))
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        result = run_pipe(config_path, mail(), "--department", SUPPORT)
    finally:
        blocker.rollback()
        blocker.close()
    assert result.returncode == 75
    assert result.stderr.startswith(b"ticketd: ")
    assert run_pipe(config_path, mail(), "--department", SUPPORT).returncode == 0


def test_reply_to_a_split_off_message_follows_it(app: Any) -> None:
    from core.actors import Actor
    from core.restructure import split_ticket
    from core.ticketing import load_ticket

    first = take(app, mail())
    take(app, mail(message_id="m2@client.test", extra="In-Reply-To: <m1@client.test>\n"))
    with app.uow() as uow:
        alice = uow.admin_by_username("alice")
        actor = Actor(alice.email, alice.name, alice.id, alice.username)
        ticket = load_ticket(uow, first.ticket_number or "", actor)
        moved = [m.id for m in ticket.messages if m.mail_message_id == "m2@client.test"]
        new = split_ticket(uow, ticket, moved, actor, app.policy, datetime.now(UTC))
        app.finish(uow)
    answer = take(app, mail(message_id="m3@client.test", extra="In-Reply-To: <m2@client.test>\n"))
    assert answer.ticket_number == new.number


def _admin_token_reply(app: Any, number: str, body: str, message_id: str) -> Decision:
    with app.uow() as uow:
        ticket = uow.ticket_by_number(number)
        token = issue_token(app.policy.token_secret, ticket.id, ticket.version, "alice@example.com")
    to = reply_address(SUPPORT, token)
    raw = mail(
        sender="alice@example.com", subject="Re: fire", message_id=message_id, to=to, body=body
    )
    return take(app, raw, to)


def test_admin_email_commands_change_the_ticket(app: Any) -> None:
    first = take(app, mail())
    number = first.ticket_number or ""
    decision = _admin_token_reply(
        app, number, "#priority High\r\n#flag bob\r\n#tag outage\r\n\r\nLooking into it.", "c1@x"
    )
    ticket = show(app, number)
    assert (ticket["priority"], ticket["flagged_to"], ticket["tags"]) == ("High", "bob", ["outage"])
    assert ticket["messages"][-1]["body"].startswith("Looking into it.")
    assert ticket["messages"][-1]["badge"] == "operator"
    assert "command: #flag bob applied" in decision.trace


def test_admin_email_note_and_refused_command(app: Any) -> None:
    first = take(app, mail())
    number = first.ticket_number or ""
    decision = _admin_token_reply(
        app, number, "#note\r\n#flag carol\r\n\r\nCheck the logs.", "c2@x"
    )
    ticket = show(app, number)
    assert ticket["messages"][-1]["kind"] == "note"
    assert ticket["flagged_to"] is None
    assert any("#flag carol refused" in step for step in decision.trace)
    with app.uow() as uow:
        client_view = ticket_document(uow, uow.ticket_by_number(number), include_notes=False)
    assert [m["kind"] for m in client_view["messages"]] == ["reply"]


def test_commands_from_admin_address_without_token_are_just_text(app: Any) -> None:
    first = take(app, mail())
    subject = f"Re: [Ticket #{first.ticket_number}]"
    take(
        app,
        mail(
            sender="alice@example.com", subject=subject, message_id="c3@x", body="#close\r\nplease"
        ),
    )
    ticket = show(app, first.ticket_number)
    assert ticket["status"] == "Customer-Reply"
    assert ticket["messages"][-1]["body"].startswith("#close")
