"""The JSON documents of PRODUCT.md, read from the real `ticketd` command: every field
listed there, with its type, for `ticket show`, `ticket list` and `importlog list`."""

from __future__ import annotations

import hashlib
import json
import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import _create_database, _drop_database, _server_url, run_cli, run_pipe, write_config
from sqlalchemy import select

from mailgate.app import App
from mailgate.settings import load_settings
from storage import tables

ATTACHMENT = b"printer log line 1\nprinter log line 2\n"
WITH_ATTACHMENT = (
    b"From: Dana Client <dana@client.test>\r\n"
    b"To: support@example.com\r\n"
    b"Subject: Printer on fire\r\n"
    b"Message-ID: <fire-1@client.test>\r\n"
    b"Date: Mon, 04 Mar 2024 10:00:00 +0000\r\n"
    b"MIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="b1"\r\n'
    b"\r\n"
    b"--b1\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"\r\n"
    b"Please help, the printer is on fire. Log attached.\r\n"
    b"--b1\r\n"
    b'Content-Type: text/plain; name="printer.txt"\r\n'
    b'Content-Disposition: attachment; filename="printer.txt"\r\n'
    b"Content-Transfer-Encoding: base64\r\n"
    b"\r\n"
    b"cHJpbnRlciBsb2cgbGluZSAxCnByaW50ZXIgbG9nIGxpbmUgMgo=\r\n"
    b"--b1--\r\n"
)
AUTO_REPLY = (
    b"From: Out Of Office <ooo@client.test>\r\n"
    b"To: support@example.com\r\n"
    b"Subject: Automatic reply: I am away\r\n"
    b"Message-ID: <away-1@client.test>\r\n"
    b"Auto-Submitted: auto-replied\r\n"
    b"\r\n"
    b"I am out of the office until Monday.\r\n"
)


@dataclass(frozen=True)
class Desk:
    config: Path
    client_id: int
    number: str
    guest_number: str


def _ok(result: Any) -> str:
    assert result.returncode == 0, result.stderr
    out = result.stdout
    return (out.decode() if isinstance(out, bytes) else out).strip()


