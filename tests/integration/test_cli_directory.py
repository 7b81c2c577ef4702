"""The directory commands (clients, users, contacts, bans) and usage errors, through the
real `ticketd` command: exit codes, one-line errors, and nothing half-written."""

from __future__ import annotations

import json
import shlex
import subprocess
from pathlib import Path
from typing import Any

import pytest
from conftest import run_cli
from sqlalchemy import func, select

from storage import tables


def _cli(config: Path, command: str) -> subprocess.CompletedProcess[str]:
    return run_cli(config, *shlex.split(command))


def _rows(app: Any, table: Any, *where: Any) -> list[Any]:
    with app.engine.connect() as connection:
        return list(connection.execute(select(table).where(*where)))


def _count(app: Any, table: Any) -> int:
    with app.engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(table)).scalar_one())


def _fails(result: subprocess.CompletedProcess[str], code: int, *words: str) -> str:
    """The command failed with `code` and one `ticketd: ` line naming `words`."""
    assert result.returncode == code, result
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("ticketd: "), result.stderr
    for word in words:
        assert word in lines[0], lines[0]
    assert result.stdout == ""
    return lines[0]


def _ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_client_users_contacts_and_addresses_already_used(app: Any, config_path: Path) -> None:
    add = "client add --name 'Dana Client' --email Dana@Client.test --company 'Client Ltd'"
    cid = int(_ok(_cli(config_path, add)))
    add_user = f"client add-user {cid} --email eve@client.test --name Eve --no-ticket-emails"
    _ok(_cli(config_path, add_user))
    _ok(_cli(config_path, f"client add-contact {cid} --email finn@client.test --name 'Finn C'"))
    user_id = int(_ok(_cli(config_path, "user add --email gus@else.test --name Gus")))

    [client] = _rows(app, tables.clients, tables.clients.c.id == cid)
    assert (client.name, client.company) == ("Dana Client", "Client Ltd")
    [owner] = _rows(app, tables.users, tables.users.c.id == client.owner_id)
    assert owner.email == "dana@client.test"
    [link] = _rows(app, tables.client_users, tables.client_users.c.client_id == cid)
    [eve] = _rows(app, tables.users, tables.users.c.id == link.user_id)
    assert eve.email == "eve@client.test" and link.ticket_emails is False
    [contact] = _rows(app, tables.contacts, tables.contacts.c.client_id == cid)
    assert (contact.email, contact.name, contact.ticket_emails) == (
        "finn@client.test",
        "Finn C",
        True,
    )
    [gus] = _rows(app, tables.users, tables.users.c.id == user_id)
    assert gus.email == "gus@else.test"
    assert not _rows(app, tables.clients, tables.clients.c.owner_id == user_id)

    _fails(_cli(config_path, "user add --email GUS@else.test --name G"), 1, "gus@else.test")
    owner_as_user = f"client add-user {cid} --email dana@client.test --name D"
    _fails(_cli(config_path, owner_as_user), 1, "already owns")
    contact_again = f"client add-contact {cid} --email finn@client.test --name F"
    _fails(_cli(config_path, contact_again), 1, "already a contact")
    assert (_count(app, tables.users), _count(app, tables.contacts)) == (3, 1)
    assert _count(app, tables.client_users) == 1


@pytest.mark.parametrize(
    ("command", "words"),
    [
        ("client add --name Dana --email not-an-address", ("not-an-address",)),
        ("client add --name '   ' --email dana@client.test", ("name",)),
        ("user add --email dana@@client.test --name Dana", ("dana@@client.test",)),
    ],
)
def test_bad_input_exits_2_and_writes_nothing(
    app: Any, config_path: Path, command: str, words: tuple[str, ...]
) -> None:
    _fails(_cli(config_path, command), 2, *words)
    assert _count(app, tables.users) == 0
    assert _count(app, tables.clients) == 0


@pytest.mark.parametrize("command", ["add-user", "add-contact"])
def test_unknown_client_exits_4_and_writes_nothing(
    app: Any, config_path: Path, command: str
) -> None:
    result = _cli(config_path, f"client {command} 4242 --email new@client.test --name New")
    _fails(result, 4, "4242")
    assert _count(app, tables.users) == 0
    assert _count(app, tables.contacts) == 0


def test_bans_of_addresses_and_domains(app: Any, config_path: Path) -> None:
    _ok(_cli(config_path, "ban add Spammer@Junk.test"))
    _ok(_cli(config_path, "ban add @scam.test"))
    _fails(_cli(config_path, "ban add scam.test"), 1, "already banned")
    _fails(_cli(config_path, "ban add 'not a domain'"), 2, "not a domain")
    _ok(_cli(config_path, "ban remove spammer@junk.test"))
    listed = json.loads(_ok(_cli(config_path, "ban list --json")))
    assert [b["pattern"] for b in listed] == ["scam.test"]
    assert listed[0]["created_at"].endswith("+00:00")
    _fails(_cli(config_path, "ban remove spammer@junk.test"), 4, "spammer@junk.test")
    assert _count(app, tables.bans) == 1


@pytest.mark.parametrize(
    ("command", "code", "words"),
    [
        ("frobnicate", 2, ("invalid choice", "frobnicate")),
        ("client add --name Dana", 2, ("client add", "--email")),
        ("client add-user seven --email a@b.test --name A", 2, ("seven",)),
        ("ticket show 999999 --json", 4, ("999999",)),
    ],
)
def test_usage_errors_and_unknown_ticket(
    app: Any, config_path: Path, command: str, code: int, words: tuple[str, ...]
) -> None:
    line = _fails(_cli(config_path, command), code, *words)
    assert not line.startswith("ticketd: ticketd"), line
