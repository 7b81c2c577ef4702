"""`ticketd check-config`, IMAP part: can each configured mailbox be reached?

Logs in to every mailbox, selects its folder (and checks that `move_to`
exists), prints one `ok:` line per mailbox and hands back one failure line,
or None, per mailbox. It imports nothing and changes nothing on the server.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from mailgate.imap_client import ImapError, ImapSession, label
from mailgate.settings import MailboxSettings, Settings


def check_mailboxes(settings: Settings) -> list[str | None]:
    """One entry per mailbox: None when it is reachable, else what failed."""
    if not settings.mailboxes:
        return []
    source = settings.source
    config_dir = Path.cwd() if source == "built-in defaults" else Path(source).resolve().parent
    return asyncio.run(_check_all(settings.mailboxes, config_dir))


async def _check_all(mailboxes: tuple[MailboxSettings, ...], config_dir: Path) -> list[str | None]:
    return list(await asyncio.gather(*(_check(m, config_dir) for m in mailboxes)))


async def _check(mailbox: MailboxSettings, config_dir: Path) -> str | None:
    try:
        session = await ImapSession.open(mailbox, config_dir)
    except ImapError as err:
        return str(err)
    try:
        folder = await session.select(mailbox.folder)
        if mailbox.move_to:
            await session.require_folder(mailbox.move_to)
    except ImapError as err:
        return str(err)
    finally:
        await session.close()
    print(
        f"ok: mailbox {label(mailbox)}/{mailbox.folder}: {folder.exists} messages, "
        f"UIDVALIDITY {folder.uidvalidity}"
    )
    return None
