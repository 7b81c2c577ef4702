"""The outbox sender: claim due rows, build each message from its payload, hand it to
the transport, and mark it sent in the database right after the transport accepts.

Transports: a Maildir (the default; the file name comes from the outbox id, so
a re-send after a crash overwrites instead of duplicating) and SMTP (STARTTLS,
AUTH, one connection reused for a batch). With SMTP, a crash between the
server's acceptance and the database update sends that one message twice on
the retry: at most one duplicate per crashed sender, by design (the DB update
cannot be in the SMTP transaction). Claiming pushes a row's `next_attempt_at`
out by `claim_seconds` (a lease), with `FOR UPDATE SKIP LOCKED` on PostgreSQL,
so several instances never send the same row; a crashed instance's claims
come due again when their lease ends. 4xx replies and connection errors retry
with exponential backoff; 5xx replies fail the row and log it on the ticket.
"""

from __future__ import annotations

import asyncio
import binascii
import contextlib
import functools
import hashlib
import json
import logging
import os
import random
import re
import smtplib
import ssl
import sys
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email import quoprimime
from email.headerregistry import HeaderRegistry, UnstructuredHeader
from email.message import EmailMessage
from email.policy import SMTP
from pathlib import Path
from typing import Any, Protocol

from core.model import LogEntry
from mailgate.app import App, utcnow
from mailgate.headers import safe_headers
from mailgate.settings import OutboundSettings
from storage.blobs import BlobStore
from storage.sent_marks import SentMarks

