"""Loop, bounce and auto-reply classification: one test per signal, both ways."""

from __future__ import annotations

from dataclasses import replace

import pytest

from core.classify import classify_mail
from core.mail import Address, BounceReport, InboundMail

OWN = frozenset({"support.example.com"})
HUMAN = InboundMail(
    message_id="abc@mail.customer.example",
    subject="Printer broken",
    sender=Address("anna@customer.example", "Anna"),
    return_path="anna@customer.example",
    text="I will be on vacation next week, please fix it before.",
)


def _with(subject: str | None = None, **headers: str) -> InboundMail:
    pairs = tuple((name.replace("_", "-"), value) for name, value in headers.items())
    return replace(HUMAN, subject=subject or HUMAN.subject, headers=pairs)


def _reason(mail: InboundMail) -> str | None:
    verdict = classify_mail(mail, OWN)
    return verdict.reason if verdict else None


def test_human_mail_mentioning_vacation_is_not_classified() -> None:
    assert classify_mail(replace(HUMAN, subject="My vacation request"), OWN) is None


def test_own_loop_header_is_a_loop() -> None:
    verdict = classify_mail(_with(x_ticketd_loop="support.example.com"), OWN)
    assert verdict is not None and verdict.reason == "loop"
    assert verdict.signal == "x-ticketd-loop"


def test_custom_loop_header_name() -> None:
    mail = _with(x_helpdesk_loop="1")
    assert classify_mail(mail, OWN, loop_header="X-Helpdesk-Loop") is not None
    assert classify_mail(mail, OWN) is None


@pytest.mark.parametrize(
    ("message_id", "expected"),
    [
        ("ticketd.t123@support.example.com", "loop"),
        ("ticketd.t123@mx.support.example.com", "loop"),
        ("t123@support.example.com", None),
        ("ticketd.t123@notsupport.example.com", None),
        ("ticketd.t123@customer.example", None),
    ],
)
def test_own_message_id_domain_is_a_loop(message_id: str, expected: str | None) -> None:
    assert _reason(replace(HUMAN, message_id=message_id)) == expected


def test_loop_wins_over_bounce_and_auto_reply() -> None:
    mail = replace(_with(x_ticketd_loop="1", auto_submitted="auto-replied"), return_path="")
    assert _reason(mail) == "loop"


def test_delivery_report_is_a_bounce_not_an_auto_reply() -> None:
    report = BounceReport(("gone@customer.example",), permanent=True)
    mail = replace(_with(auto_submitted="auto-replied", precedence="bulk"), bounce=report)
    verdict = classify_mail(mail, OWN)
    assert verdict is not None and verdict.reason == "bounce"
    assert "gone@customer.example" in verdict.detail


def test_dsn_content_type_without_report_is_a_bounce() -> None:
    mail = _with(content_type="multipart/report; report-type=delivery-status; boundary=x")
    assert _reason(mail) == "bounce"


@pytest.mark.parametrize(
    "content_type",
    [
        "multipart/report; report-type=disposition-notification; boundary=x",
        'multipart/report; boundary="x";\r\n report-type="feedback-report"',
    ],
)
def test_read_receipts_and_abuse_reports_are_automatic_not_bounces(content_type: str) -> None:
    assert _reason(_with(content_type=content_type)) == "auto_reply"


def test_lotus_notes_out_of_office_subject_is_an_auto_reply() -> None:
    subject = "AUTO: Smith, John is out of the office. (returning 05/01/2010)"
    assert _reason(_with(subject)) == "auto_reply"
    assert _reason(_with("AUTO: deploy script failed")) is None


def test_provider_abuse_complaint_subject_is_automatic() -> None:
    assert _reason(_with("complaint about message from 192.0.2.222")) == "auto_reply"
    assert _reason(_with("complaint about message from my neighbour")) is None


def test_x_failed_recipients_is_a_bounce() -> None:
    assert _reason(_with(x_failed_recipients="gone@customer.example")) == "bounce"


@pytest.mark.parametrize(
    "sender", ["MAILER-DAEMON@mx.example", "postmaster@example.org", "mail-delivery@example.net"]
)
def test_delivery_system_sender_is_a_bounce(sender: str) -> None:
    assert _reason(replace(HUMAN, sender=Address(sender.lower()))) == "bounce"


def test_null_return_path_with_failure_subject_is_a_bounce() -> None:
    mail = replace(HUMAN, return_path="", subject="Undelivered Mail Returned to Sender")
    assert _reason(mail) == "bounce"


@pytest.mark.parametrize(
    "from_header",
    ["MAILER-DAEMON <>", "MAILER-DAEMON (Mail Delivery System)", "Mail Delivery Subsystem <>"],
)
def test_delivery_system_without_an_address_is_a_bounce(from_header: str) -> None:
    mail = replace(HUMAN, sender=None, headers=(("from", from_header),))
    assert _reason(mail) == "bounce"


