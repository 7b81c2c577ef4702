"""Collision detection: an operation made against an old version of a ticket is refused
with a report of what changed, on the command line and under real concurrency.

The concurrency tests start two processes that update one ticket from the same
expected version at the same moment: exactly one must win and the other must
exit 3 naming the winner's change, never both and never neither.
"""

from __future__ import annotations

import multiprocessing
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import TICKETD, run_cli, write_config
from test_ticket_rules import (
    DANA,
    SALES,
    SUPPORT,
    add_client,
    admin,
    admin_says,
    at,
    client_says,
    open_ticket,
    show,
    update,
)

from core import options, ticketing
from core.actors import Actor
from core.collisions import Change
from core.options import OptionChanges
from core.ticketing import CollisionError

ROUNDS = 20
CLI_ROUNDS = 4
CONTENDERS = {
    "status": ({"status": "On Hold"}, ("--status", "On Hold"), "Ticket Status: Open -> On Hold"),
    "priority": (
        {"priority": "High"},
        ("--priority", "High"),
        "Ticket Priority: Medium -> High",
    ),
}


def collide(app: Any, number: str, version: int, actor: str = "alice") -> CollisionError:
    with app.uow() as uow:
        with pytest.raises(CollisionError) as caught:
            ticketing.load_ticket(uow, number, admin(uow, actor), expect_version=version)
    return caught.value


def version_of(app: Any, number: str) -> int:
    return int(show(app, number)["version"])


@pytest.mark.parametrize(
    ("attribute", "change", "expected"),
    [
        ("status", {"status": "In Progress"}, Change("Ticket Status", "Open", "In Progress")),
        ("priority", {"priority": "Low"}, Change("Ticket Priority", "Medium", "Low")),
        ("subject", {"subject": "Smoke"}, Change("Ticket Subject", "Printer on fire", "Smoke")),
        ("flag", {"flag_username": "bob"}, Change("Assigned Admin User", "", "bob")),
        ("cc", {"cc": ["boss@client.test"]}, Change("CC Recipients", "", "boss@client.test")),
    ],
)
def test_an_old_version_is_refused_with_the_changed_attribute(
    app: Any, attribute: str, change: dict[str, Any], expected: Change
) -> None:
    number = open_ticket(app)
    version = version_of(app, number)
    update(app, number, at(1), by="bob", **change)
    error = collide(app, number, version)
    assert error.report.changes == (expected,)
    assert (error.report.expected_version, error.report.current_version) == (
        version,
        version + 1,
    )
    assert error.exit_code == 3
    assert f"{expected.attribute}: {expected.old or '-'} -> {expected.new or '-'}" in str(error)


def test_a_change_of_client_is_a_collision(app: Any) -> None:
    number = open_ticket(app, "walk-in@else.test")
    client_id = add_client(app)
    update(app, number, at(1), by="bob", client_id=client_id)
    assert collide(app, number, 1).report.changes == (
        Change("Assigned Client", "", str(client_id)),
    )


def test_a_change_of_department_is_a_collision(app: Any) -> None:
    number = open_ticket(app, department=SALES, by="carol")
    update(app, number, at(1), by="carol", department_email=SUPPORT)
    assert collide(app, number, 1).report.changes == (Change("Department", SALES, SUPPORT),)


def test_a_reply_since_is_a_collision_naming_the_last_reply_time_and_status(app: Any) -> None:
    number = open_ticket(app, when=at(0))
    admin_says(app, number, "Unplug it.", at(15), by="bob")
    version = version_of(app, number)
    client_says(app, number, "Still smoking.", at(30))
    changes = collide(app, number, 1).report.changes
    assert changes == (
        Change("Last Reply Time", at(0).isoformat(), at(15).isoformat()),
        Change("Ticket Status", "Open", "Answered"),
        Change("Last Reply Time", at(15).isoformat(), at(30).isoformat()),
        Change("Ticket Status", "Answered", "Customer-Reply"),
    )
    assert collide(app, number, version).report.changes == changes[2:]


def test_the_current_version_passes_and_notes_tags_and_watches_do_not_collide(
    app: Any,
) -> None:
    number = open_ticket(app)
    with app.uow() as uow:
        bob = admin(uow, "bob")
        ticket = ticketing.load_ticket(uow, number, bob, expect_version=1)
        ticketing.add_note(uow, ticket, bob, "looking", at(1))
        options.watch(uow, ticket, bob, True, at(1))
        options.update_ticket(uow, ticket, bob, OptionChanges(add_tags=["x"]), app.policy, at(1))
        app.finish(uow)
    with app.uow() as uow:
        alice = admin(uow, "alice")
        ticket = ticketing.load_ticket(uow, number, alice, expect_version=1)
        ticketing.admin_reply(uow, ticket, alice, "Done.", app.policy, at(2))
        app.finish(uow)
    assert show(app, number)["status"] == "Answered"


def test_a_reply_against_an_old_version_is_not_sent(app: Any, config_path: Path) -> None:
    number = open_ticket(app)
    admin_says(app, number, "Already answered.", at(1), by="bob")
    done = run_cli(
        config_path,
        "ticket",
        "reply",
        number,
        "--admin",
        "alice",
        "--body",
        "Me too!",
        "--expect-version",
        "1",
    )
    assert done.returncode == 3, done.stderr
    assert done.stderr.startswith(f"ticketd: ticket {number} changed since version 1")
    assert "Ticket Status: Open -> Answered" in done.stderr
    assert "Last Reply Time:" in done.stderr
    assert [m["body"].split("\n")[0] for m in show(app, number)["messages"]][1:] == [
        "Already answered."
    ]


