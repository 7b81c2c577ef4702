"""The routing table and its shared rules, on hand-made parties (no database)."""

from __future__ import annotations

import pytest

from core import routing
from core.routing import ADMIN, CLIENT, TABLE, Parties, Person, recipients

ALICE = Person("alice@example.com", "Alice", 1)
BOB = Person("bob@example.com", "Bob", 2)
CAROL = Person("carol@example.com", "Carol", 3)
OWNER = Person("olga@acme.test", "Olga")
USER_ON = Person("ulla@acme.test", "Ulla")
USER_OFF = Person("uwe@acme.test", "Uwe", wants_mail=False)
CONTACT = Person("cora@acme.test", "Cora")
CC = Person("carl@cc.test", "")
GUEST = Person("gina@guest.test", "Gina")


def parties(**changes: object) -> Parties:
    base: dict[str, object] = {
        "watchers": (BOB,),
        "department": (ALICE, BOB),
        "owner": OWNER,
        "users": (USER_ON, USER_OFF),
        "contacts": (CONTACT,),
        "cc": (CC,),
        "requester": GUEST,
        "visible_admins": frozenset({1, 2}),
    }
    base.update(changes)
    return Parties(**base)  # type: ignore[arg-type]


def emails(row: str, found: Parties) -> set[str]:
    return {r.email for r in recipients(TABLE[row], found)}


def test_table_matches_notifications_md() -> None:
    expected = {
        "ticket_opened": "D F O U C CC R",
        "client_reply": "W D F",
        "admin_reply": "W F O U C CC R",
        "options_changed": "W F",
        "department_changed": "W D F",
        "ticket_flagged": "W F",
        "ticket_unflagged": "W F",
        "note_added": "W F",
        "note_mention": "",
        "auto_close": "O CC R",
        "feedback_request": "R",
    }
    assert {k: {a.value for a in row.audiences} for k, row in TABLE.items()} == {
        k: set(v.split()) for k, v in expected.items()
    }
    assert TABLE["client_reply"].department_unless_flagged
    assert TABLE["department_changed"].department_unless_flagged
    assert TABLE["ticket_flagged"].skip_self_target


def test_every_row_names_a_template_for_each_side_it_mails() -> None:
    for row in TABLE.values():
        if row.audiences & routing.ADMIN_SIDE:
            assert row.admin_template
        if row.audiences - routing.ADMIN_SIDE:
            assert row.client_template


def test_ticket_opened_everyone_but_users_who_opted_out() -> None:
    found = emails("ticket_opened", parties())
    assert found == {
        "alice@example.com",
        "bob@example.com",
        "olga@acme.test",
        "ulla@acme.test",
        "cora@acme.test",
        "carl@cc.test",
        "gina@guest.test",
    }


def test_requester_always_gets_client_mail_even_with_preference_off() -> None:
    found = emails("admin_reply", parties(requester=USER_OFF))
    assert "uwe@acme.test" in found


def test_client_reply_department_only_when_nobody_flagged() -> None:
    assert emails("client_reply", parties(watchers=())) == {"alice@example.com", "bob@example.com"}
    flagged = parties(watchers=(), flagged=ALICE, any_flagged=True)
    assert emails("client_reply", flagged) == {"alice@example.com"}


def test_client_reply_author_not_mailed() -> None:
    assert emails("client_reply", parties(actor_email="BOB@example.com")) == {"alice@example.com"}


def test_actor_admin_not_mailed_about_own_action() -> None:
    assert emails("options_changed", parties(actor_admin_id=2, flagged=ALICE)) == {
        "alice@example.com"
    }


def test_flagging_to_yourself_sends_nothing() -> None:
    found = parties(flagged=ALICE, actor_admin_id=1, target_admin_id=1)
    assert recipients(TABLE["ticket_flagged"], found) == []


def test_admins_who_cannot_see_the_department_get_nothing() -> None:
    found = parties(watchers=(CAROL,), flagged=CAROL)
    assert emails("note_added", found) == set()


def test_one_recipient_per_address_first_audience_wins() -> None:
    twin = Person("ALICE@example.com", "Alice as CC")
    found = recipients(TABLE["admin_reply"], parties(watchers=(ALICE,), cc=(twin,)))
    alice = [r for r in found if r.email == "alice@example.com"]
    assert len(alice) == 1 and alice[0].side == ADMIN


def test_client_only_rows_never_reach_admins() -> None:
    for row in ("auto_close", "feedback_request"):
        assert all(r.side == CLIENT for r in recipients(TABLE[row], parties()))


@pytest.mark.parametrize("mentioned", [(BOB,), (BOB, BOB), (BOB, CAROL)])
def test_mentions_once_each_and_only_visible_admins(mentioned: tuple[Person, ...]) -> None:
    found = routing.mention_recipients(mentioned, parties(actor_admin_id=1))
    assert [r.email for r in found] == ["bob@example.com"]


def test_unusable_addresses_are_never_mailed() -> None:
    found = parties(requester=Person("xxxxx@xxxxx", "X"), cc=(Person("a\r\nb@x.test", ""),))
    assert {"xxxxx@xxxxx", "a\r\nb@x.test"}.isdisjoint(emails("admin_reply", found))