def test_null_from_on_a_failure_report_is_a_bounce() -> None:
    mail = replace(HUMAN, sender=None, headers=(("from", "<>"),), subject="Delivery failure")
    assert _reason(mail) == "bounce"


@pytest.mark.parametrize("path", ["mailer-daemon", "MAILER-DAEMON@mx.example".lower()])
def test_delivery_system_return_path_is_a_bounce(path: str) -> None:
    assert _reason(replace(HUMAN, return_path=path)) == "bounce"


def test_web_form_mailer_is_not_a_bounce() -> None:
    """Contact forms send a visitor's message as mailer@ (their Reply-To is the visitor)."""
    assert _reason(replace(HUMAN, return_path="mailer@shop.example")) is None
    assert _reason(replace(HUMAN, sender=Address("mailer@shop.example"))) is None


def test_null_return_path_alone_is_not_a_bounce() -> None:
    assert _reason(replace(HUMAN, return_path="")) is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [("auto-replied", "auto_reply"), ("auto-generated", "auto_reply"), ("no", None), ("No", None)],
)
def test_auto_submitted(value: str, expected: str | None) -> None:
    assert _reason(_with(auto_submitted=value)) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("bulk", "auto_reply"),
        ("junk", "auto_reply"),
        ("list", "auto_reply"),
        ("auto_reply", "auto_reply"),
        ("first-class", None),
        ("normal", None),
    ],
)
def test_precedence(value: str, expected: str | None) -> None:
    assert _reason(_with(precedence=value)) == expected


@pytest.mark.parametrize(
    "name",
    [
        "x_autoreply",
        "x_autorespond",
        "x_autoresponse",
        "x_autogenerated",
        "x_autoreply_from",
        "x_mail_autoreply",
        "x_fc_machinegenerated",
    ],
)
def test_autoresponder_flag_headers(name: str) -> None:
    assert _reason(_with(**{name: "yes"})) == "auto_reply"


def test_autoresponder_flag_header_saying_no() -> None:
    assert _reason(_with(x_autoreply="no")) is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("All", "auto_reply"),
        ("OOF, AutoReply", "auto_reply"),
        ("OOF", "auto_reply"),
        ("DR, RN, NRN", None),
        ("NDR", None),
    ],
)
def test_x_auto_response_suppress(value: str, expected: str | None) -> None:
    assert _reason(_with(x_auto_response_suppress=value)) == expected


@pytest.mark.parametrize("name", ["list_id", "list_unsubscribe", "list_post"])
def test_mailing_list_mail_counts_as_auto_reply(name: str) -> None:
    assert _reason(_with(**{name: "<dev.lists.example>"})) == "auto_reply"


@pytest.mark.parametrize(
    "name", ["x_otrs_loop", "x_zammad_loop", "x_rt_loop_prevention", "x_loop", "x_cron_env"]
)
def test_other_ticket_systems_and_robots(name: str) -> None:
    assert _reason(_with(**{name: "yes"})) == "auto_reply"


def test_apple_vacation_header() -> None:
    assert _reason(_with(x_apple_action="VACATION")) == "auto_reply"
    assert _reason(_with(x_apple_action="FORWARD")) is None


def test_request_tracker_ids() -> None:
    mail = replace(HUMAN, references=("RT-Ticket-33575@rt.example.org",))
    assert _reason(mail) == "auto_reply"


@pytest.mark.parametrize(
    ("local", "expected"),
    [
        ("dev-owner", "auto_reply"),
        ("owner-dev", "auto_reply"),
        ("dev+owner", "auto_reply"),
        ("dev-bounces", "auto_reply"),
        ("dev-request", "auto_reply"),
        ("owner", None),
    ],
)
def test_list_robot_senders(local: str, expected: str | None) -> None:
    assert _reason(replace(HUMAN, sender=Address(f"{local}@lists.example"))) == expected


@pytest.mark.parametrize(
    "subject",
    ["Out of Office: Printer", "Automatic reply: Printer", "Autoreply", "Abwesenheitsnotiz"],
)
def test_vacation_subject_needs_a_weak_signal(subject: str) -> None:
    assert _reason(replace(HUMAN, subject=subject)) is None
    assert _reason(replace(HUMAN, subject=subject, return_path="")) == "auto_reply"
    noreply = replace(HUMAN, subject=subject, sender=Address("no-reply@customer.example"))
    assert _reason(noreply) == "auto_reply"


def test_classification_names_signal_and_value() -> None:
    verdict = classify_mail(_with(auto_submitted="auto-replied"), OWN)
    assert verdict is not None
    assert (verdict.reason, verdict.signal, verdict.detail) == (
        "auto_reply",
        "auto-submitted",
        "auto-replied",
    )
