"""The config file: validation errors that name the file and the key, secrets from the
environment or files, relative paths, and how the `ticketd` command finds its config."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from conftest import BASE_CONFIG, TICKETD, write_config

from core.errors import ConfigError
from mailgate.settings import load_settings

GOOD = BASE_CONFIG.format(url="sqlite:///var/ticketd.sqlite3", smtp="")


def _ticketd(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`ticketd` run from `cwd`, with no config unless the arguments or `env` name one."""
    environ = {k: v for k, v in os.environ.items() if k != "TICKETD_CONFIG"}
    return subprocess.run(
        [TICKETD, *args],
        cwd=cwd,
        env=environ | (env or {}),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _edited(old: str, new: str) -> str:
    assert old in GOOD, old
    return GOOD.replace(old, new, 1)


def _write(folder: Path, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "ticketd.toml"
    path.write_text(text, encoding="utf-8")
    return path


def _one_error_line(stderr: str) -> str:
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("ticketd: "), stderr
    return lines[0]


BAD_CONFIGS = {
    "wrong type": (_edited("max_sessions = 8", 'max_sessions = "eight"'), "smtp.max_sessions"),
    "string expected": (_edited('listen = "127.0.0.1:0"', "listen = 2525"), "smtp.listen"),
    "negative integer": (
        _edited("close_inactive_hours = 72", "close_inactive_hours = -1"),
        "tickets.close_inactive_hours",
    ),
    "unknown top-level key": ('colour = "blue"\n' + GOOD, "'colour'"),
    "unknown nested key": (
        _edited("close_inactive_hours = 72", "close_inactive_hour = 72"),
        "tickets.close_inactive_hour",
    ),
    "unknown key in an array of tables": (
        _edited('signature = "-- Alice, Support"', 'signatur = "-- Alice"'),
        "admins[0].signatur",
    ),
    "secret suffix on a plain key": (
        _edited('listen = "127.0.0.1:0"', 'listen_env = "LISTEN"'),
        "smtp.listen_env",
    ),
    "unknown department member": (
        _edited('members = ["alice", "bob"]', 'members = ["alice", "zoe"]'),
        "departments[0].members",
    ),
    "duplicate department address": (
        _edited('email = "sales@example.com"', 'email = "Support@Example.com"'),
        "departments[1].email",
    ),
    "alias used by another department": (
        _edited('aliases = ["orders@example.com"]', 'aliases = ["support@example.com"]'),
        "departments[1].aliases",
    ),
    "missing required key": (_edited('email = "carol@example.com"\n', ""), "admins[2].email"),
    "missing department name": (_edited('name = "Sales"\n', ""), "departments[1].name"),
    "table expected": (
        'smtp = "localhost"\n' + _edited('[smtp]\nlisten = "127.0.0.1:0"\nmax_sessions = 8\n', ""),
        "'smtp': expected a table",
    ),
    "unknown outbound transport": (
        _edited('transport = "maildir"', 'transport = "carrier-pigeon"'),
        "outbound.transport",
    ),
    "bad listen address": (_edited('listen = "127.0.0.1:0"', 'listen = "nowhere"'), "smtp.listen"),
    "bad number mask": (
        _edited("close_inactive_hours = 72", 'close_inactive_hours = 72\nnumber_mask = "%q%n"'),
        "tickets.number_mask",
    ),
    "mask without a random part": (
        _edited("close_inactive_hours = 72", 'close_inactive_hours = 72\nnumber_mask = "T-%y"'),
        "tickets.number_mask",
    ),
    "unset secret variable": (
        _edited('url = "sqlite:///var/ticketd.sqlite3"', 'url_env = "TICKETD_T_SURELY_UNSET"'),
        "database.url_env",
    ),
    "missing secret file": (
        _edited('url = "sqlite:///var/ticketd.sqlite3"', 'url_file = "no-such-secret"'),
        "database.url_file",
    ),
    "secret given twice": (
        _edited(
            'url = "sqlite:///var/ticketd.sqlite3"',
            'url = "sqlite:///var/ticketd.sqlite3"\nurl_env = "PATH"',
        ),
        "database.url",
    ),
    "mailbox for no department": (
        GOOD
        + '[[mailboxes]]\nhost = "imap.test"\nusername = "u"\ndepartment = "nope@example.com"\n',
        "mailboxes[0].department",
    ),
    "bad TOML": (GOOD + "[smtp\n", "not valid TOML"),
}


@pytest.mark.parametrize("case", list(BAD_CONFIGS))
def test_invalid_config_names_the_file_and_the_key(tmp_path: Path, case: str) -> None:
    text, key = BAD_CONFIGS[case]
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: "), message
    assert key in message, message
    assert "\n" not in message


def test_missing_config_file_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "absent.toml"
    with pytest.raises(ConfigError, match=r"absent\.toml: no such config file"):
        load_settings(path)


@pytest.mark.parametrize(
    ("case", "key"),
    [
        ("unknown nested key", "tickets.close_inactive_hour"),
        ("unknown department member", "departments[0].members"),
        ("bad TOML", "line"),
    ],
)
def test_check_config_exits_78_with_one_line(tmp_path: Path, case: str, key: str) -> None:
    path = _write(tmp_path, BAD_CONFIGS[case][0])
    result = _ticketd("check-config", "--config", str(path), cwd=tmp_path)
    assert result.returncode == 78, result
    line = _one_error_line(result.stderr)
    assert str(path) in line and key in line, line
    assert result.stdout == ""


def test_check_config_on_a_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / "ticketd.toml"
    result = _ticketd("--config", str(path), "check-config", cwd=tmp_path)
    assert result.returncode == 78, result
    assert str(path) in _one_error_line(result.stderr)


def test_pipe_with_a_bad_config_exits_78(tmp_path: Path) -> None:
    path = _write(tmp_path, BAD_CONFIGS["wrong type"][0])
    result = _ticketd("--config", str(path), "pipe", cwd=tmp_path)
    assert result.returncode == 78, result
    assert "smtp.max_sessions" in _one_error_line(result.stderr)


def test_check_config_passes_and_says_what_it_checked(tmp_path: Path, database_url: str) -> None:
    config = write_config(tmp_path / "etc", database_url)
    result = _ticketd("check-config", "--config", str(config), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert f"config {config} parsed and validated" in out
    assert "2 department(s)" in out and "3 admin(s)" in out
    assert "smtp.listen 127.0.0.1:0" in out
    assert "data_dir" in out and "database" in out
    assert all(line.startswith("ok: ") for line in out.splitlines()), out
    # Checking is not setting up: nothing is created next to the config.
    assert not (tmp_path / "etc" / "var").exists()


def test_secrets_from_environment_and_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secrets = tmp_path / "etc" / "secrets"
    secrets.mkdir(parents=True)
    (secrets / "db.pw").write_text("s3cret\n", encoding="utf-8")
    (secrets / "imap.pw").write_text("imap-pass\n", encoding="utf-8")
    monkeypatch.setenv("TICKETD_T_DB_URL", "postgresql+psycopg://ticketd@db.test/ticketd")
    monkeypatch.setenv("TICKETD_T_TOKEN", "token-from-env")
    text = _edited(
        'url = "sqlite:///var/ticketd.sqlite3"',
        'url_env = "TICKETD_T_DB_URL"\npassword_file = "secrets/db.pw"',
    ) + (
        '[security]\ntoken_secret_env = "TICKETD_T_TOKEN"\n'
        '[[mailboxes]]\nhost = "imap.test"\nusername = "support"\n'
        'department = "orders@example.com"\npassword_file = "secrets/imap.pw"\n'
    )
    settings = load_settings(_write(tmp_path / "etc", text))
    assert settings.database.url == "postgresql+psycopg://ticketd@db.test/ticketd"
    assert settings.database.password == "s3cret"
    assert settings.security.token_secret == "token-from-env"
    assert settings.mailboxes[0].password == "imap-pass"


def test_relative_paths_resolve_against_the_config_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    text = _edited('maildir = "var/outbox"', 'maildir = "spool/out"') + (
        '[security]\ntoken_secret_file = "keys/token.key"\n'
    )
    folder = tmp_path / "etc" / "ticketd"
    settings = load_settings(Path(os.path.relpath(_write(folder, text), elsewhere)))
    assert settings.data_dir == str(folder / "var")
    assert settings.database.url == f"sqlite:///{folder / 'var' / 'ticketd.sqlite3'}"
    assert settings.outbound.maildir == str(folder / "spool" / "out")
    assert settings.security.token_secret_file == str(folder / "keys" / "token.key")


def test_built_in_defaults_resolve_against_the_working_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    settings = load_settings(None)
    assert settings.data_dir == str(tmp_path / "var")
    assert settings.database.url == f"sqlite:///{tmp_path / 'var' / 'ticketd.sqlite3'}"
    assert settings.smtp.listen == "127.0.0.1:2525"
    assert settings.outbound.transport == "maildir"
    assert settings.outbound.maildir == str(tmp_path / "var" / "outbox")
    assert [d.email for d in settings.departments] == ["support@example.com"]


def test_config_flag_after_the_subcommand_and_database_url_from_env(
    tmp_path: Path, database_url: str
) -> None:
    text = _edited('url = "sqlite:///var/ticketd.sqlite3"', 'url_env = "TICKETD_T_DB"')
    config = _write(tmp_path / "etc", text)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    result = _ticketd("init", "--config", str(config), cwd=cwd, env={"TICKETD_T_DB": database_url})
    assert result.returncode == 0, result.stderr
    assert f"ok: data folder {tmp_path / 'etc' / 'var'}" in result.stdout
    assert (tmp_path / "etc" / "var" / "token.key").is_file()
    assert list(cwd.iterdir()) == []


def test_config_flag_before_the_subcommand(tmp_path: Path) -> None:
    config = _write(tmp_path / "etc", GOOD)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    result = _ticketd("--config", str(config), "init", cwd=cwd)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "etc" / "var" / "ticketd.sqlite3").is_file()
    assert list(cwd.iterdir()) == []


def test_ticketd_config_variable_when_no_flag(tmp_path: Path) -> None:
    config = _write(tmp_path / "etc", GOOD)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    result = _ticketd("init", cwd=cwd, env={"TICKETD_CONFIG": str(config)})
    assert result.returncode == 0, result.stderr
    assert f"ok: data folder {tmp_path / 'etc' / 'var'}" in result.stdout
    assert list(cwd.iterdir()) == []


def test_init_without_any_config_uses_var_in_the_working_folder(tmp_path: Path) -> None:
    result = _ticketd("init", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    var = tmp_path / "var"
    assert (var / "ticketd.sqlite3").is_file()
    assert (var / "token.key").is_file()
    assert (var / "token.key").stat().st_mode & 0o077 == 0
    assert (var / "outbox" / "new").is_dir()


def test_check_config_reports_an_unreachable_database_in_one_line(tmp_path: Path) -> None:
    text = _edited(
        'url = "sqlite:///var/ticketd.sqlite3"',
        'url = "postgresql+psycopg://nobody@127.0.0.1:1/ticketd?connect_timeout=5"',
    )
    config = _write(tmp_path, text)
    result = _ticketd("check-config", "--config", str(config), cwd=tmp_path)
    assert result.returncode == 78, result
    line = _one_error_line(result.stderr)
    assert "127.0.0.1:1" in line and "unreachable" in line, line
