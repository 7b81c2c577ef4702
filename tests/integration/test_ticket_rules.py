"""The seed's ticket rules, one test each, through core's operations on a real database.

Every test drives `core` inside `app.uow()` with times it chooses, commits with
`app.finish`, then reads the ticket back in a fresh unit of work and checks both
the resulting state and the ticket-log line the rule leaves.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import write_config

from core import directory, options, restructure, ticketing
from core.actors import Actor
from core.badges import sender_role
from core.errors import AccessDenied, NotFound, UsageError
from core.events import NoteAdded, TicketFlagged
from core.intake import Decision, Envelope, Stored, receive_mail
from core.mail import Address, InboundMail
from core.mail import Attachment as MailAttachment
from core.model import CustomField
from core.options import OptionChanges
from core.predefined import add_predefined_reply, fill_predefined
from core.ticketing import NewTicket
from core.views import ticket_document

SUPPORT = "support@example.com"
SALES = "sales@example.com"
NO_REOPEN = "billing@example.com"
DANA = "dana@client.test"
T0 = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)
NO_REOPEN_DEPARTMENT = f"""
[[departments]]
name = "Billing"
email = "{NO_REOPEN}"
members = ["alice"]
reopen_on_reply = false
"""


def at(minutes: int) -> datetime:
    """A moment `minutes` after the start of the scenario."""
    return T0 + timedelta(minutes=minutes)


def admin(uow: Any, username: str) -> Actor:
    found = uow.admin_by_username(username)
    assert found is not None
    return Actor(found.email, found.name, found.id, found.username)


def add_client(app: Any, name: str = "Dana Client", email: str = DANA) -> int:
    with app.uow() as uow:
        client = directory.add_client(uow, name, email, "Dana Ltd", T0)
        app.finish(uow)
    assert client.id is not None
    return client.id


def open_ticket(
    app: Any,
    sender: str = DANA,
    *,
    name: str = "Dana Client",
    subject: str = "Printer on fire",
    body: str = "The printer is on fire.",
    department: str = SUPPORT,
    when: datetime = T0,
    by: str | None = None,
    client_id: int | None = None,
    priority: str = "Medium",
) -> str:
    """Open a ticket as `sender`, or as admin `by` on their behalf; its number."""
    with app.uow() as uow:
        actor = admin(uow, by) if by else Actor(sender, name)
        request = NewTicket(department, sender, name, subject, body, priority, client_id)
        ticket = ticketing.open_ticket(uow, request, actor, app.policy, when)
        app.finish(uow)
    return ticket.number


def client_says(
    app: Any, number: str, body: str, when: datetime, sender: str = DANA, **kw: Any
) -> int:
    with app.uow() as uow:
        ticket = ticketing.load_ticket(uow, number)
        role = sender_role(uow, sender, ticket.client_id).badge
        message = ticketing.client_reply(
            uow, ticket, Actor(sender, "Dana Client"), role, body, when, **kw
        )
        app.finish(uow)
    assert message.id is not None
    return message.id


def admin_says(
    app: Any, number: str, body: str, when: datetime, by: str = "alice", **kw: Any
) -> int:
    with app.uow() as uow:
        ticket = ticketing.load_ticket(uow, number, admin(uow, by))
        message = ticketing.admin_reply(uow, ticket, admin(uow, by), body, app.policy, when, **kw)
        app.finish(uow)
    assert message.id is not None
    return message.id


def update(app: Any, number: str, when: datetime, by: str = "alice", **changes: Any) -> None:
    with app.uow() as uow:
        actor = admin(uow, by)
        ticket = ticketing.load_ticket(uow, number, actor)
        options.update_ticket(uow, ticket, actor, OptionChanges(**changes), app.policy, when)
        app.finish(uow)


def show(app: Any, number: str, include_notes: bool = True) -> dict[str, Any]:
    """The `ticket show` document, read in a fresh unit of work."""
    with app.uow() as uow:
        return ticket_document(uow, ticketing.load_ticket(uow, number), include_notes)


def log_of(document: dict[str, Any], action: str) -> list[tuple[str, str]]:
    """(actor, detail) of each log line with that action."""
    return [(e["actor"], e["detail"]) for e in document["log"] if e["action"] == action]


def receive(
    app: Any,
    sender: str,
    subject: str,
    text: str,
    when: datetime,
    *,
    message_id: str,
    in_reply_to: tuple[str, ...] = (),
    to: str = SUPPORT,
) -> Decision:
    """One inbound mail through the intake decision, committed."""
    mail = InboundMail(
        message_id=message_id,
        subject=subject,
        sender=Address(sender, "Dana Client"),
        to=(Address(to),),
        in_reply_to=in_reply_to,
        text=text,
        new_text=text,
    )
    raw = f"From: {sender}\r\nSubject: {subject}\r\n\r\n{text}\r\n".encode()
    stored = Stored(app.blobs.put(raw), len(raw))
    with app.uow() as uow:
        decision = receive_mail(
            uow, mail, Envelope("pipe", sender, (to,)), stored, app.policy, when
        )
        app.finish(uow)
    return decision


@pytest.fixture
def no_reopen_app(tmp_path: Path, database_url: str) -> Iterator[Any]:
    """The standard directory plus a Billing department with reopen_on_reply = false."""
    from mailgate.app import App
    from mailgate.settings import load_settings

    config = write_config(tmp_path / "billing", database_url, NO_REOPEN_DEPARTMENT)
    application = App(load_settings(config))
    application.init()
    yield application
    application.engine.dispose()


# --- opening tickets -----------------------------------------------------------------


def test_a_client_opens_a_ticket_that_starts_open_on_their_account(app: Any) -> None:
    client_id = add_client(app)
    number = open_ticket(app, DANA, when=at(0))
    doc = show(app, number)
    assert doc["status"] == "Open"
    assert doc["client_id"] == client_id
    assert doc["requester"] == {"email": DANA, "name": "Dana Client"}
    assert doc["created_at"] == doc["last_reply_at"] == at(0).isoformat()
    assert [(m["badge"], m["author_email"]) for m in doc["messages"]] == [("owner", DANA)]
    assert log_of(doc, "opened") == [(DANA, f"in {SUPPORT} by {DANA}")]


def test_any_sender_may_open_a_ticket_as_a_guest(app: Any) -> None:
    number = open_ticket(app, "stranger@else.test", name="Sam Stranger")
    doc = show(app, number)
    assert (doc["status"], doc["client_id"]) == ("Open", None)
    assert doc["messages"][0]["badge"] == "guest"
    assert log_of(doc, "opened") == [("stranger@else.test", f"in {SUPPORT} by stranger@else.test")]


def test_an_admin_opens_a_ticket_on_behalf_of_a_client(app: Any) -> None:
    client_id = add_client(app)
    number = open_ticket(app, DANA, by="alice", client_id=client_id, priority="High")
    doc = show(app, number)
    assert (doc["status"], doc["priority"], doc["client_id"]) == ("Open", "High", client_id)
    assert doc["requester"]["email"] == DANA
    message = doc["messages"][0]
    assert (message["badge"], message["author_email"]) == ("operator", "alice@example.com")
    assert log_of(doc, "opened") == [("alice", f"in {SUPPORT} by alice")]


def test_an_admin_opens_a_ticket_for_a_name_and_address_outside_the_directory(app: Any) -> None:
    number = open_ticket(app, "walk-in@else.test", name="Wanda Walkin", by="bob")
    doc = show(app, number)
    assert doc["client_id"] is None
    assert doc["requester"] == {"email": "walk-in@else.test", "name": "Wanda Walkin"}
    assert doc["messages"][0]["badge"] == "operator"
    assert log_of(doc, "opened") == [("bob", f"in {SUPPORT} by bob")]


def test_an_admin_opens_a_ticket_only_in_their_own_departments(app: Any) -> None:
    with pytest.raises(AccessDenied, match=f"carol is not a member of department {SUPPORT}"):
        open_ticket(app, DANA, by="carol")


def test_a_contact_opening_a_ticket_attaches_it_to_the_master_account(app: Any) -> None:
    client_id = add_client(app)
    with app.uow() as uow:
        directory.add_contact(uow, client_id, "billing@dana.test", "Bill Contact", True)
        app.finish(uow)
    number = open_ticket(app, "billing@dana.test", name="Bill Contact")
    doc = show(app, number)
    assert doc["client_id"] == client_id
    assert doc["messages"][0]["badge"] == "sub_account"
    assert log_of(doc, "opened") == [("billing@dana.test", f"in {SUPPORT} by billing@dana.test")]


# --- replies and statuses -------------------------------------------------------------


def test_a_client_reply_sets_customer_reply(app: Any) -> None:
    add_client(app)
    number = open_ticket(app)
    admin_says(app, number, "Unplug it.", at(5))
    client_says(app, number, "Done, still smoking.", at(10))
    doc = show(app, number)
    assert doc["status"] == "Customer-Reply"
    assert doc["messages"][-1]["badge"] == "owner"
    assert log_of(doc, "status")[-1] == (DANA, "Answered -> Customer-Reply")


def test_an_admin_reply_sets_answered(app: Any) -> None:
    number = open_ticket(app)
    admin_says(app, number, "We are on it.", at(3))
    doc = show(app, number)
    assert doc["status"] == "Answered"
    assert doc["messages"][-1]["badge"] == "operator"
    assert log_of(doc, "status") == [("alice", "Open -> Answered")]


def test_an_admin_reply_may_set_a_named_status(app: Any) -> None:
    number = open_ticket(app)
    admin_says(app, number, "Waiting on the vendor.", at(3), status="on hold")
    doc = show(app, number)
    assert doc["status"] == "On Hold"
    assert log_of(doc, "status") == [("alice", "Open -> On Hold")]
    with pytest.raises(UsageError, match="unknown status 'Sleeping'"):
        admin_says(app, number, "zzz", at(4), status="Sleeping")
    assert len(show(app, number)["messages"]) == 2


def test_a_reply_updates_the_last_reply_time(app: Any) -> None:
    number = open_ticket(app, when=at(0))
    admin_says(app, number, "Looking.", at(30))
    assert show(app, number)["last_reply_at"] == at(30).isoformat()
    client_says(app, number, "Thanks.", at(90))
    doc = show(app, number)
    assert doc["last_reply_at"] == at(90).isoformat()
    assert log_of(doc, "reply") == [
        ("alice", f"{at(0).isoformat()} -> {at(30).isoformat()}"),
        (DANA, f"{at(30).isoformat()} -> {at(90).isoformat()}"),
    ]


def test_a_client_reply_to_a_closed_ticket_reopens_it(app: Any) -> None:
    number = open_ticket(app)
    update(app, number, at(5), status="Closed")
    decision = receive(
        app,
        DANA,
        f"Re: [Ticket #{number}] Printer on fire",
        "It caught fire again.",
        at(60),
        message_id="again-1@client.test",
    )
    assert (decision.outcome, decision.reason, decision.ticket_number) == ("reply", None, number)
    doc = show(app, number)
    assert doc["status"] == "Customer-Reply"
    assert doc["messages"][-1]["body"] == "It caught fire again."
    assert log_of(doc, "status") == [
        ("alice", "Open -> Closed"),
        (DANA, "Closed -> Customer-Reply"),
    ]


def test_a_reply_to_a_closed_ticket_is_blocked_when_its_department_does_not_reopen(
    no_reopen_app: Any,
) -> None:
    app = no_reopen_app
    number = open_ticket(app, department=NO_REOPEN, subject="Invoice wrong")
    update(app, number, at(5), status="Closed")
    decision = receive(
        app,
        DANA,
        f"Re: [Ticket #{number}] Invoice wrong",
        "Still wrong.",
        at(60),
        message_id="late-1@client.test",
        to=NO_REOPEN,
    )
    assert (decision.outcome, decision.reason, decision.ticket_number) == (
        "blocked",
        "ticket_closed",
        number,
    )
    assert any("does not reopen" in line for line in decision.trace)
    doc = show(app, number)
    assert doc["status"] == "Closed"
    assert len(doc["messages"]) == 1
    assert [r["reason"] for r in doc["blocked_replies"]] == ["ticket_closed"]
    assert log_of(doc, "status") == [("alice", "Open -> Closed")]


def test_a_predefined_reply_fills_merge_fields_and_the_signature_is_appended(app: Any) -> None:
    with app.uow() as uow:
        department = uow.department_by_email(SUPPORT)
        uow.add(CustomField(department_id=department.id, name="Domain"))
        add_predefined_reply(
            uow,
            "Restart",
            "Hello [FIRSTNAME],\n\n[NAME] <[EMAIL]>: restart [Domain]. [NOT A FIELD] stays.",
            "howto",
        )
        app.finish(uow)
    number = open_ticket(app, name="Dana Q Client")
    update(app, number, at(1), custom_fields={"Domain": "dana.test"})
    with app.uow() as uow:
        actor = admin(uow, "alice")
        ticket = ticketing.load_ticket(uow, number, actor)
        body = fill_predefined(uow, ticket, "restart")
        ticketing.admin_reply(uow, ticket, actor, body, app.policy, at(2))
        app.finish(uow)
    doc = show(app, number)
    assert doc["messages"][-1]["body"] == (
        "Hello Dana,\n\nDana Q Client <dana@client.test>: restart dana.test. "
        "[NOT A FIELD] stays.\n\n-- Alice, Support"
    )
    assert log_of(doc, "custom field") == [("alice", "Domain:  -> dana.test")]
    assert log_of(doc, "status") == [("alice", "Open -> Answered")]


def test_the_signature_is_not_appended_twice(app: Any) -> None:
    number = open_ticket(app)
    admin_says(app, number, "Fixed.\n\n-- Alice, Support", at(1))
    admin_says(app, number, "Bob here.", at(2), by="bob")
    messages = show(app, number)["messages"]
    assert messages[1]["body"].count("-- Alice, Support") == 1
    assert messages[2]["body"] == "Bob here."


def test_markdown_is_stored_as_source_and_rendered_to_sanitised_html(app: Any) -> None:
    number = open_ticket(app)
    source = (
        "**Restart** the _spooler_:\n\n- one\n- two\n\n"
        "<script>alert(1)</script> [x](javascript:alert(2))"
    )
    admin_says(app, number, source, at(1), by="bob")
    message = show(app, number)["messages"][-1]
    assert message["body"] == source
    html = message["body_html"]
    assert "<strong>Restart</strong>" in html and "<em>spooler</em>" in html
    assert "<li>one</li>" in html
    assert "<script" not in html and "&lt;script&gt;" in html
    assert 'href="javascript' not in html
    assert log_of(show(app, number), "status") == [("bob", "Open -> Answered")]


# --- notes and mentions -----------------------------------------------------------------


def test_notes_are_private(app: Any) -> None:
    number = open_ticket(app)
    with app.uow() as uow:
        actor = admin(uow, "alice")
        ticket = ticketing.load_ticket(uow, number, actor)
        ticketing.add_note(uow, ticket, actor, "Customer owes us money, careful.", at(1))
        version = ticket.version
        app.finish(uow)
    admin_doc = show(app, number)
    client_doc = show(app, number, include_notes=False)
    assert [m["kind"] for m in admin_doc["messages"]] == ["reply", "note"]
    assert [m["kind"] for m in client_doc["messages"]] == ["reply"]
    assert "owes us money" not in json.dumps(client_doc)
    assert admin_doc["status"] == "Open" and admin_doc["version"] == version
    assert log_of(admin_doc, "note") == [("alice", "note added")]
    with app.uow() as uow, pytest.raises(AccessDenied):
        ticketing.add_note(uow, ticketing.load_ticket(uow, number), Actor(DANA, "Dana"), "x", at(2))


def test_a_mention_in_a_note_names_the_mentioned_admins(app: Any) -> None:
    number = open_ticket(app)
    with app.uow() as uow:
        actor = admin(uow, "alice")
        bob, carol = admin(uow, "bob"), admin(uow, "carol")
        ticket = ticketing.load_ticket(uow, number, actor)
        note = ticketing.add_note(
            uow,
            ticket,
            actor,
            "@bob and @carol.\nMail bob@client.test, not @nobody. Me: @alice. Again @bob",
            at(1),
        )
        notes = [e for e in uow.events if isinstance(e, NoteAdded)]
        assert notes == [
            NoteAdded(ticket.id, actor.admin_id, note.id, (bob.admin_id, carol.admin_id))
        ]
        app.finish(uow)
    assert log_of(show(app, number), "note") == [("alice", "note added, mentions @bob, @carol")]


# --- ticket options -----------------------------------------------------------------------


def test_every_change_of_ticket_options_is_logged_with_old_and_new_values(app: Any) -> None:
    number = open_ticket(app)
    client_id = add_client(app, "Other Co", "boss@other.test")
    steps: list[tuple[dict[str, Any], list[tuple[str, str]]]] = [
        ({"subject": "Printer smoking"}, [("subject", "Printer on fire -> Printer smoking")]),
        ({"status": "In Progress"}, [("status", "Open -> In Progress")]),
        ({"priority": "low"}, [("priority", "Medium -> Low")]),
        ({"cc": ["a@cc.test", " B@cc.test "]}, [("cc", " -> a@cc.test, b@cc.test")]),
        ({"cc": ["a@cc.test"]}, [("cc", "a@cc.test, b@cc.test -> a@cc.test")]),
        ({"client_id": client_id}, [("client", f" -> {client_id}")]),
        ({"service_ref": "hosting-42"}, [("service", " -> hosting-42")]),
        ({"add_tags": ["Smoke", "hardware"]}, [("tag added", "smoke"), ("tag added", "hardware")]),
        ({"remove_tags": ["smoke"]}, [("tag removed", "smoke")]),
        ({"flag_username": "bob"}, [("flag", " -> bob")]),
        ({"unflag": True}, [("flag", "bob -> ")]),
        ({"department_email": SALES}, [("department", f"{SUPPORT} -> {SALES}")]),
    ]
    seen = len(show(app, number)["log"])
    for minute, (changes, expected) in enumerate(steps, start=1):
        update(app, number, at(minute), **changes)
        doc = show(app, number)
        added = [(e["actor"], e["action"], e["detail"], e["at"]) for e in doc["log"][seen:]]
        seen = len(doc["log"])
        when = at(minute).isoformat()
        assert added == [("alice", action, detail, when) for action, detail in expected]
    assert doc["department"] == SALES
    assert (doc["subject"], doc["status"], doc["priority"]) == (
        "Printer smoking",
        "In Progress",
        "Low",
    )
    assert (doc["cc"], doc["client_id"], doc["service"]) == (["a@cc.test"], client_id, "hosting-42")
    assert (doc["tags"], doc["flagged_to"]) == (["hardware"], None)
    with app.uow() as uow, pytest.raises(AccessDenied):
        ticketing.load_ticket(uow, number, admin(uow, "alice"))


def test_an_unchanged_option_is_not_logged(app: Any) -> None:
    number = open_ticket(app)
    before = show(app, number)
    update(app, number, at(1), status="open", priority="Medium", subject="Printer on fire", cc=[])
    after = show(app, number)
    assert after["log"] == before["log"]
    assert after["version"] == before["version"]


def test_flagging_a_ticket_to_yourself_is_logged(app: Any) -> None:
    number = open_ticket(app)
    with app.uow() as uow:
        actor = admin(uow, "alice")
        ticket = ticketing.load_ticket(uow, number, actor)
        options.flag_ticket(uow, ticket, actor, "alice", at(1))
        assert uow.events == [TicketFlagged(ticket.id, actor.admin_id, actor.admin_id)]
        app.finish(uow)
    doc = show(app, number)
    assert doc["flagged_to"] == "alice"
    assert log_of(doc, "flag") == [("alice", " -> alice")]


def test_a_ticket_is_flagged_only_to_an_admin_of_its_department(app: Any) -> None:
    number = open_ticket(app)
    with pytest.raises(UsageError, match="carol is not a member"):
        update(app, number, at(1), flag_username="carol")
    with pytest.raises(NotFound, match="no admin zed"):
        update(app, number, at(1), flag_username="zed")
    assert show(app, number)["flagged_to"] is None


def test_an_admin_watches_and_unwatches_a_ticket(app: Any) -> None:
    number = open_ticket(app)
    for on, when in ((True, at(1)), (True, at(2)), (False, at(3))):
        with app.uow() as uow:
            actor = admin(uow, "bob")
            options.watch(uow, ticketing.load_ticket(uow, number, actor), actor, on, when)
            app.finish(uow)
        if when == at(1):
            assert show(app, number)["watchers"] == ["bob"]
    doc = show(app, number)
    assert doc["watchers"] == []
    assert [(e["action"], e["at"]) for e in doc["log"] if "watch" in e["action"]] == [
        ("watch", at(1).isoformat()),
        ("unwatch", at(3).isoformat()),
    ]
    with app.uow() as uow, pytest.raises(AccessDenied):
        actor = admin(uow, "carol")
        options.watch(uow, ticketing.load_ticket(uow, number), actor, True, at(4))


# --- merge ------------------------------------------------------------------------------------


def _merge(app: Any, numbers: list[str], when: datetime, by: str = "alice") -> str:
    with app.uow() as uow:
        actor = admin(uow, by)
        tickets = [ticketing.load_ticket(uow, n, actor) for n in numbers]
        target = restructure.merge_tickets(uow, tickets, actor, when)
        app.finish(uow)
    return target.number


def test_merging_goes_into_the_oldest_ticket_and_marks_it_merged_once(app: Any) -> None:
    old = open_ticket(app, subject="Printer on fire", when=at(0))
    new = open_ticket(app, subject="Printer smoking", when=at(10))
    newest = open_ticket(app, subject="Printer gone", when=at(20))
    assert _merge(app, [newest, new], at(30)) == new
    assert _merge(app, [new, old], at(40)) == old
    doc = show(app, old)
    assert doc["subject"] == "Printer on fire [MERGED]"
    assert (doc["number"], doc["merged_into"]) == (old, None)
    assert log_of(doc, "subject") == [("alice", "Printer on fire -> Printer on fire [MERGED]")]
    assert log_of(doc, "merged") == [("alice", f"{new} merged in")]
    with app.uow() as uow:
        listed = [t.number for t in uow.tickets()]
        merged = uow.ticket_by_number(new)
        assert merged is not None and merged.subject == "Printer smoking [MERGED]"
    assert listed == [old]


def test_merging_takes_the_status_of_the_latest_reply_and_the_client_of_the_oldest(
    app: Any,
) -> None:
    dana = add_client(app)
    other = add_client(app, "Eve Other", "eve@other.test")
    old = open_ticket(app, DANA, when=at(0))
    new = open_ticket(app, "eve@other.test", name="Eve Other", when=at(10))
    admin_says(app, old, "On it.", at(20), status="In Progress")
    client_says(app, new, "Hello?", at(30), sender="eve@other.test")
    admin_says(app, old, "Still on it.", at(25), status="On Hold")
    assert _merge(app, [new, old], at(40)) == old
    doc = show(app, old)
    assert (doc["status"], doc["client_id"]) == ("Customer-Reply", dana)
    assert doc["client_id"] != other
    assert doc["last_reply_at"] == at(30).isoformat()
    assert log_of(doc, "status")[-1] == ("alice", "On Hold -> Customer-Reply")


def test_merging_moves_messages_notes_attachments_ccs_tags_and_watchers_in_time_order(
    app: Any,
) -> None:
    old = open_ticket(app, body="first", when=at(0))
    new = open_ticket(app, body="second", when=at(5))
    client_says(
        app,
        new,
        "photo attached",
        at(7),
        attachments=[MailAttachment("fire.jpg", "image/jpeg", b"\xff\xd8jpeg")],
    )
    admin_says(app, old, "third", at(10))
    update(app, new, at(11), cc=["boss@client.test"], add_tags=["smoke"])
    update(app, old, at(11), cc=["it@client.test"], add_tags=["printer"])
    with app.uow() as uow:
        bob = admin(uow, "bob")
        ticket = ticketing.load_ticket(uow, new, bob)
        options.watch(uow, ticket, bob, True, at(12))
        ticketing.add_note(uow, ticket, bob, "internal: smells of toner", at(13))
        app.finish(uow)
    _merge(app, [old, new], at(20))
    doc = show(app, old)
    assert [(m["kind"], m["body"].split("\n")[0]) for m in doc["messages"]] == [
        ("reply", "first"),
        ("reply", "second"),
        ("reply", "photo attached"),
        ("reply", "third"),
        ("note", "internal: smells of toner"),
    ]
    assert [a["filename"] for a in doc["messages"][2]["attachments"]] == ["fire.jpg"]
    assert sorted(doc["cc"]) == ["boss@client.test", "it@client.test"]
    assert doc["tags"] == ["printer", "smoke"]
    assert doc["watchers"] == ["bob"]
    with app.uow() as uow:
        gone = uow.ticket_by_number(new)
        assert gone is not None
        assert (gone.messages, gone.cc, gone.tags, gone.watches) == ([], [], [], [])
        assert [e.detail for e in gone.log if e.action == "merged"] == [f"into {old}"]


def test_merged_ticket_numbers_resolve_to_the_target(app: Any) -> None:
    old = open_ticket(app, when=at(0))
    received = receive(
        app, DANA, "Toner empty", "Please send toner.", at(5), message_id="toner-1@client.test"
    )
    new = received.ticket_number
    assert new is not None and new != old
    _merge(app, [old, new], at(10))
    with app.uow() as uow:
        assert ticketing.load_ticket(uow, new).number == old
        assert ticketing.load_ticket(uow, f"#{new}").number == old
    by_tag = receive(
        app,
        DANA,
        f"RE: [Ticket #{new}] Toner empty",
        "Any news?",
        at(20),
        message_id="toner-2@client.test",
    )
    by_thread = receive(
        app,
        DANA,
        "Re: Toner empty",
        "Hello??",
        at(30),
        message_id="toner-3@client.test",
        in_reply_to=("toner-1@client.test",),
    )
    assert (by_tag.outcome, by_tag.ticket_number) == ("reply", old)
    assert (by_thread.outcome, by_thread.ticket_number) == ("reply", old)
    doc = show(app, old)
    assert [m["body"] for m in doc["messages"]][-2:] == ["Any news?", "Hello??"]
    assert log_of(doc, "merged") == [("alice", f"{new} merged in")]


def test_merging_needs_two_tickets_the_admin_may_work_on(app: Any) -> None:
    one = open_ticket(app)
    sales = open_ticket(app, department=SALES)
    with pytest.raises(UsageError, match="at least two"):
        _merge(app, [one, one], at(1))
    with app.uow() as uow, pytest.raises(AccessDenied):
        alice = admin(uow, "alice")
        tickets = [ticketing.load_ticket(uow, one), ticketing.load_ticket(uow, sales)]
        restructure.merge_tickets(uow, tickets, alice, at(1))
    assert show(app, one)["subject"] == "Printer on fire"


# --- split, edit, delete -------------------------------------------------------------------


def test_split_moves_the_chosen_replies_with_their_attachments_to_a_new_ticket(
    app: Any,
) -> None:
    client_id = add_client(app)
    number = open_ticket(app, body="printer", when=at(0))
    admin_says(app, number, "unplug it", at(1))
    moved = client_says(
        app,
        number,
        "also my scanner",
        at(2),
        attachments=[MailAttachment("scan.pdf", "application/pdf", b"%PDF-1.4 scan")],
    )
    later = client_says(app, number, "scanner log", at(3))
    with app.uow() as uow:
        actor = admin(uow, "alice")
        ticket = ticketing.load_ticket(uow, number, actor)
        new = restructure.split_ticket(
            uow,
            ticket,
            [moved, later],
            actor,
            app.policy,
            at(4),
            department_email=None,
            priority="High",
            subject="Scanner broken",
        )
        app.finish(uow)
    doc = show(app, new.number)
    assert (doc["subject"], doc["priority"], doc["status"]) == ("Scanner broken", "High", "Open")
    assert (doc["department"], doc["client_id"]) == (SUPPORT, client_id)
    assert doc["requester"]["email"] == DANA
    assert [m["id"] for m in doc["messages"]] == [moved, later]
    assert [a["filename"] for a in doc["messages"][0]["attachments"]] == ["scan.pdf"]
    assert doc["last_reply_at"] == at(3).isoformat()
    assert log_of(doc, "split") == [("alice", f"from {number}")]
    source = show(app, number)
    assert [m["body"].split("\n")[0] for m in source["messages"]] == ["printer", "unplug it"]
    assert log_of(source, "split") == [("alice", f"2 message(s) moved to {new.number}")]


def test_split_into_another_department_the_admin_belongs_to(no_reopen_app: Any) -> None:
    app = no_reopen_app
    number = open_ticket(app, body="printer")
    moved = client_says(app, number, "and my invoice is wrong", at(1))
    with app.uow() as uow:
        actor = admin(uow, "alice")
        ticket = ticketing.load_ticket(uow, number, actor)
        new = restructure.split_ticket(
            uow, ticket, [moved], actor, app.policy, at(2), NO_REOPEN, "Low", "Invoice"
        )
        app.finish(uow)
    doc = show(app, new.number)
    assert (doc["department"], doc["priority"], doc["subject"]) == (NO_REOPEN, "Low", "Invoice")
    assert [m["id"] for m in doc["messages"]] == [moved]
    assert [m["id"] for m in show(app, number)["messages"]] != [moved]


def test_split_refuses_a_department_the_admin_is_not_in_and_an_empty_source(
    app: Any,
) -> None:
    number = open_ticket(app, body="printer")
    moved = client_says(app, number, "and I want to buy a new one", at(1))
    with app.uow() as uow:
        actor = admin(uow, "alice")
        ticket = ticketing.load_ticket(uow, number, actor)
        with pytest.raises(AccessDenied):
            restructure.split_ticket(uow, ticket, [moved], actor, app.policy, at(2), SALES)
    with app.uow() as uow:
        bob = admin(uow, "bob")
        ticket = ticketing.load_ticket(uow, number, bob)
        with pytest.raises(UsageError, match="at least one message"):
            restructure.split_ticket(
                uow, ticket, [m.id for m in ticket.messages], bob, app.policy, at(2)
            )
        with pytest.raises(NotFound):
            restructure.split_ticket(uow, ticket, [moved + 1000], bob, app.policy, at(2))


def test_editing_a_reply_keeps_the_new_source_and_logs_it(app: Any) -> None:
    number = open_ticket(app)
    reply = admin_says(app, number, "Try *this*.", at(1))
    with app.uow() as uow:
        actor = admin(uow, "bob")
        ticket = ticketing.load_ticket(uow, number, actor)
        restructure.edit_reply(uow, ticket, reply, "Try **that**.", actor, at(2))
        app.finish(uow)
    doc = show(app, number)
    message = next(m for m in doc["messages"] if m["id"] == reply)
    assert message["body"] == "Try **that**."
    assert "<strong>that</strong>" in message["body_html"]
    assert message["edited_at"] == at(2).isoformat()
    assert log_of(doc, "reply edited") == [("bob", f"message {reply}")]


def test_deleting_a_reply_removes_it_and_logs_it(app: Any) -> None:
    number = open_ticket(app)
    reply = admin_says(app, number, "Oops, wrong ticket.", at(1))
    with app.uow() as uow:
        actor = admin(uow, "alice")
        ticket = ticketing.load_ticket(uow, number, actor)
        assert restructure.delete_reply(uow, ticket, reply, actor, at(2)) is False
        app.finish(uow)
    doc = show(app, number)
    assert [m["author_email"] for m in doc["messages"]] == [DANA]
    assert log_of(doc, "reply deleted") == [("alice", f"message {reply} by alice@example.com")]
    with app.uow() as uow:
        assert uow.message(reply) is None


def test_deleting_the_first_message_deletes_the_ticket(app: Any) -> None:
    number = open_ticket(app)
    admin_says(app, number, "Answer.", at(1))
    first = show(app, number)["messages"][0]["id"]
    with app.uow() as uow:
        actor = admin(uow, "alice")
        ticket = ticketing.load_ticket(uow, number, actor)
        assert restructure.delete_reply(uow, ticket, first, actor, at(2)) is True
        app.finish(uow)
    with app.uow() as uow:
        with pytest.raises(NotFound):
            ticketing.load_ticket(uow, number)
        assert uow.message(first) is None


def test_deleting_a_ticket_removes_it_and_keeps_its_number_issued(app: Any) -> None:
    number = open_ticket(app)
    merged = open_ticket(app, when=at(1))
    _merge(app, [number, merged], at(2))
    with app.uow() as uow:
        actor = admin(uow, "alice")
        restructure.delete_ticket(uow, ticketing.load_ticket(uow, number, actor), actor, at(3))
        app.finish(uow)
    with app.uow() as uow:
        for gone in (number, merged):
            with pytest.raises(NotFound):
                ticketing.load_ticket(uow, gone)
        assert uow.number_issued(number)
        assert uow.tickets(include_merged=True) == []
        assert uow.bans() == []


def test_deleting_a_ticket_and_blocking_the_sender_bans_the_requester(app: Any) -> None:
    number = open_ticket(app, "Spam@Spammer.test", name="Spammer")
    with app.uow() as uow:
        actor = admin(uow, "alice")
        ticket = ticketing.load_ticket(uow, number, actor)
        restructure.delete_ticket(uow, ticket, actor, at(1), block_sender=True)
        app.finish(uow)
    with app.uow() as uow:
        assert [b.pattern for b in uow.bans()] == ["spam@spammer.test"]
        assert uow.ticket_by_number(number) is None
    again = receive(
        app, "spam@spammer.test", "Buy now", "cheap", at(5), message_id="s2@spammer.test"
    )
    assert (again.outcome, again.reason, again.ticket_number) == ("blocked", "banned", None)


# --- ratings, billing, access ----------------------------------------------------------------


def test_a_client_rates_admin_replies_from_1_to_5(app: Any) -> None:
    number = open_ticket(app)
    reply = admin_says(app, number, "Fixed.", at(1))
    own = client_says(app, number, "Thanks!", at(2))
    with app.uow() as uow:
        ticket = ticketing.load_ticket(uow, number)
        for bad in (0, 6):
            with pytest.raises(UsageError, match="1 to 5"):
                restructure.rate_reply(uow, ticket, reply, bad)
        with pytest.raises(UsageError, match="only admin replies"):
            restructure.rate_reply(uow, ticket, own, 5)
        restructure.rate_reply(uow, ticket, reply, 5)
        app.finish(uow)
    ratings = {m["id"]: m["rating"] for m in show(app, number)["messages"]}
    assert ratings == {min(ratings): None, reply: 5, own: None}


def test_a_billable_item_needs_a_client_account_first(app: Any) -> None:
    number = open_ticket(app, "walk-in@else.test")
    client_id = add_client(app)
    with app.uow() as uow:
        actor = admin(uow, "alice")
        ticket = ticketing.load_ticket(uow, number, actor)
        with pytest.raises(UsageError, match="associate a client"):
            restructure.add_billable_item(uow, ticket, actor, "Repair", "40.00", "none", at(1))
    update(app, number, at(2), client_id=client_id)
    with app.uow() as uow:
        actor = admin(uow, "alice")
        ticket = ticketing.load_ticket(uow, number, actor)
        restructure.add_billable_item(uow, ticket, actor, "Repair", "40.00", "next_cron", at(3))
        app.finish(uow)
    with app.uow() as uow:
        ticket = ticketing.load_ticket(uow, number)
        assert [(b.description, str(b.amount)) for b in uow.billable_items(ticket.id)] == [
            ("Repair", "40.00")
        ]
    assert log_of(show(app, number), "billable item") == [("alice", "Repair: 40.00 (next_cron)")]


def test_an_admin_outside_the_department_is_refused(app: Any) -> None:
    number = open_ticket(app)
    before = show(app, number)
    with app.uow() as uow:
        carol = admin(uow, "carol")
        with pytest.raises(AccessDenied) as refused:
            ticketing.load_ticket(uow, number, carol)
        assert str(refused.value) == f"carol is not a member of department {SUPPORT}"
        ticket = ticketing.load_ticket(uow, number)
        for attempt in (
            lambda: ticketing.admin_reply(uow, ticket, carol, "hi", app.policy, at(1)),
            lambda: ticketing.add_note(uow, ticket, carol, "hi", at(1)),
            lambda: options.update_ticket(
                uow, ticket, carol, OptionChanges(status="Closed"), app.policy, at(1)
            ),
            lambda: restructure.delete_ticket(uow, ticket, carol, at(1)),
        ):
            with pytest.raises(AccessDenied, match="carol is not a member"):
                attempt()
    assert show(app, number) == before
