"""Reply badges as the seed's table defines them, decided against a real directory.

Acme (owner, an authorized user, a contact) and Globex (its own owner) are the
accounts; shared@both.test is an authorized user of both, so only a ticket can
say which account it speaks for.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from core import directory, ticketing
from core.actors import Actor
from core.badges import sender_role
from core.ticketing import NewTicket

T0 = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)


@pytest.fixture
def accounts(app: Any) -> dict[str, int]:
    with app.uow() as uow:
        acme = directory.add_client(uow, "Olive Owner", "owner@acme.test", "Acme", T0)
        globex = directory.add_client(uow, "Gus Globex", "gus@globex.test", "Globex", T0)
        assert acme.id is not None and globex.id is not None
        directory.add_client_user(uow, acme.id, "user@acme.test", "Ursula User", True, T0)
        directory.add_contact(uow, acme.id, "contact@acme.test", "Connie Contact", True)
        directory.add_user(uow, "reg@else.test", "Reggie Registered", T0)
        for client_id in (acme.id, globex.id):
            directory.add_client_user(uow, client_id, "shared@both.test", "Sam Shared", True, T0)
        app.finish(uow)
    return {"acme": acme.id, "globex": globex.id}


ON_ACME_TICKET = {
    "owner@acme.test": "owner",
    "OWNER@acme.test": "owner",
    "user@acme.test": "authorized_user",
    "contact@acme.test": "sub_account",
    "reg@else.test": "registered_user",
    "gus@globex.test": "registered_user",
    "nobody@nowhere.test": "guest",
    "alice@example.com": "guest",
    "shared@both.test": "authorized_user",
}
ON_NEW_TICKET = {
    "owner@acme.test": ("owner", "acme"),
    "user@acme.test": ("authorized_user", "acme"),
    "contact@acme.test": ("sub_account", "acme"),
    "gus@globex.test": ("owner", "globex"),
    "reg@else.test": ("registered_user", None),
    "nobody@nowhere.test": ("guest", None),
    "shared@both.test": ("guest", None),
}


def test_the_badge_on_a_ticket_of_an_account(app: Any, accounts: dict[str, int]) -> None:
    with app.uow() as uow:
        found = {email: sender_role(uow, email, accounts["acme"]) for email in ON_ACME_TICKET}
    assert {email: role.badge for email, role in found.items()} == ON_ACME_TICKET
    assert {role.client_id for role in found.values()} == {accounts["acme"]}


def test_the_badge_and_account_of_a_new_ticket(app: Any, accounts: dict[str, int]) -> None:
    with app.uow() as uow:
        found = {email: sender_role(uow, email, None) for email in ON_NEW_TICKET}
    expected = {
        email: (badge, accounts[account] if account else None)
        for email, (badge, account) in ON_NEW_TICKET.items()
    }
    assert {email: (role.badge, role.client_id) for email, role in found.items()} == expected


def test_operator_only_when_the_caller_says_so(app: Any, accounts: dict[str, int]) -> None:
    with app.uow() as uow:
        assert sender_role(uow, "alice@example.com", accounts["acme"]).badge == "guest"
        assert sender_role(uow, "alice@example.com", None).badge == "guest"
        on_ticket = sender_role(uow, "alice@example.com", accounts["acme"], operator=True)
        anywhere = sender_role(uow, "nobody@nowhere.test", None, operator=True)
    assert (on_ticket.badge, on_ticket.client_id) == ("operator", accounts["acme"])
    assert (anywhere.badge, anywhere.client_id) == ("operator", None)


def test_an_address_of_several_accounts_opens_as_a_guest_and_a_ticket_decides_later(
    app: Any, accounts: dict[str, int]
) -> None:
    request = NewTicket("support@example.com", "shared@both.test", "Sam Shared", "Hi", "Help")
    with app.uow() as uow:
        ticket = ticketing.open_ticket(
            uow, request, Actor("shared@both.test", "Sam Shared"), app.policy, T0
        )
        app.finish(uow)
    assert (ticket.client_id, ticket.messages[0].badge) == (None, "guest")
    with app.uow() as uow:
        assert sender_role(uow, "shared@both.test", accounts["globex"]).badge == "authorized_user"
