"""Failure reports without a delivery-status part: who failed, read from the text."""

from __future__ import annotations

from mailgate.parse import parse_message


def test_null_from_report_names_the_recipient_in_the_returned_headers() -> None:
    raw = (
        b"From: MAILER-DAEMON <>\r\nTo: anna@shop.test\r\nSubject: Mail delivery failed\r\n\r\n"
        b"There was an error delivering your mail to <gone@far.test>.\r\n\r\n"
        b"550 5.1.1 no such user\r\n\r\nMessage headers follow.\r\n\r\n"
        b"Message-Id: <orig-1@shop.test>\r\nTo: <gone@far.test>\r\nSubject: Order\r\n"
    )
    bounce = parse_message(raw).bounce
    assert bounce is not None
    assert bounce.failed_recipients == ("gone@far.test",)
    assert bounce.original_message_id == "orig-1@shop.test"


def test_report_recognised_by_its_text_when_the_subject_says_nothing() -> None:
    raw = (
        b"From: System Administrator <postmaster@relay.test>\r\nTo: anna@shop.test\r\n"
        b"Subject: E\r\n\r\nYour message\r\n  To: bob@far.test\r\n  Subject: Order\r\n"
        b"did not reach the following recipient(s):\r\n"
        b"bob@far.test on Thu, 29 Apr 2010 00:00:00 -0000\r\n"
        b"    The recipient name is not recognized\r\n"
    )
    bounce = parse_message(raw).bounce
    assert bounce is not None and bounce.failed_recipients == ("bob@far.test",)
    assert bounce.permanent


def test_a_person_quoting_a_failure_is_not_a_bounce() -> None:
    raw = (
        b"From: Anna <anna@shop.test>\r\nTo: support@example.com\r\nSubject: Help\r\n\r\n"
        b"My order mail could not be delivered to bob@far.test, why?\r\n"
    )
    assert parse_message(raw).bounce is None


def _report(lines: bytes) -> tuple[str, ...]:
    raw = (
        b"From: Mail Delivery System <MAILER-DAEMON@relay.test>\r\nTo: anna@shop.test\r\n"
        b"Subject: Returned mail: see transcript\r\n\r\n" + lines
    )
    bounce = parse_message(raw).bounce
    assert bounce is not None
    return bounce.failed_recipients


def test_failed_addresses_in_the_shapes_mail_systems_write_them() -> None:
    assert _report(b"bob@far.test: 550 5.2.2 <bob@far.test>... Mailbox Full\r\n") == (
        "bob@far.test",
    )
    assert _report(
        b"---The following addresses had delivery errors---\r\n\r\nbob@far.test [User unknown]\r\n"
    ) == ("bob@far.test",)
    assert _report(b"aborted after 5.0 hour(s):\r\n  * bob@far.test\r\n") == ("bob@far.test",)
    assert _report(b"    Recipient: <bob@far.test>\r\n    >>> RCPT TO:<bob@far.test>\r\n") == (
        "bob@far.test",
    )
    transcript = (
        b">>> MAIL From:<anna@shop.test>\r\n<<< 501 <anna@shop.test>... no access\r\n"
        b"554 <bob@far.test>... Remote protocol error\r\n550 <cat@far.test>... User unknown\r\n"
    )
    assert _report(transcript) == ("bob@far.test", "cat@far.test")


def test_sendmail_preamble_is_not_taken_for_the_returned_message() -> None:
    lines = (
        b"The original message was received at Thu, 29 Apr 2011 23:34:45 +0900\r\n"
        b"from anna@shop.test\r\n\r\n---The following addresses had delivery errors---\r\n\r\n"
        b"bob@far.test [User unknown]\r\n"
    )
    assert _report(lines) == ("bob@far.test",)