log = logging.getLogger(__name__)
MAX_BACKOFF = timedelta(hours=6)


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One claimed message, ready for a transport."""

    item_id: int
    mail_id: str
    envelope_from: str
    recipient: str
    data: bytes


class DeliveryError(Exception):
    """The transport refused the message; `permanent` for 5xx, else retry later."""

    def __init__(self, text: str, permanent: bool) -> None:
        super().__init__(text)
        self.permanent = permanent


class Transport(Protocol):
    def send(self, mail: Outgoing) -> None: ...
    def close(self) -> None: ...


@dataclass
class MaildirTransport:
    """Delivers into `folder/new`, named after the outbox id (idempotent re-sends)."""

    folder: Path

    def send(self, mail: Outgoing) -> None:
        digest = hashlib.sha256(mail.mail_id.encode()).hexdigest()[:16]
        name = f"ticketd-{mail.item_id}-{digest}"
        for sub in ("tmp", "new", "cur"):
            (self.folder / sub).mkdir(parents=True, exist_ok=True)
        tmp = self.folder / "tmp" / name
        with tmp.open("wb") as handle:
            handle.write(b"Return-Path: <" + mail.envelope_from.encode() + b">\r\n")
            handle.write(mail.data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self.folder / "new" / name)

    def close(self) -> None:
        return None


@dataclass
class SmtpTransport:
    """Sends over one reused SMTP connection; reconnects after a failure."""

    settings: OutboundSettings
    connection: smtplib.SMTP | None = field(default=None, repr=False)

    def _connect(self) -> smtplib.SMTP:
        s = self.settings
        conn = smtplib.SMTP(s.smtp_host, s.smtp_port, timeout=s.smtp_timeout_seconds)
        try:
            conn.ehlo()
            if s.smtp_starttls:
                conn.starttls(context=ssl.create_default_context())
                conn.ehlo()
            if s.smtp_username:
                conn.login(s.smtp_username, s.smtp_password)
        except BaseException:
            conn.close()
            raise
        return conn

    def send(self, mail: Outgoing) -> None:
        try:
            if self.connection is None:
                self.connection = self._connect()
            self.connection.sendmail(mail.envelope_from, [mail.recipient], mail.data)
        except smtplib.SMTPRecipientsRefused as err:
            code, text = next(iter(err.recipients.values()))
            raise self._refused(code, text) from err
        except (smtplib.SMTPSenderRefused, smtplib.SMTPDataError) as err:
            raise self._refused(err.smtp_code, err.smtp_error) from err
        except (smtplib.SMTPException, OSError) as err:
            self.close()
            raise DeliveryError(f"smtp: {type(err).__name__}: {err}", permanent=False) from err

    def _refused(self, code: int, text: bytes | str) -> DeliveryError:
        message = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
        permanent = 500 <= code <= 599
        if not permanent:
            self.close()
        return DeliveryError(f"smtp {code}: {message}", permanent)

    def close(self) -> None:
        conn, self.connection = self.connection, None
        if conn is not None:
            with contextlib.suppress(smtplib.SMTPException, OSError):
                conn.quit()
            conn.close()


def make_transport(settings: OutboundSettings) -> Transport:
    if settings.transport == "smtp":
        return SmtpTransport(settings)
    return MaildirTransport(Path(settings.maildir))


def build_message(payload: dict[str, Any], blobs: BlobStore) -> bytes:
    """The message bytes (CRLF) from a stored payload; headers cleaned once more.

    The usual text + HTML message is written directly, byte for byte as the email
    package writes it (a few times faster); other shapes go through `EmailMessage`.
    """
    headers = safe_headers([(n, v) for n, v in payload["headers"]])
    text, html = payload["text"], payload["html"]
    if payload["attachments"] or any(n.lower() in _MIME_HEADERS for n, _ in headers):
        return _build_with_email_package(headers, text, html, payload["attachments"], blobs)
    lines = _header_lines(headers)
    parts = [
        _text_part("plain", text, b""),
        _text_part("html", html, b"MIME-Version: 1.0\r\n"),  # as add_alternative() writes it
    ]
    boundary = _boundary(parts)
    delimiter = b"\r\n--" + boundary + b"\r\n"
    return b"".join(
        [
            *lines,
            b"MIME-Version: 1.0\r\nContent-Type: multipart/alternative;\r\n",
            b' boundary="' + boundary + b'"\r\n\r\n--' + boundary + b"\r\n",
            delimiter.join(parts),
            b"\r\n--" + boundary + b"--\r\n",
        ]
    )


_MIME_HEADERS = frozenset({"mime-version", "content-type", "content-transfer-encoding"})
_NEWLINE = re.compile(rb"\r\n|\r|\n")


def _build_with_email_package(
    headers: list[tuple[str, str]],
    text: str,
    html: str,
    attachments: list[dict[str, Any]],
    blobs: BlobStore,
) -> bytes:
    msg = EmailMessage(policy=SMTP)
    for name, value in headers:
        msg[name] = value
    msg.set_content(text, charset="utf-8")
    msg.add_alternative(html, subtype="html", charset="utf-8")
    for item in attachments:
        maintype, _, subtype = item["content_type"].partition("/")
        if not maintype or not subtype:
            maintype, subtype = "application", "octet-stream"
        msg.add_attachment(
            blobs.get(item["sha256"]),
            maintype=maintype,
            subtype=subtype,
            filename=item["filename"],
        )
    return msg.as_bytes(policy=SMTP)


def _header_lines(headers: list[tuple[str, str]]) -> list[bytes]:
    """The folded header lines; ValueError for a repeated unique header, as `EmailMessage`."""
    seen: dict[str, int] = {}
    lines = []
    for name, value in headers:
        lname = name.lower()
        seen[lname] = found = seen.get(lname, 0) + 1
        max_count = _max_count(name)
        if max_count and found > max_count:
            raise ValueError(f"There may be at most {max_count} {name} headers in a message")
        lines.append(_header_line(name, value))
    return lines


_ADDR_SPEC = r"[A-Za-z0-9_+-]+(?:\.[A-Za-z0-9_+-]+)*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*"
_ONE_ADDRESS = re.compile(rf"(?:[A-Za-z0-9_-]+(?: [A-Za-z0-9_-]+)* <{_ADDR_SPEC}>|{_ADDR_SPEC})")
# structured headers whose value, in these plain forms, the email package writes unchanged
_PLAIN_FORMS = {
    "from": _ONE_ADDRESS,
    "to": _ONE_ADDRESS,
    "cc": _ONE_ADDRESS,
    "reply-to": _ONE_ADDRESS,
    "message-id": re.compile(rf"<{_ADDR_SPEC}>"),
}


@functools.lru_cache(maxsize=4096)
def _header_line(name: str, value: str) -> bytes:
    """`name: value` folded as `EmailMessage` folds it under the SMTP policy (most repeat)."""
    if len(name) + len(value) <= 76 and _written_unchanged(name, value):
        return f"{name}: {value}\r\n".encode("ascii")
    return SMTP.fold_binary(*SMTP.header_store_parse(name, value))


def _written_unchanged(name: str, value: str) -> bool:
    """True when a short `value` needs no parsing: plain ASCII text or a plain form."""
    form = _PLAIN_FORMS.get(name.lower())
    if form is not None:
        return form.fullmatch(value) is not None
    simple = value.isascii() and value.isprintable() and value.strip() == value != ""
    return simple and _unstructured(name)


@functools.lru_cache(maxsize=256)
def _unstructured(name: str) -> bool:
    return issubclass(HeaderRegistry()[name], UnstructuredHeader)


@functools.lru_cache(maxsize=256)
def _max_count(name: str) -> int | None:
    return SMTP.header_max_count(name)


def _text_part(subtype: str, text: str, extra: bytes) -> bytes:
    """One `text/*` part as `set_content(text, charset="utf-8")` writes it under SMTP."""
    cte, body = _encode_text(text)
    head = f'Content-Type: text/{subtype}; charset="utf-8"\r\nContent-Transfer-Encoding: {cte}\r\n'
    data = body.encode("ascii", "surrogateescape")
    return head.encode("ascii") + extra + b"\r\n" + _NEWLINE.sub(b"\r\n", data)


def _encode_text(text: str) -> tuple[str, str]:
    """The transfer encoding and body `email.contentmanager` picks for UTF-8 text."""
    lines = text.encode("utf-8").splitlines()
    max_len = SMTP.max_line_length or 78
    if max((len(line) for line in lines), default=0) <= max_len:
        body = b"\n".join(lines) + b"\n"
        return ("7bit" if body.isascii() else "8bit"), body.decode("ascii", "surrogateescape")
    sniff = b"\r\n".join(lines[:10]) + b"\r\n"
    sniff_qp = quoprimime.body_encode(sniff.decode("latin-1"), max_len)
    if len(sniff_qp) > len(binascii.b2a_base64(sniff)):
        data = b"\r\n".join(lines) + b"\r\n"
        step = max_len // 4 * 3
        chunks = (data[i : i + step] for i in range(0, len(data), step))
        return "base64", "".join(binascii.b2a_base64(chunk).decode("ascii") for chunk in chunks)
    if len(lines) <= 10:
        return "quoted-printable", sniff_qp
    text_body = (b"\n".join(lines) + b"\n").decode("latin-1")
    return "quoted-printable", quoprimime.body_encode(text_body, max_len)


def _boundary(parts: list[bytes]) -> bytes:
    """A multipart boundary in the email package's form that no part contains."""
    while True:
        boundary = b"===============%019d==" % random.randrange(sys.maxsize)
        if not any(boundary in part for part in parts):
            return boundary


