"""The directory commands (clients, users, contacts, bans) and usage errors, through the
real `ticketd` command: exit codes, one-line errors, and nothing half-written."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from conftest import run_cli
from storage import tables


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
    assert "Traceback" not in result.stderr
    for word in words:
        assert word in lines[0], lines[0]
    assert result.stdout == ""
    return lines[0]


def _ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_client_with_owner_users_and_contacts(app: Any, config_path: Path) -> None:
    client_id = int(
        _ok(run_cli(config_path, "client", "add", "--name", "Dana Client", "--email",
                    "Dana@Client.test", "--company", "Client Ltd"))
    )
    _ok(run_cli(config_path, "client", "add-user", str(client_id), "--email", "eve@client.test",
                "--name", "Eve Staff", "--no-ticket-emails"))
    _ok(run_cli(config_path, "client", "add-contact", str(client_id), "--email",
                "finn@client.test", "--name", "Finn Contact"))
    user_id = int(_ok(run_cli(config_path, "user", "add", "--email", "gus@else.test",
                              "--name", "Gus")))

    [client] = _rows(app, tables.clients, tables.clients.c.id == client_id)
    assert (client.name, client.company) == ("Dana Client", "Client Ltd")
    [owner] = _rows(app, tables.users, tables.users.c.id == client.owner_id)
    assert owner.email == "dana@client.test"
    [link] = _rows(app, tables.client_users, tables.client_users.c.client_id == client_id)
    [eve] = _rows(app, tables.users, tables.users.c.id == link.user_id)
    assert eve.email == "eve@client.test" and link.ticket_emails is False
    [contact] = _rows(app, tables.contacts, tables.contacts.c.client_id == client_id)
    assert (contact.email, contact.name, contact.ticket_emails) == (
        "finn@client.test", "Finn Contact", True,
    )
    [gus] = _rows(app, tables.users, tables.users.c.id == user_id)
    assert gus.email == "gus@else.test"
    assert not _rows(app, tables.clients, tables.clients.c.owner_id == user_id)


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("client", "add", "--name", "Dana", "--email", "not-an-address"), ("not-an-address",)),
        (("client", "add", "--name", "   ", "--email", "dana@client.test"), ("name",)),
        (("user", "add", "--email", "dana@@client.test", "--name", "Dana"), ("dana@@client.test",)),
    ],
)
def test_bad_input_exits_2_and_writes_nothing(
    app: Any, config_path: Path, args: tuple[str, ...], words: tuple[str, ...]
) -> None:
    _fails(run_cli(config_path, *args), 2, *words)
    assert _count(app, tables.users) == 0
    assert _count(app, tables.clients) == 0


def test_address_already_used(app: Any, config_path: Path) -> None:
    client_id = _ok(run_cli(config_path, "client", "add", "--name", "Dana", "--email",
                            "dana@client.test"))
    _fails(run_cli(config_path, "user", "add", "--email", "DANA@client.test", "--name", "D"),
           1, "dana@client.test", "already")
    _fails(run_cli(config_path, "client", "add-user", client_id, "--email", "dana@client.test",
                   "--name", "Dana"), 1, "already owns")
    _ok(run_cli(config_path, "client", "add-contact", client_id, "--email", "finn@client.test",
                "--name", "Finn"))
    _fails(run_cli(config_path, "client", "add-contact", client_id, "--email",
                   "finn@client.test", "--name", "Finn"), 1, "already a contact")
    assert _count(app, tables.users) == 1
    assert _count(app, tables.contacts) == 1
    assert _count(app, tables.client_users) == 0


@pytest.mark.parametrize("command", ["add-user", "add-contact"])
def test_unknown_client_exits_4_and_writes_nothing(
    app: Any, config_path: Path, command: str
) -> None:
    result = run_cli(config_path, "client", command, "4242", "--email", "new@client.test",
                     "--name", "New Person")
    _fails(result, 4, "4242")
    assert _count(app, tables.users) == 0
    assert _count(app, tables.contacts) == 0


def test_bans_of_addresses_and_domains(app: Any, config_path: Path) -> None:
    for pattern in ("Spammer@Junk.test", "@bulk.test", "scam.test"):
        _ok(run_cli(config_path, "ban", "add", pattern))
    listed = json.loads(_ok(run_cli(config_path, "ban", "list", "--json")))
    assert sorted(b["pattern"] for b in listed) == ["bulk.test", "scam.test", "spammer@junk.test"]
    assert all(b["created_at"].endswith("+00:00") for b in listed)

    _fails(run_cli(config_path, "ban", "add", "scam.test"), 1, "already banned")
    _fails(run_cli(config_path, "ban", "add", "not a domain"), 2, "not a domain")
    _ok(run_cli(config_path, "ban", "remove", "@scam.test"))
    _fails(run_cli(config_path, "ban", "remove", "scam.test"), 4, "scam.test")

    text = _ok(run_cli(config_path, "ban", "list"))
    assert "spammer@junk.test" in text and "bulk.test" in text and "scam.test" not in text
    assert _count(app, tables.bans) == 2


@pytest.mark.parametrize(
    ("args", "code", "words"),
    [
        (("frobnicate",), 2, ("invalid choice", "frobnicate")),
        (("client", "add", "--name", "Dana"), 2, ("client add", "--email")),
        (("client", "add-user", "seven", "--email", "a@b.test", "--name", "A"), 2, ("seven",)),
        (("ticket", "show", "999999"), 4, ("999999",)),
        (("ticket", "show", "999999", "--json"), 4, ("999999",)),
    ],
)
def test_usage_errors_and_unknown_ticket(
    app: Any,
    config_path: Path, args: tuple[str, ...], code: int, words: tuple[str, ...]
) -> None:
    line = _fails(run_cli(config_path, *args), code, *words)
    assert not line.startswith("ticketd: ticketd"), line
