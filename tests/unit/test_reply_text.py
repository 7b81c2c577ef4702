"""The new part of a reply: quoted history and signatures cut, in the common client styles."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mailgate.parse import MessageLimits, parse_message, reply_text

CORPUS = Path(
    os.environ.get("TICKETD_CORPUS")
    or Path(__file__).resolve().parents[2].parent / "shared" / "corpus"
)

GMAIL = """Thanks, that fixed it.

On Mon, Jan 6, 2025 at 10:02 AM Support Team <support@example.com> wrote:
> Hello Anna,
> please restart the printer.
"""
GMAIL_WRAPPED = """Sounds good.

On Mon, Jan 6, 2025 at 10:02 AM Support Team <
support@example.com> wrote:

> Hello
"""
OUTLOOK = """I still see the error.

________________________________
From: Support <support@example.com>
Sent: Monday, January 6, 2025 10:02 AM
To: Bob <bob@example.org>
Subject: RE: [#123] Printer

Hello Bob,
"""
OUTLOOK_OLD = """Still broken.

-----Original Message-----
From: Support [mailto:support@example.com]
Sent: Monday, January 06, 2025 10:02 AM
Subject: Printer
"""
OUTLOOK_DE = """Danke, jetzt geht es.

Von: Support <support@example.com>
Gesendet: Montag, 6. Januar 2025 10:02
An: Bob
Betreff: Drucker
"""
APPLE = """Works now.

Sent from my iPhone

> On 6 Jan 2025, at 10:02, Support <support@example.com> wrote:
>
> Hello
"""
THUNDERBIRD = """Here is the log.

--\x20
Carl Example
ACME Ltd.

On 06/01/2025 10:02, Support wrote:
> Please send the log.
"""
THUNDERBIRD_FR = """Voici le journal.

Le 06/01/2025 à 10:02, Support a écrit :
> Bonjour
"""
BOTTOM_POST = """On 06/01/2025 10:02, Support wrote:
> Did the restart help?

Yes, it did.
"""


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (GMAIL, "Thanks, that fixed it."),
        (GMAIL_WRAPPED, "Sounds good."),
        (OUTLOOK, "I still see the error."),
        (OUTLOOK_OLD, "Still broken."),
        (OUTLOOK_DE, "Danke, jetzt geht es."),
        (APPLE, "Works now."),
        (THUNDERBIRD, "Here is the log."),
        (THUNDERBIRD_FR, "Voici le journal."),
        (BOTTOM_POST, "Yes, it did."),
    ],
    ids=[
        "gmail",
        "gmail-wrapped",
        "outlook",
        "outlook-old",
        "outlook-de",
        "apple",
        "thunderbird",
        "thunderbird-fr",
        "bottom-post",
    ],
)
def test_reply_styles(text: str, expected: str) -> None:
    assert reply_text(text) == expected


def test_plain_message_is_kept_whole() -> None:
    text = "Hello,\n\nthe printer on floor 2 is broken.\n\nThanks,\nDora"
    assert reply_text(text) == text


def test_inline_answers_keep_the_whole_text() -> None:
    text = "> Which printer?\nThe second one.\n> Which model?\nHP 4000"
    assert reply_text(text) == text


def test_only_quote_falls_back_to_full_text() -> None:
    assert reply_text("> just a quote\n> nothing else") == "> just a quote\n> nothing else"


def test_empty_text() -> None:
    assert reply_text("  \n") == ""


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("replies/talon-apple_mail_2.eml", "Hello"),
        ("replies/talon-aol.eml", "Hello"),
        ("replies/talon-yahoo.eml", "Hello"),
        ("replies/talon-comcast.eml", "Hello"),
        ("replies/talon-sparrow.eml", "Hello"),
        ("replies/notmuch-cur-52_2.eml", "Thank you Allan"),
        ("replies/mikelmail-plain_emails-raw_email_reply.eml", "Message body"),
    ],
)
def test_corpus_replies(name: str, expected: str) -> None:
    path = CORPUS / name
    if not path.is_file():
        pytest.skip(f"corpus file {path} not present")
    assert parse_message(path.read_bytes(), MessageLimits()).new_text == expected


def test_a_bottom_post_under_a_quote_holding_an_earlier_attribution() -> None:
    text = (
        "Richard Jones wrote:\n"
        "> On Tue, Jul 24, 2012 at 03:26:24PM -0400, Tom wrote:\n"
        "> > I wish we could build these.\n"
        "\n"
        "The cross compilers are already there.\n"
    )
    assert reply_text(text) == "The cross compilers are already there."