@dataclass(frozen=True, slots=True)
class SendReport:
    """What one pass did."""

    sent: int = 0
    retried: int = 0
    failed: int = 0

    def __add__(self, other: SendReport) -> SendReport:
        return SendReport(
            self.sent + other.sent, self.retried + other.retried, self.failed + other.failed
        )


@dataclass(frozen=True, slots=True)
class Claimed:
    """A row leased to this sender: its id, Message-ID and stored payload."""

    item_id: int
    mail_id: str
    payload: str


def claim(app: App, now: datetime) -> list[Claimed]:
    """Lease a batch of due rows to this sender."""
    settings = app.settings.outbound
    lease_end = now + timedelta(seconds=settings.claim_seconds)
    with app.uow() as uow:
        rows = uow.claim_outbox(now, settings.batch_size, lease_end)
        uow.commit()
    return [Claimed(*row) for row in rows]


def outgoing(app: App, claimed: Claimed) -> Outgoing:
    """The message of a claimed row; ValueError when its payload is unusable."""
    try:
        payload = json.loads(claimed.payload)
        data = build_message(payload, app.blobs)
        return Outgoing(
            claimed.item_id, claimed.mail_id, payload["envelope_from"], payload["to"], data
        )
    except (KeyError, TypeError, OSError, ValueError) as err:
        raise ValueError(f"cannot build the message: {type(err).__name__}: {err}") from err


