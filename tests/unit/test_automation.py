"""Timed rules, knowledgebase ranking and report sums, with a controlled `now`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from core.automation import (
    ESCALATION,
    FEEDBACK_REQUESTED,
    auto_close_due,
    escalation_due,
    feedback_due,
    rule_problems,
    stages,
)
from core.errors import UsageError
from core.knowledgebase import rank_articles, words
from core.model import KbArticle, LogEntry, Ticket
from core.policy import EscalationRule, Policy
from core.reports import build_report
from mailgate.jobs import parse_now

NOW = datetime(2024, 3, 7, 12, 0, tzinfo=UTC)
POLICY = Policy(
    close_inactive_hours=72,
    department_addresses={"support@example.com": "support@example.com"},
)
STALE = EscalationRule(
    name="stale",
    departments=("support@example.com",),
    statuses=("Open",),
    priorities=("Low", "Medium"),
    idle_minutes=60,
    set_priority="High",
)


def ticket(status: str = "Open", idle: timedelta = timedelta(0), **kwargs: object) -> Ticket:
    at = NOW - idle
    return Ticket(
        number="123456",
        subject="s",
        status=status,
        priority=str(kwargs.pop("priority", "Medium")),
        department_id=1,
        requester_email="bob@example.net",
        requester_name="Bob",
        created_at=at,
        last_reply_at=at,
        last_activity_at=at,
        id=1,
        **kwargs,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize(
    ("status", "idle_hours", "due"),
    [
        ("Answered", 73, True),
        ("Customer-Reply", 73, True),
        ("Answered", 71, False),
        ("Answered", 72, False),
        ("Open", 500, False),
        ("On Hold", 500, False),
        ("Closed", 500, False),
    ],
)
def test_auto_close_needs_an_auto_close_status_and_enough_inactivity(
    status: str, idle_hours: int, due: bool
) -> None:
    assert auto_close_due(ticket(status, timedelta(hours=idle_hours)), POLICY, NOW) is due


def test_zero_hours_disables_auto_close() -> None:
    off = Policy(close_inactive_hours=0)
    assert not auto_close_due(ticket("Answered", timedelta(days=300)), off, NOW)


def test_merged_tickets_never_auto_close() -> None:
    assert not auto_close_due(
        ticket("Answered", timedelta(hours=80), merged_into_id=9), POLICY, NOW
    )


def test_escalation_matches_department_status_priority_and_idle_time() -> None:
    idle = timedelta(minutes=61)
    assert escalation_due(ticket("Open", idle), STALE, "support@example.com", POLICY, NOW)
    assert not escalation_due(ticket("Open", idle), STALE, "sales@example.com", POLICY, NOW)
    assert not escalation_due(ticket("Answered", idle), STALE, "support@example.com", POLICY, NOW)
    high = ticket("Open", idle, priority="High")
    assert not escalation_due(high, STALE, "support@example.com", POLICY, NOW)
    fresh = ticket("Open", timedelta(minutes=59))
    assert not escalation_due(fresh, STALE, "support@example.com", POLICY, NOW)


def test_escalation_fires_once_per_ticket() -> None:
    done = ticket("Open", timedelta(hours=2))
    done.log.append(LogEntry(at=NOW, actor="system", action=ESCALATION, detail="stale"))
    assert not escalation_due(done, STALE, "support@example.com", POLICY, NOW)
    other = EscalationRule(name="other", note="still open")
    assert escalation_due(done, other, "support@example.com", POLICY, NOW)


def test_escalation_without_statuses_skips_inactive_ones() -> None:
    rule = EscalationRule(name="any", note="n")
    assert escalation_due(ticket("On Hold"), rule, "x@example.com", POLICY, NOW + timedelta(1))
    assert not escalation_due(ticket("Closed"), rule, "x@example.com", POLICY, NOW)


def test_feedback_requested_once_for_recently_closed_tickets() -> None:
    closed = ticket("Closed", timedelta(hours=1))
    assert feedback_due(closed, True, NOW)
    assert not feedback_due(closed, False, NOW)
    assert not feedback_due(ticket("Answered"), True, NOW)
    assert not feedback_due(ticket("Closed", timedelta(days=8)), True, NOW)
    closed.log.append(LogEntry(at=NOW, actor="system", action=FEEDBACK_REQUESTED))
    assert not feedback_due(closed, True, NOW)


def test_rule_problems_name_unknown_values_and_missing_actions() -> None:
    bad = EscalationRule(
        name="bad", statuses=("Nope",), priorities=("Urgent",), set_department="x@y.z"
    )
    empty = EscalationRule(name="empty")
    policy = Policy(department_addresses=POLICY.department_addresses, escalations=(bad, empty))
    problems = rule_problems(policy)
    assert any("unknown status 'Nope'" in p for p in problems)
    assert any("unknown priority 'Urgent'" in p for p in problems)
    assert any("unknown department 'x@y.z'" in p for p in problems)
    assert any("'empty': no action" in p for p in problems)
    assert [s.name for s in stages(policy)] == ["auto-close", "feedback requests"]


def test_stages_run_escalations_first_then_auto_close_then_feedback() -> None:
    policy = Policy(department_addresses=POLICY.department_addresses, escalations=(STALE,))
    assert rule_problems(policy) == []
    names = [s.name for s in stages(policy)]
    assert names == ["escalation stale", "auto-close", "feedback requests"]


def test_articles_rank_by_weighted_word_overlap_then_id() -> None:
    printer = KbArticle("Printer offline", "Check the cable.", "hardware", id=1)
    email = KbArticle("Email setup", "Configure the printer queue for email", "", id=2)
    password = KbArticle("Reset password", "Use the reset link.", "account,login", id=3)
    tagged = KbArticle("Queue basics", "Nothing about it.", "printer", id=4)
    ranked = rank_articles([email, password, tagged, printer], "Printer offline", "help me")
    assert ranked == [printer, tagged, email]
    assert rank_articles([password], "Printer", "") == []
    assert rank_articles([printer, tagged, email], "printer", "", limit=1) == [printer]


def test_words_drop_short_and_common_words() -> None:
    assert words("The printer is ON fire, thanks!") == {"printer", "fire"}


def test_report_counts_and_averages_per_admin_and_department() -> None:
    report = build_report(
        [
            ("support@example.com", ("alice", "bob"), 8),
            ("support@example.com", ("alice",), 5),
            ("sales@example.com", (), 10),
        ]
    )
    assert (report.overall.count, report.overall.average) == (3, 7.67)
    assert [(s.name, s.count, s.average) for s in report.by_admin] == [
        ("alice", 2, 6.5),
        ("bob", 1, 8.0),
    ]
    assert [(s.name, s.count) for s in report.by_department] == [
        ("sales@example.com", 1),
        ("support@example.com", 2),
    ]
    assert build_report([]).overall.count == 0


def test_now_is_parsed_as_utc() -> None:
    assert parse_now("2024-03-07T12:00:00") == NOW
    assert parse_now("2024-03-07T13:00:00+01:00") == NOW
    with pytest.raises(UsageError):
        parse_now("yesterday")
