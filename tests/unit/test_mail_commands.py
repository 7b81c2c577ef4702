"""Reading `#commands` from the top of an admin's emailed reply."""

from __future__ import annotations

from core.mail_commands import read_commands
from core.options import OptionChanges


def test_commands_then_reply_text() -> None:
    parsed = read_commands("#status On Hold\n#priority high\n\nWe are on it.\n\n> old")
    assert [label for label, _ in parsed.commands] == ["#status On Hold", "#priority high"]
    assert parsed.commands[0][1] == OptionChanges(status="On Hold")
    assert parsed.body == "We are on it.\n\n> old"
    assert not parsed.as_note


def test_note_flag_tags_and_cc() -> None:
    parsed = read_commands("#note\n#flag @bob\n#tag vip, outage\n#cc a@x.test b@x.test\nInternal.")
    assert parsed.as_note
    changes = [c for _, c in parsed.commands]
    assert changes == [
        OptionChanges(flag_username="bob"),
        OptionChanges(add_tags=["vip", "outage"]),
        OptionChanges(cc=["a@x.test", "b@x.test"]),
    ]
    assert parsed.body == "Internal."


def test_text_without_commands_is_all_reply() -> None:
    parsed = read_commands("Hello #status Closed is not a command here")
    assert parsed.commands == ()
    assert parsed.body.startswith("Hello")


def test_unknown_command_ends_the_command_block() -> None:
    parsed = read_commands("#close\n#hashtag day\nText")
    assert [label for label, _ in parsed.commands] == ["#close"]
    assert parsed.body == "#hashtag day\nText"


def test_command_without_its_value_is_text() -> None:
    parsed = read_commands("#status\nText")
    assert parsed.commands == ()
    assert parsed.body == "#status\nText"
