"""Commands an admin writes at the top of an emailed reply: `#status Closed`, `#note` ...

Only replies that carry a valid reply token of an admin reach this module
(intake checks the token); the commands then run as that admin, one by one,
through the same operations the command line uses.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from core.options import OptionChanges

COMMAND = re.compile(r"^\s*#([a-z]+)(?:[ \t]+(.*?))?\s*$", re.IGNORECASE)
LIST_SPLIT = re.compile(r"[,\s]+")


@dataclass(frozen=True, slots=True)
class MailCommands:
    """Each command with its option change, whether the text is a note, and the text."""

    commands: tuple[tuple[str, OptionChanges], ...]
    as_note: bool
    body: str


def _items(argument: str) -> list[str]:
    return [item for item in LIST_SPLIT.split(argument) if item]


def command_changes(name: str, argument: str) -> OptionChanges | None:
    """The option change one command asks for; None when it is not a command."""
    items = _items(argument)
    value = argument or None
    known: dict[str, OptionChanges | None] = {
        "status": OptionChanges(status=value) if value else None,
        "priority": OptionChanges(priority=value) if value else None,
        "department": OptionChanges(department_email=value) if value else None,
        "close": OptionChanges(status="Closed"),
        "flag": OptionChanges(flag_username=argument.lstrip("@")) if value else None,
        "unflag": OptionChanges(unflag=True),
        "tag": OptionChanges(add_tags=items) if items else None,
        "untag": OptionChanges(remove_tags=items) if items else None,
        "cc": OptionChanges(cc=items),
    }
    return known.get(name)


def read_commands(text: str) -> MailCommands:
    """Take the `#command` lines from the top of the text; the rest is the reply."""
    lines = text.splitlines()
    commands: list[tuple[str, OptionChanges]] = []
    as_note = False
    first = 0
    for line in lines:
        match = COMMAND.match(line) if line.strip() else None
        if line.strip() and match is None:
            break
        if match is not None:
            name, argument = match.group(1).lower(), (match.group(2) or "").strip()
            changes = command_changes(name, argument)
            if name == "note":
                as_note = True
            elif changes is None:
                break
            else:
                commands.append((f"#{name} {argument}".strip(), changes))
        first += 1
    return MailCommands(tuple(commands), as_note, "\n".join(lines[first:]).strip())
