"""Bounce stage of parsing: a delivery failure report read out of a parsed message.

A `message/delivery-status` part (RFC 3464) is read field by field; failing
that, mail that looks automatic and failed has its failed addresses read from
the text. The original Message-ID comes from the returned message or its
headers. It hands on the `InboundMail` with its `BounceReport`, or unchanged.
"""

from __future__ import annotations

import re
from dataclasses import replace
from email import message_from_bytes
from email.message import Message
from email.policy import compat32
from email.utils import getaddresses

from core.classify import is_bounce_address, looks_like_failure, sent_by_mail_system
from core.mail import BounceReport, InboundMail
from mailgate.charsets import decode_bytes, header_text
from mailgate.header_fields import first_id, valid_address
from mailgate.mime_walk import PartWalk, children

_ORIGINAL_MARKER = re.compile(
    r"^.*(?:below this line is a copy|original message(?! was received)"
    r"|this is a copy of the message|header of the original message|message follows"
    r"|headers follow|undelivered message).*$",
    re.IGNORECASE | re.MULTILINE,
)
_ADDRESS = r"""([^\s"<>@:()\[\],;]+@[^\s"<>@:()\[\],;]*[A-Za-z0-9])"""
# Where mail systems name the addresses that failed, each pattern's group 1:
_FAILED_PATTERNS = (
    # alone on a line, perhaps after "... failed:" or before "on <date>"
    re.compile(
        rf"""^\s*(?:[^\n:]*(?:failed|undeliverable)[^\n:]*:\s*)?["<]*{_ADDRESS}[">]*:?\s*"""
        r"""(?:<mailto:[^>\s]*>)?\s*(?:\son\s.*)?$""",
        re.IGNORECASE | re.MULTILINE,
    ),
    # first on a line, followed by the reason: "a@x: 550 ...", "a@x [User unknown]"
    re.compile(
        rf"^[ \t]*(?:[*\-][ \t]*)?<?{_ADDRESS}>?(?=:|[ \t]+[\[(A-Za-z]|[ \t]*$)", re.I | re.M
    ),
    # after a label: "Recipient: <a@x>", "RCPT TO:<a@x>", "could not be delivered to: a@x"
    re.compile(
        r"(?:\brcpt to|\brecipients?|returned (?:permanent |temporary )?errors?|delivered to"
        rf"|target mail address)[ \t]*:?[ \t]*<?{_ADDRESS}",
        re.IGNORECASE,
    ),
    # an SMTP reply naming it: "550 <a@x>... User unknown", "<<< 554 5.1.1 <a@x>"
    re.compile(rf"^\s*(?:<<<\s*)?[45]\d\d[ -](?:[45]\.\d+\.\d+\s+)?<{_ADDRESS}>", re.M),
)
_DELAY = re.compile(
    r"delayed|still being retried|will (?:be retried|continue|keep trying)"
    r"|could not send message for past|not yet been delivered|warning message only",
    re.IGNORECASE,
)
_HEADER_MSG_ID = re.compile(r"^message-id:\s*(<[^>\r\n]+>|\S+)", re.IGNORECASE | re.MULTILINE)


def with_bounce(mail: InboundMail, body: PartWalk) -> InboundMail:
    """The mail with its bounce report, when it is a delivery failure."""
    report = _dsn_report(body)
    if report is None:
        if not sent_by_mail_system(mail):  # cheap, and false for nearly all mail
            return mail
        if not (looks_like_failure(mail.subject) or looks_like_failure(mail.text[:2000])):
            return mail
        report = _text_report(mail, body)
    if report.original_message_id is None:
        original = _original_id(body, mail.text)
        report = BounceReport(report.failed_recipients, report.permanent, original)
    return replace(mail, bounce=report)


def _dsn_report(body: PartWalk) -> BounceReport | None:
    recipients: list[str] = []
    permanent = False
    for part in body.reports:
        for fields in _dsn_blocks(part):
            action = fields.get("action", "").lower()
            status = fields.get("status", "")
            address = _dsn_address(fields)
            if not address or action in ("delivered", "relayed", "expanded"):
                continue
            recipients.append(address)
            # "failed" is final even with a 4.x.x status: the MTA has given up
            permanent = permanent or action == "failed" or status.startswith("5")
    if not recipients:
        return None
    return BounceReport(tuple(dict.fromkeys(recipients)), permanent)


def _dsn_blocks(part: Message) -> list[dict[str, str]]:
    if isinstance(part.get_payload(), list):
        groups = children(part)
        return [{k.lower(): header_text(str(v)) for k, v in g.raw_items()} for g in groups]
    texts = re.split(r"\r?\n[ \t]*\r?\n", str(part.get_payload()))
    found = (re.findall(r"^([A-Za-z-]+):[ \t]*(.*)$", t, re.MULTILINE) for t in texts)
    return [{k.lower(): v.strip() for k, v in pairs} for pairs in found]


def _dsn_address(fields: dict[str, str]) -> str | None:
    for key in ("original-recipient", "final-recipient"):
        value = fields.get(key, "").rpartition(";")[2].strip().strip("<>").lower()
        if valid_address(value):
            return value
    return None


def _text_report(mail: InboundMail, body: PartWalk) -> BounceReport:
    """A bounce without a delivery-status part: read the failed addresses from the text."""
    failed = mail.header("x-failed-recipients")
    report_text = _ORIGINAL_MARKER.split(mail.text, 1)[0]
    if failed:
        found = [a.strip().lower() for a in failed.split(",") if valid_address(a.strip())]
    else:
        found = _failed_in_text(mail, report_text)
    if not found:
        found = _original_recipients(body, mail.text)
    permanent = not _DELAY.search(f"{mail.subject}\n{report_text}")
    return BounceReport(tuple(dict.fromkeys(found)), permanent)


def _failed_in_text(mail: InboundMail, report: str) -> list[str]:
    """Addresses the report names as failed, in order; never the report's own
    sender or recipient (the original sender) and never a mail system's address."""
    own = {a.email for a in (*mail.to, *([mail.sender] if mail.sender else []))}
    hits = sorted(
        (match.start(1), match.group(1).lower())
        for pattern in _FAILED_PATTERNS
        for match in pattern.finditer(report)
    )
    return [
        address
        for _, address in hits
        if valid_address(address) and address not in own and not is_bounce_address(address)
    ]


def _original_recipients(body: PartWalk, text: str) -> list[str]:
    for source in _original_sources(body, text):
        headers = message_from_bytes(source.encode("utf-8", "surrogateescape"), policy=compat32)
        to = getaddresses(headers.get_all("to", []))
        found = [a.lower() for _, a in to if valid_address(a)]
        if found:
            return found
    return []


def _original_sources(body: PartWalk, text: str) -> list[str]:
    kinds = ("message/rfc822", "text/rfc822-headers", "message/rfc822-headers")
    sources = [decode_bytes(a.data, None) for a in body.attachments if a.content_type in kinds]
    parts = _ORIGINAL_MARKER.split(text, 1)
    return sources + ([parts[1].lstrip("\n")] if len(parts) > 1 else [])


def _original_id(body: PartWalk, text: str) -> str | None:
    for source in _original_sources(body, text):
        match = _HEADER_MSG_ID.search(source)
        if match:
            return first_id(match.group(1))
    return None