def test_cli_expect_version_exits_3_and_prints_the_report(app: Any, config_path: Path) -> None:
    number = open_ticket(app)
    first = run_cli(
        config_path,
        "ticket",
        "update",
        number,
        "--admin",
        "bob",
        "--priority",
        "High",
        "--flag",
        "bob",
        "--expect-version",
        "1",
    )
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == f"{number} version 3"
    late = run_cli(
        config_path,
        "ticket",
        "update",
        number,
        "--admin",
        "alice",
        "--status",
        "Closed",
        "--expect-version",
        "1",
    )
    assert late.returncode == 3
    assert late.stdout == ""
    assert late.stderr.splitlines() == [
        f"ticketd: ticket {number} changed since version 1 (now 3):",
        "  Ticket Priority: Medium -> High",
        "  Assigned Admin User: - -> bob",
    ]
    assert show(app, number)["status"] == "Open"


# --- real concurrency ----------------------------------------------------------------------


def _contender(config: str, name: str, jobs: list[tuple[str, int]], barrier: Any, out: Any) -> None:
    """One process: for each ticket, wait for the other, then update from `version`."""
    from mailgate.app import App
    from mailgate.settings import load_settings

    app = App(load_settings(Path(config)))
    change = OptionChanges(**CONTENDERS[name][0])
    for number, version in jobs:
        barrier.wait(timeout=60)
        try:
            with app.uow() as uow:
                actor = admin(uow, "alice" if name == "status" else "bob")
                ticket = ticketing.load_ticket(uow, number, actor, expect_version=version)
                when = datetime.now(UTC) + timedelta(seconds=1)
                options.update_ticket(uow, ticket, actor, change, app.policy, when)
                app.finish(uow)
            out.put((number, name, 0, ""))
        except CollisionError as err:
            out.put((number, name, 3, str(err)))
        except Exception as err:  # reported, and failed on, by the parent
            out.put((number, name, 1, repr(err)))
    app.engine.dispose()


def _tickets(app: Any, count: int) -> list[tuple[str, int]]:
    numbers = [open_ticket(app, when=at(i)) for i in range(count)]
    return [(n, version_of(app, n)) for n in numbers]


def _check_round(app: Any, number: str, outcomes: dict[str, tuple[int, str]]) -> None:
    codes = sorted(code for code, _ in outcomes.values())
    assert codes == [0, 3], f"ticket {number}: {outcomes}"
    winner = next(name for name, (code, _) in outcomes.items() if code == 0)
    loser = next(name for name in outcomes if name != winner)
    assert CONTENDERS[winner][2] in outcomes[loser][1], outcomes
    doc = show(app, number)
    assert (doc["status"] == "On Hold") == (winner == "status"), doc["log"]
    assert (doc["priority"] == "High") == (winner == "priority"), doc["log"]


def race_in_processes(app: Any, config: Path) -> None:
    """Two forked processes calling core directly, released together by a barrier."""
    jobs = _tickets(app, ROUNDS)
    app.engine.dispose()
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(2)
    out = context.Queue()
    workers = [
        context.Process(target=_contender, args=(str(config), name, jobs, barrier, out))
        for name in CONTENDERS
    ]
    for worker in workers:
        worker.start()
    results = [out.get(timeout=120) for _ in range(2 * ROUNDS)]
    for worker in workers:
        worker.join(30)
        assert worker.exitcode == 0
    for number, _ in jobs:
        outcomes = {name: (code, text) for n, name, code, text in results if n == number}
        _check_round(app, number, outcomes)


def race_on_the_command_line(app: Any, config: Path) -> None:
    """Two `ticketd ticket update` processes started together, CLI_ROUNDS times."""
    for number, version in _tickets(app, CLI_ROUNDS):
        running = {
            name: subprocess.Popen(
                [
                    TICKETD,
                    "--config",
                    str(config),
                    "ticket",
                    "update",
                    number,
                    "--admin",
                    "alice",
                    *flags,
                    "--expect-version",
                    str(version),
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for name, (_, flags, _) in CONTENDERS.items()
        }
        outcomes = {}
        for name, process in running.items():
            _, stderr = process.communicate(timeout=60)
            outcomes[name] = (process.returncode, stderr)
        _check_round(app, number, outcomes)


def test_two_processes_racing_on_one_version_exactly_one_wins(app: Any, config_path: Path) -> None:
    race_in_processes(app, config_path)


def test_two_cli_updates_racing_on_one_version_exactly_one_wins(
    app: Any, config_path: Path
) -> None:
    race_on_the_command_line(app, config_path)


@pytest.fixture
def postgres_app(tmp_path: Path, postgres_url: str) -> Iterator[tuple[Any, Path]]:
    from mailgate.app import App
    from mailgate.settings import load_settings

    config = write_config(tmp_path / "pg", postgres_url)
    application = App(load_settings(config))
    application.init()
    yield application, config
    application.engine.dispose()


@pytest.mark.postgres
def test_two_processes_racing_on_postgresql_exactly_one_wins(
    postgres_app: tuple[Any, Path],
) -> None:
    app, config = postgres_app
    assert app.engine.dialect.name == "postgresql"
    race_in_processes(app, config)
    race_on_the_command_line(app, config)


def test_an_actor_without_department_access_never_sees_a_collision_report(app: Any) -> None:
    number = open_ticket(app)
    update(app, number, at(1), status="On Hold")
    with app.uow() as uow:
        carol = Actor("carol@example.com", "Carol", admin(uow, "carol").admin_id, "carol")
        with pytest.raises(Exception, match="carol is not a member") as refused:
            ticketing.load_ticket(uow, number, carol, expect_version=1)
    assert not isinstance(refused.value, CollisionError)
    assert DANA in show(app, number)["requester"]["email"]
