"""Every corpus message through the whole intake: the real `ticketd pipe`, the SMTP
listener, and the manifest's facts read back from `ticket show` and the import log."""

from __future__ import annotations

import json
import re
import smtplib
from pathlib import Path
from typing import Any

import pytest
from conftest import Daemon, run_cli, run_pipe, write_config
from test_parse_corpus import CORPUS, LIST_SIGNALS, MESSAGES
from test_smtp import Running

from core.intake import Envelope
from core.policy import DEFAULT_EXTENSIONS
from core.views import import_summary, ticket_document
from mailgate.accept import accept_message
from mailgate.parse import collapse, safe_filename

pytestmark = pytest.mark.skipif(not MESSAGES, reason=f"no corpus at {CORPUS}")
DEPARTMENT = "support@example.com"
ALLOWED = DEFAULT_EXTENSIONS  # the test config keeps the default list


def _raw(entry: dict[str, Any]) -> bytes:
    return (CORPUS / entry["file"]).read_bytes()


def _expected_reason(entry: dict[str, Any]) -> set[str | None]:
    facts = entry["facts"]
    if facts["is_bounce"]:
        return {"bounce"}
    if facts["is_autoreply"]:
        return {"auto_reply"}
    if facts["from_address"] is None:
        return {"malformed"}
    signals = {s.lower().split(":")[0] for s in facts["autoresponse_suppression_signals"]}
    if signals & LIST_SIGNALS or entry["category"] == "lists":
        return {None, "auto_reply"}
    return {None}


def _allowed_names(entry: dict[str, Any]) -> list[str] | None:
    attachments = entry["facts"].get("attachments")
    if attachments is None:
        return None
    names = []
    for item in attachments:
        if item["filename"] is None:
            return None
        name = safe_filename(item["filename"])
        if not re.search(r"\.[A-Za-z0-9]{1,8}$", name):
            return None
        if "." + name.rpartition(".")[2].lower() in ALLOWED:
            names.append(name)
    return names


def _state(app: Any) -> list[dict[str, Any]]:
    """Ticket state without ids, numbers or times, for comparing two imports."""
    with app.uow() as uow:
        tickets = [ticket_document(uow, t) for t in uow.tickets(include_merged=True)]
        log = [import_summary(r, None) for r in uow.import_records()]
    state = [
        {
            "subject": t["subject"],
            "requester": t["requester"],
            "status": t["status"],
            "messages": sorted(
                (
                    m["author_email"],
                    m["body"].strip(),
                    tuple(a["filename"] for a in m["attachments"]),
                )
                for m in t["messages"]
            ),
        }
        for t in tickets
    ]
    outcomes = sorted((r["from"], r["subject"], r["outcome"], r["reason"] or "") for r in log)
    return [*sorted(state, key=json.dumps), {"imports": outcomes}]


def test_corpus_facts_through_the_pipeline(app: Any) -> None:
    mismatches = []
    seen_ids: set[str] = set()
    for entry in MESSAGES:
        decision = accept_message(app, _raw(entry), Envelope("pipe", None, (DEPARTMENT,)))
        facts = entry["facts"]
        expected = _expected_reason(entry)
        if facts["message_id"] is not None:
            if facts["message_id"] in seen_ids:
                expected = {"duplicate"}
            seen_ids.add(facts["message_id"])
        if decision.reason not in expected:
            mismatches.append((entry["file"], "reason", decision.reason))
            continue
        if decision.outcome != "new_ticket":
            continue
        with app.uow() as uow:
            ticket = uow.ticket_by_number(decision.ticket_number or "")
            assert ticket is not None
            doc = ticket_document(uow, ticket)
        want_subject = collapse(facts["subject"] or "") or "(no subject)"
        if collapse(doc["subject"]) != want_subject:
            mismatches.append((entry["file"], "subject", doc["subject"]))
        if doc["requester"]["email"] != facts["from_address"].lower():
            mismatches.append((entry["file"], "from", doc["requester"]["email"]))
        names = _allowed_names(entry)
        stored = [a["filename"] for a in doc["messages"][0]["attachments"]]
        if names is not None and sorted(stored) != sorted(names):
            mismatches.append((entry["file"], "attachments", stored, names))
    assert mismatches == []


def test_corpus_through_ticketd_pipe_exits_zero(daemon: Daemon) -> None:
    for entry in MESSAGES:
        result = run_pipe(daemon.config, _raw(entry), "--department", DEPARTMENT)
        assert result.returncode == 0, (entry["file"], result.stderr)
    listed = json.loads(run_cli(daemon.config, "importlog", "list", "--json").stdout)
    assert len(listed) == len(MESSAGES)
    assert {r["outcome"] for r in listed} <= {"new_ticket", "reply", "blocked"}
    assert all(r["transport"] == "pipe" for r in listed)


def test_corpus_by_smtp_gives_the_same_state_as_by_pipe(
    app: Any, tmp_path: Path, another_database_url: str
) -> None:
    from mailgate.app import App
    from mailgate.settings import load_settings

    for entry in MESSAGES:
        accept_message(app, _raw(entry), Envelope("pipe", None, (DEPARTMENT,)))
    other = App(load_settings(write_config(tmp_path / "smtp", another_database_url)))
    other.init()
    running = Running(other)
    try:
        with smtplib.SMTP("127.0.0.1", running.port, timeout=30) as client:
            for entry in MESSAGES:
                wire = re.sub(rb"\r?\n", b"\r\n", _raw(entry))  # SMTP lines end in CRLF
                client.sendmail("corpus@client.test", [DEPARTMENT], wire)
    finally:
        running.stop()
    assert _state(other) == _state(app)
