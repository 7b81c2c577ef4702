"""Matching an inbound message to a ticket; the first rule that hits wins.

Rules in order: a reply token in a recipient address, In-Reply-To and
References against Message-IDs we received or sent, the `[Ticket #N]` subject
tag, and last a stored message that references this one (its reply arrived
first). Every rule tried is written to the decision trace.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from core.mail import InboundMail
from core.model import Ticket
from core.ports import UnitOfWork
from core.tokens import TokenClaims, split_reply_address, verify_token

SUBJECT_TAG = re.compile(r"\[\s*ticket\s*(?:id)?\s*[#:]?\s*#?\s*([A-Za-z0-9-]{1,64})\s*\]", re.I)
THREAD_ROLES = ("received", "sent")


@dataclass(frozen=True, slots=True)
class Match:
    """The ticket a message belongs to, which rule found it, and the token if one verified."""

    ticket: Ticket
    rule: str
    value: str
    claims: TokenClaims | None = None


def subject_numbers(subject: str) -> list[str]:
    """Ticket numbers tagged in a subject, in order."""
    return SUBJECT_TAG.findall(subject)


def resolve(uow: UnitOfWork, ticket: Ticket | None) -> Ticket | None:
    """Follow merges to the ticket that lives on."""
    seen: set[int] = set()
    while ticket is not None and ticket.merged_into_id is not None:
        if ticket.merged_into_id in seen:
            break
        seen.add(ticket.merged_into_id)
        ticket = uow.ticket(ticket.merged_into_id, lock=True)
    return ticket


def match_ticket(
    uow: UnitOfWork,
    mail: InboundMail,
    recipients: Iterable[str],
    secret: bytes,
    trace: list[str],
) -> Match | None:
    """The ticket this message replies to, or None for a new conversation."""
    sender = mail.sender.email if mail.sender else ""
    for match in (
        _by_token(uow, recipients, sender, secret, trace),
        _by_thread(uow, mail, trace),
        _by_subject(uow, mail.subject, trace),
        _by_reverse_reference(uow, mail, trace),
    ):
        if match is not None:
            return match
    trace.append("match: no rule matched; a new conversation")
    return None


def _found(uow: UnitOfWork, ticket_id: int) -> Ticket | None:
    return resolve(uow, uow.ticket(ticket_id, lock=True))


def _by_token(
    uow: UnitOfWork, recipients: Iterable[str], sender: str, secret: bytes, trace: list[str]
) -> Match | None:
    for address in dict.fromkeys(r.lower() for r in recipients):
        _, token = split_reply_address(address)
        if token is None:
            continue
        claims = verify_token(secret, token, sender) if secret and sender else None
        if claims is None:
            trace.append(f"match: token in {address} does not verify for sender {sender}")
            continue
        ticket = _found(uow, claims.ticket_id)
        if ticket is not None:
            trace.append(f"match: reply token in {address} names ticket {ticket.number}")
            return Match(ticket, "token", address, claims)
    return None


def _by_thread(uow: UnitOfWork, mail: InboundMail, trace: list[str]) -> Match | None:
    candidates = list(dict.fromkeys((*mail.in_reply_to, *reversed(mail.references))))
    for ticket_id in uow.tickets_by_mail_id(candidates, THREAD_ROLES):
        ticket = _found(uow, ticket_id)
        if ticket is not None:
            trace.append(f"match: In-Reply-To/References point to ticket {ticket.number}")
            return Match(ticket, "thread", ticket.number)
    if candidates:
        trace.append(f"match: {len(candidates)} referenced Message-ID(s), none of ours")
    return None


def _by_subject(uow: UnitOfWork, subject: str, trace: list[str]) -> Match | None:
    for number in subject_numbers(subject):
        ticket = resolve(uow, uow.ticket_by_number(number, lock=True))
        if ticket is not None:
            trace.append(f"match: subject tag [Ticket #{number}] names ticket {ticket.number}")
            return Match(ticket, "subject", number)
        trace.append(f"match: subject tag #{number} names no ticket")
    return None


def _by_reverse_reference(uow: UnitOfWork, mail: InboundMail, trace: list[str]) -> Match | None:
    if not mail.message_id:
        return None
    for ticket_id in uow.tickets_by_mail_id([mail.message_id], ("referenced",)):
        ticket = _found(uow, ticket_id)
        if ticket is not None:
            trace.append(f"match: ticket {ticket.number} already holds a reply to this Message-ID")
            return Match(ticket, "referenced", mail.message_id)
    return None
