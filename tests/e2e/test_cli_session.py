"""A scripted session at the command line, as an admin and a customer would have it:
open, reply, the customer's mail through the pipe, a note, options, a collision, a
merge and a split, each step checked against `ticketd ticket show --json`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from conftest import run_cli, run_pipe

SUPPORT = "support@example.com"


class Session:
    """`ticketd` against one config; every command but the expected failures must exit 0."""

    def __init__(self, config: Path) -> None:
        self.config = config

    def ok(self, *args: str) -> str:
        done = run_cli(self.config, *args)
        assert done.returncode == 0, f"{args}: {done.stderr}"
        return done.stdout.strip()

    def show(self, number: str) -> dict[str, Any]:
        document: dict[str, Any] = json.loads(self.ok("ticket", "show", number, "--json"))
        return document

    def actions(self, document: dict[str, Any]) -> list[tuple[str, str, str]]:
        return [(e["actor"], e["action"], e["detail"]) for e in document["log"]]


def customer_mail(number: str, body: str) -> bytes:
    return (
        "From: Dana Client <dana@client.test>\r\n"
        f"To: {SUPPORT}\r\n"
        f"Subject: Re: [Ticket #{number}] Printer on fire\r\n"
        "Message-ID: <e2e-reply-1@client.test>\r\n"
        "Date: Mon, 03 Mar 2025 10:00:00 +0000\r\n"
        "\r\n"
        f"{body}\r\n"
    ).encode()


def test_a_ticket_from_opening_to_merge_and_split(config_path: Path) -> None:
    cli = Session(config_path)
    assert "ok: database schema" in cli.ok("init")
    client_id = int(cli.ok("client", "add", "--name", "Dana Client", "--email", "dana@client.test"))

    # A customer opens a ticket: Open, on their account, the owner's badge.
    number = cli.ok(
        "ticket",
        "open",
        "--department",
        SUPPORT,
        "--from",
        "dana@client.test",
        "--name",
        "Dana Client",
        "--subject",
        "Printer on fire",
        "--body",
        "It burns.",
    )
    doc = cli.show(number)
    assert (doc["number"], doc["status"], doc["priority"]) == (number, "Open", "Medium")
    assert (doc["department"], doc["client_id"], doc["version"]) == (SUPPORT, client_id, 1)
    assert doc["requester"] == {"email": "dana@client.test", "name": "Dana Client"}
    assert [(m["kind"], m["badge"], m["body"]) for m in doc["messages"]] == [
        ("reply", "owner", "It burns.")
    ]
    assert cli.actions(doc) == [("dana@client.test", "opened", f"in {SUPPORT} by dana@client.test")]

    # Alice answers in markdown: Answered, her signature, rendered HTML.
    reply_id = int(
        cli.ok("ticket", "reply", number, "--admin", "alice", "--body", "**Unplug** it.")
    )
    doc = cli.show(number)
    assert doc["status"] == "Answered"
    answer = doc["messages"][-1]
    assert (answer["id"], answer["badge"], answer["author_email"]) == (
        reply_id,
        "operator",
        "alice@example.com",
    )
    assert answer["body"] == "**Unplug** it.\n\n-- Alice, Support"
    assert "<strong>Unplug</strong>" in answer["body_html"]
    assert ("alice", "status", "Open -> Answered") in cli.actions(doc)

    # The customer's mail comes through the MTA pipe: Customer-Reply.
    piped = run_pipe(config_path, customer_mail(number, "Unplugged, still smoking."))
    assert piped.returncode == 0, piped.stderr
    doc = cli.show(number)
    assert doc["status"] == "Customer-Reply"
    customer_reply = doc["messages"][-1]
    assert (customer_reply["badge"], customer_reply["body"].strip()) == (
        "owner",
        "Unplugged, still smoking.",
    )

    seen = doc["version"]

    # A private note mentioning bob (no new version), then options, with the version
    # alice saw.
    cli.ok("ticket", "note", number, "--admin", "alice", "--body", "@bob can you look?")
    out = cli.ok(
        "ticket",
        "update",
        number,
        "--admin",
        "alice",
        "--status",
        "In Progress",
        "--priority",
        "High",
        "--add-tag",
        "printer",
        "--cc",
        "boss@client.test",
        "--flag",
        "bob",
        "--expect-version",
        str(seen),
    )
    doc = cli.show(number)
    assert [m["kind"] for m in doc["messages"]] == ["reply", "reply", "reply", "note"]
    assert ("alice", "note", "note added, mentions @bob") in cli.actions(doc)
    assert out == f"{number} version {doc['version']}"
    assert (doc["status"], doc["priority"], doc["flagged_to"]) == ("In Progress", "High", "bob")
    assert (doc["tags"], doc["cc"]) == (["printer"], ["boss@client.test"])
    assert doc["version"] == seen + 4
    for line in [
        ("alice", "status", "Customer-Reply -> In Progress"),
        ("alice", "priority", "Medium -> High"),
        ("alice", "cc", " -> boss@client.test"),
        ("alice", "tag added", "printer"),
        ("alice", "flag", " -> bob"),
    ]:
        assert line in cli.actions(doc)

    # Bob still holds the older version: a collision, and nothing changes.
    late = run_cli(
        config_path,
        "ticket",
        "update",
        number,
        "--admin",
        "bob",
        "--status",
        "Closed",
        "--expect-version",
        str(seen),
    )
    assert late.returncode == 3
    assert "Ticket Status: Customer-Reply -> In Progress" in late.stderr
    assert "Ticket Priority: Medium -> High" in late.stderr
    assert cli.show(number) == doc

    # Bob opens a second ticket for Dana; alice merges both into the oldest.
    second = cli.ok(
        "ticket",
        "open",
        "--department",
        SUPPORT,
        "--from",
        "dana@client.test",
        "--subject",
        "Scanner too",
        "--body",
        "The scanner smokes as well.",
        "--admin",
        "bob",
        "--client",
        str(client_id),
    )
    assert cli.ok("ticket", "merge", second, number, "--admin", "alice") == number
    doc = cli.show(number)
    merged = cli.show(second)
    assert (merged["number"], merged["merged_into"], merged["messages"]) == (second, number, [])
    assert (doc["subject"], doc["status"], doc["merged_into"]) == (
        "Printer on fire [MERGED]",
        "Open",
        None,
    )
    assert [m["body"].split("\n")[0].strip() for m in doc["messages"]] == [
        "It burns.",
        "**Unplug** it.",
        "Unplugged, still smoking.",
        "@bob can you look?",
        "The scanner smokes as well.",
    ]
    assert doc["messages"][-1]["badge"] == "operator"
    assert ("alice", "merged", f"{second} merged in") in cli.actions(doc)

    # The scanner messages go to a ticket of their own.
    moved = [str(doc["messages"][-1]["id"]), str(customer_reply["id"])]
    split = cli.ok(
        "ticket",
        "split",
        number,
        "--messages",
        ",".join(moved),
        "--admin",
        "alice",
        "--priority",
        "Low",
        "--subject",
        "Scanner smoking",
    )
    new = cli.show(split)
    assert (new["subject"], new["priority"], new["status"]) == ("Scanner smoking", "Low", "Open")
    assert (new["department"], new["client_id"]) == (SUPPORT, client_id)
    assert sorted(str(m["id"]) for m in new["messages"]) == sorted(moved)
    assert cli.actions(new) == [("alice", "split", f"from {number}")]
    rest = cli.show(number)
    assert [m["id"] for m in rest["messages"]] == [
        m["id"] for m in doc["messages"] if str(m["id"]) not in moved
    ]
    listed = json.loads(cli.ok("ticket", "list", "--json"))
    assert sorted(t["number"] for t in listed) == sorted([number, split])
