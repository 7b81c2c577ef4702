"""The parsed form of one inbound message, handed from parsing to the intake rules.

`mailgate.parse` is the only producer; core reads it and never sees raw MIME.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True, slots=True)
class Address:
    """One mailbox: a lower-cased addr-spec and its display name (may be empty)."""

    email: str
    name: str = ""


@dataclass(frozen=True, slots=True)
class Attachment:
    """One attachment with a name safe to show (never used as a path).

    `declared_name` is the decoded name the sender gave, before it was made
    safe; None when the part had no name.
    """

    filename: str
    content_type: str
    data: bytes
    inline: bool = False
    content_id: str | None = None
    declared_name: str | None = None


@dataclass(frozen=True, slots=True)
class BounceReport:
    """What a delivery status notification says about the message it returns."""

    failed_recipients: tuple[str, ...]
    permanent: bool
    original_message_id: str | None = None


@dataclass(frozen=True, slots=True)
class InboundMail:
    """Everything the intake rules need from one message.

    Message-IDs are stored without angle brackets. `headers` keeps the
    decoded values of the headers classification looks at, names lower-cased.
    """

    message_id: str | None
    subject: str
    sender: Address | None
    reply_to: tuple[Address, ...] = ()
    to: tuple[Address, ...] = ()
    cc: tuple[Address, ...] = ()
    in_reply_to: tuple[str, ...] = ()
    references: tuple[str, ...] = ()
    date: datetime | None = None
    text: str = ""
    new_text: str = ""
    html: str | None = None
    attachments: tuple[Attachment, ...] = ()
    headers: tuple[tuple[str, str], ...] = ()
    return_path: str | None = None
    bounce: BounceReport | None = None
    defects: tuple[str, ...] = field(default=())

    def header(self, name: str) -> str | None:
        """The first value of a header, by case-insensitive name."""
        wanted = name.lower()
        return next((value for key, value in self.headers if key == wanted), None)
