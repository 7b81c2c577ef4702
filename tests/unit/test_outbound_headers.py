"""Outbound messages built from stored payloads: exact header set, nothing injected."""

from __future__ import annotations

import email
import email.policy
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.model import Ticket
from mailgate.headers import clean_header_text, format_address, safe_headers
from mailgate.notify import thread_index
from mailgate.outbound import backoff, build_message

HOSTILE = [
    "plain",
    "x\r\nBcc: evil@x.test",
    "x\nBcc: evil@x.test",
    "=?utf-8?q?x=0D=0ABcc:_evil@x.test?=",
    "=?utf-8?b?YQ0KQmNjOiBldmlsQHgudGVzdA==?=",
    "x\u2028Bcc: evil@x.test",
    "x\x85Bcc: evil@x.test",
    "Ünïcödé " * 200,
    "word" * 1000,
]


class NoBlobs:
    def get(self, digest: str) -> bytes:
        raise AssertionError("no attachments expected")


def payload(subject: str, name: str) -> dict[str, Any]:
    headers = [
        ("From", format_address("Support", "support@example.com")),
        ("To", format_address(name, "gina@guest.test")),
        ("Subject", subject),
        ("Message-ID", "<ticketd.abc@example.com>"),
        ("Auto-Submitted", "auto-generated"),
    ]
    return {
        "headers": safe_headers(headers),
        "text": "Hi\n",
        "html": "<p>Hi</p>",
        "attachments": [],
    }


def header_names(raw: bytes) -> list[str]:
    head = raw.split(b"\r\n\r\n", 1)[0]
    return [
        line.split(b":", 1)[0].decode().lower()
        for line in head.split(b"\r\n")
        if line[:1] not in (b" ", b"\t")
    ]


EXPECTED = ["from", "to", "subject", "message-id", "auto-submitted", "content-type", "mime-version"]


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_subject_or_name_keeps_the_header_set(text: str) -> None:
    raw = build_message(payload(text, text), NoBlobs())  # type: ignore[arg-type]
    assert sorted(header_names(raw)) == sorted(EXPECTED)
    assert all(len(line) <= 998 for line in raw.split(b"\r\n"))
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert "bcc" not in {k.lower() for k in parsed}
    subject = str(parsed["Subject"])
    assert "\r" not in subject and "\n" not in subject
    assert subject == clean_header_text(text)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_any_subject_keeps_the_header_set(text: str) -> None:
    raw = build_message(payload(text, text), NoBlobs())  # type: ignore[arg-type]
    assert sorted(header_names(raw)) == sorted(EXPECTED)


def test_stored_payload_is_cleaned_again_when_sent() -> None:
    stored = payload("ok", "Gina")
    stored["headers"].append(("Subject-Extra", "a\r\nBcc: evil@x.test"))
    raw = build_message(stored, NoBlobs())  # type: ignore[arg-type]
    assert "bcc" not in header_names(raw)
    with pytest.raises(ValueError):
        build_message({**stored, "headers": [("Bad Name", "x")]}, NoBlobs())  # type: ignore[arg-type]


def test_thread_index_is_22_plus_5_bytes_with_a_stable_root() -> None:
    import base64

    created = datetime(2026, 1, 1, tzinfo=UTC)
    ticket = Ticket(
        "123456", "s", "Open", "Medium", 1, "g@x.test", "G", created, created, created, id=7
    )
    first = base64.b64decode(thread_index(ticket, created + timedelta(hours=1)))
    second = base64.b64decode(thread_index(ticket, created + timedelta(days=2)))
    assert len(first) == len(second) == 27
    assert first[:22] == second[:22]


def test_backoff_doubles_and_is_capped() -> None:
    assert [backoff(60, n).total_seconds() for n in (1, 2, 3)] == [60, 120, 240]
    assert backoff(60, 30) == timedelta(hours=6)


def _without_boundary(raw: bytes) -> bytes:
    import re

    found = re.search(rb'boundary="([^"]+)"', raw)
    return raw.replace(found.group(1), b"BOUNDARY") if found else raw


@settings(max_examples=150, deadline=None)
@given(
    subject=st.text(max_size=120),
    name=st.text(max_size=60),
    text=st.text(max_size=400),
    html=st.text(max_size=400),
)
def test_direct_builder_writes_what_the_email_package_writes(
    subject: str, name: str, text: str, html: str
) -> None:
    from mailgate.outbound import _build_with_email_package

    stored = {**payload(subject, name), "text": text, "html": html}
    headers = safe_headers([(n, v) for n, v in stored["headers"]])
    direct = build_message(stored, NoBlobs())  # type: ignore[arg-type]
    reference = _build_with_email_package(headers, text, html, [], NoBlobs())  # type: ignore[arg-type]
    assert _without_boundary(direct) == _without_boundary(reference)