def send_due(app: App, transport: Transport) -> SendReport:
    """Send everything due now, batch by batch; returns the totals."""
    total = SendReport()
    while True:
        started = utcnow()
        batch = claim(app, started)
        if not batch:
            return total
        lease_end = started + timedelta(seconds=app.settings.outbound.claim_seconds * 0.8)
        with SentMarks(app.engine) as marks:
            for claimed in batch:
                if utcnow() > lease_end:
                    break
                total += _deliver(app, transport, claimed, marks)


def _deliver(app: App, transport: Transport, claimed: Claimed, marks: SentMarks) -> SendReport:
    try:
        mail = outgoing(app, claimed)
    except ValueError as err:
        return _record_failure(app, claimed.item_id, str(err), permanent=True)
    try:
        transport.send(mail)
    except DeliveryError as err:
        return _record_failure(app, claimed.item_id, str(err), err.permanent)
    marks.mark(claimed.item_id, utcnow())  # right after the transport accepted it
    return SendReport(sent=1)


def _record_failure(app: App, item_id: int, error: str, permanent: bool) -> SendReport:
    now = utcnow()
    settings = app.settings.outbound
    with app.uow() as uow:
        item = uow.outbox_item(item_id)
        if item is None:
            return SendReport()
        item.last_error = error[:2000]
        give_up = permanent or item.attempts >= settings.retry_limit
        if give_up:
            item.status = "failed"
            ticket = uow.ticket(item.ticket_id) if item.ticket_id is not None else None
            if ticket is not None:
                detail = f"{item.event} to {item.recipient}: {error}"[:1000]
                ticket.log.append(
                    LogEntry(at=now, actor="system", action="delivery failed", detail=detail)
                )
        else:
            item.next_attempt_at = now + backoff(settings.retry_base_seconds, item.attempts)
        uow.commit()
        recipient = item.recipient
    log.warning(
        "outbox %s to %s: %s (%s)", item_id, recipient, error, "failed" if give_up else "will retry"
    )
    return SendReport(failed=1) if give_up else SendReport(retried=1)


def backoff(base_seconds: int, attempts: int) -> timedelta:
    """base, 2*base, 4*base, ... after each failed attempt, at most six hours."""
    delay = timedelta(seconds=base_seconds * 2 ** max(0, attempts - 1))
    return min(delay, MAX_BACKOFF)


async def run_sender(app: App, stop: asyncio.Event) -> None:
    """Send due notifications until `stop` is set; the blocking work runs in a thread."""
    transport = make_transport(app.settings.outbound)
    try:
        while not stop.is_set():
            report = await asyncio.to_thread(send_due, app, transport)
            if report.sent or report.failed:
                log.info(
                    "outbox: %s sent, %s retrying, %s failed",
                    report.sent,
                    report.retried,
                    report.failed,
                )
            await asyncio.to_thread(transport.close)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), app.settings.outbound.poll_seconds)
    finally:
        await asyncio.to_thread(transport.close)