def _json(config: Path, *args: str) -> Any:
    return json.loads(_ok(run_cli(config, *args, "--json")))


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One database for the module: the documents are read, never changed, by the tests."""
    server = _server_url()
    if server is None:
        yield f"sqlite:///{tmp_path_factory.mktemp('json') / 'var' / 'ticketd.sqlite3'}"
        return
    url = _create_database(server)
    try:
        yield url
    finally:
        _drop_database(server, url)


@pytest.fixture(scope="module")
def desk(tmp_path_factory: pytest.TempPathFactory, database: str) -> Iterator[Desk]:
    config = write_config(tmp_path_factory.mktemp("desk"), database)
    app = App(load_settings(config))
    app.init()

    def cli(command: str) -> str:
        return _ok(run_cli(config, *shlex.split(command)))

    client_id = int(cli("client add --name 'Dana Client' --email dana@client.test"))
    _ok(run_pipe(config, WITH_ATTACHMENT))
    _ok(run_pipe(config, AUTO_REPLY))
    with app.engine.connect() as connection:
        [number] = connection.scalars(select(tables.tickets.c.number))
    reply_id = cli(f"ticket reply {number} --admin alice --body 'The fire brigade is coming.'")
    cli(f"ticket rate {number} {reply_id} 4")
    cli(f"ticket note {number} --admin bob --body '@alice look'")
    cli(
        f"ticket update {number} --admin alice --flag alice --add-tag hardware "
        "--cc boss@client.test --priority High"
    )
    cli(f"ticket watch {number} --admin bob")
    guest_number = cli(
        "ticket open --department sales@example.com --from guest@else.test --name 'Gina Guest' "
        "--subject 'Price list' --body 'Send prices please.'"
    )
    yield Desk(config, client_id, number, guest_number)
    app.engine.dispose()


def _is_iso(value: object) -> bool:
    if not isinstance(value, str):
        return False
    parsed = datetime.fromisoformat(value)
    return parsed.tzinfo is not None and parsed.utcoffset() is not None


def _types(document: dict[str, Any], expected: dict[str, Any]) -> None:
    for key, kind in expected.items():
        assert key in document, f"missing {key!r} in {sorted(document)}"
        if kind == "iso":
            assert _is_iso(document[key]), (key, document[key])
        else:
            assert isinstance(document[key], kind), (key, document[key])


TICKET_FIELDS: dict[str, Any] = {
    "number": str,
    "subject": str,
    "status": str,
    "priority": str,
    "department": str,
    "client_id": (int, type(None)),
    "requester": dict,
    "cc": list,
    "tags": list,
    "flagged_to": (str, type(None)),
    "watchers": list,
    "merged_into": (str, type(None)),
    "version": int,
    "created_at": "iso",
    "last_reply_at": "iso",
    "messages": list,
    "log": list,
}
MESSAGE_FIELDS: dict[str, Any] = {
    "id": int,
    "kind": str,
    "author_email": str,
    "author_name": str,
    "badge": str,
    "body": str,
    "created_at": "iso",
    "rating": (int, type(None)),
    "attachments": list,
}


def test_ticket_show_json(desk: Desk) -> None:
    doc = _json(desk.config, "ticket", "show", desk.number)
    _types(doc, TICKET_FIELDS)
    assert re.fullmatch(r"\d{6}", doc["number"]) and doc["number"] == desk.number
    assert doc["subject"] == "Printer on fire"
    assert (doc["status"], doc["priority"]) == ("Answered", "High")
    assert doc["department"] == "support@example.com"
    assert doc["client_id"] == desk.client_id and not isinstance(doc["client_id"], bool)
    assert doc["requester"] == {"email": "dana@client.test", "name": "Dana Client"}
    assert doc["cc"] == ["boss@client.test"] and doc["tags"] == ["hardware"]
    assert doc["flagged_to"] == "alice" and doc["watchers"] == ["bob"]
    assert doc["merged_into"] is None
    assert doc["version"] >= 1

    first, reply, note = doc["messages"]
    for message in doc["messages"]:
        _types(message, MESSAGE_FIELDS)
    assert (first["kind"], first["badge"], first["author_email"]) == (
        "reply",
        "owner",
        "dana@client.test",
    )
    assert first["author_name"] == "Dana Client" and "on fire" in first["body"]
    assert first["rating"] is None
    [attachment] = first["attachments"]
    assert attachment["filename"] == "printer.txt"
    assert attachment["content_type"] == "text/plain"
    assert attachment["size"] == len(ATTACHMENT)
    assert attachment["sha256"] == hashlib.sha256(ATTACHMENT).hexdigest()
    assert (reply["kind"], reply["badge"], reply["rating"]) == ("reply", "operator", 4)
    assert (note["kind"], note["author_email"]) == ("note", "bob@example.com")

    assert doc["log"]
    for entry in doc["log"]:
        assert isinstance(entry, dict)
        assert _is_iso(entry["at"])
        assert all(isinstance(entry[k], str) for k in ("actor", "action", "detail")), entry
    assert "opened" in {entry["action"] for entry in doc["log"]}


def test_ticket_show_json_of_a_guest_ticket(desk: Desk) -> None:
    doc = _json(desk.config, "ticket", "show", desk.guest_number)
    _types(doc, TICKET_FIELDS)
    assert doc["client_id"] is None and doc["flagged_to"] is None
    assert (doc["cc"], doc["tags"], doc["watchers"]) == ([], [], [])
    assert doc["department"] == "sales@example.com"
    [message] = doc["messages"]
    assert (message["badge"], message["attachments"]) == ("guest", [])


def test_ticket_list_json(desk: Desk) -> None:
    rows = _json(desk.config, "ticket", "list")
    assert isinstance(rows, list)
    assert [r["number"] for r in rows] == [desk.guest_number, desk.number]  # newest first
    fields = (
        "number",
        "subject",
        "status",
        "priority",
        "department",
        "last_reply_at",
        "flagged_to",
        "version",
    )
    for row in rows:
        _types(row, {k: TICKET_FIELDS[k] for k in fields})
    assert rows[1]["flagged_to"] == "alice" and rows[0]["flagged_to"] is None


def test_importlog_list_json(desk: Desk) -> None:
    rows = _json(desk.config, "importlog", "list")
    assert isinstance(rows, list)
    by_outcome = {r["outcome"]: r for r in rows}
    assert set(by_outcome) == {"new_ticket", "blocked"}
    for row in rows:
        _types(
            row,
            {
                "id": int,
                "received_at": "iso",
                "from": str,
                "subject": str,
                "message_id": (str, type(None)),
                "outcome": str,
                "reason": (str, type(None)),
                "ticket": (str, type(None)),
            },
        )
        assert "to" in row
    created, blocked = by_outcome["new_ticket"], by_outcome["blocked"]
    assert (created["reason"], created["ticket"]) == (None, desk.number)
    assert created["from"] == "dana@client.test"
    assert created["message_id"] in ("<fire-1@client.test>", "fire-1@client.test")
    assert created["subject"] == "Printer on fire"
    assert (blocked["reason"], blocked["ticket"]) == ("auto_reply", None)
    assert blocked["from"] == "ooo@client.test"
    assert [r["id"] for r in _json(desk.config, "importlog", "list", "--blocked")] == [
        blocked["id"]
    ]
