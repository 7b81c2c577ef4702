"""Settings: the TOML config read once, validated, and handed on as frozen objects.

Every key is declared by a dataclass field; unknown keys and wrong types are
errors naming the file, the key and what was expected. Secrets may come from
`KEY_env` (an environment variable's name) or `KEY_file` (a file) instead.
"""

from __future__ import annotations

import os
import tomllib
import types
import typing
from dataclasses import MISSING, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from core.errors import ConfigError
from core.numbers import validate_mask
from core.policy import DEFAULT_EXTENSIONS, DEFAULT_STATUSES, EscalationRule, Status

SECRET_KEYS = frozenset({"password", "token_secret", "smtp_password", "url"})


@dataclass(frozen=True, slots=True)
class DatabaseSettings:
    url: str = "sqlite:///var/ticketd.sqlite3"
    password: str = ""
    busy_timeout_ms: int = 10000


@dataclass(frozen=True, slots=True)
class SmtpSettings:
    listen: str = "127.0.0.1:2525"
    enabled: bool = True
    max_message_bytes: int = 26214400
    max_sessions: int = 100
    spool: bool = False
    spool_max_messages: int = 10000
    tls_cert: str = ""
    tls_key: str = ""

    @property
    def host_port(self) -> tuple[str, int]:
        host, _, port = self.listen.rpartition(":")
        return host.strip("[]"), int(port)


@dataclass(frozen=True, slots=True)
class OutboundSettings:
    transport: str = "maildir"
    maildir: str = "var/outbox"
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 25
    smtp_starttls: bool = False
    smtp_username: str = ""
    smtp_password: str = ""
    from_name: str = "Support"
    message_id_domain: str = ""
    max_automatic_per_day: int = 50
    retry_limit: int = 8
    templates_dir: str = ""
    verp: bool = True
    acknowledgement: bool = True
    bounce_suppress_after: int = 3
    bounce_window_days: int = 7
    suppress_days: int = 30
    retry_base_seconds: int = 60
    claim_seconds: int = 300
    batch_size: int = 50
    poll_seconds: int = 2
    smtp_timeout_seconds: int = 30


@dataclass(frozen=True, slots=True)
class TicketSettings:
    close_inactive_hours: int = 72
    allowed_attachment_extensions: tuple[str, ...] = DEFAULT_EXTENSIONS
    number_mask: str = "%n%n%n%n%n%n"
    statuses: tuple[Status, ...] = DEFAULT_STATUSES
    rate_limit_count: int = 10
    rate_limit_minutes: int = 5
    acknowledgement_window_minutes: int = 60


@dataclass(frozen=True, slots=True)
class DepartmentSettings:
    name: str
    email: str
    members: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()
    clients_only: bool = False
    reopen_on_reply: bool = True
    feedback_requests: bool = True
    auto_acknowledge: bool = True
    custom_fields: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class AdminSettings:
    username: str
    name: str
    email: str
    signature: str = ""


@dataclass(frozen=True, slots=True)
class SecuritySettings:
    token_secret_file: str = "var/token.key"  # noqa: S105 - a path, not a secret
    token_secret: str = ""


@dataclass(frozen=True, slots=True)
class MailboxSettings:
    host: str
    username: str
    department: str
    port: int = 993
    tls: bool = True
    starttls: bool = False
    verify_certificate: bool = True
    password: str = ""
    folder: str = "INBOX"
    move_to: str = ""
    poll_interval_seconds: int = 60
    auth: str = "login"
    oauth_token_file: str = ""
    oauth_token_command: str = ""


@dataclass(frozen=True, slots=True)
class Settings:
    """The whole configuration; paths already resolved to absolute ones."""

    data_dir: str = "var"
    log_level: str = "INFO"
    database: DatabaseSettings = field(default_factory=DatabaseSettings)
    smtp: SmtpSettings = field(default_factory=SmtpSettings)
    outbound: OutboundSettings = field(default_factory=OutboundSettings)
    tickets: TicketSettings = field(default_factory=TicketSettings)
    security: SecuritySettings = field(default_factory=SecuritySettings)
    departments: tuple[DepartmentSettings, ...] = ()
    admins: tuple[AdminSettings, ...] = ()
    mailboxes: tuple[MailboxSettings, ...] = ()
    escalations: tuple[EscalationRule, ...] = ()
    source: str = "built-in defaults"

    def department(self, email: str) -> DepartmentSettings | None:
        """The department that receives mail at `email` (its address or an alias)."""
        wanted = email.lower()
        for dept in self.departments:
            if wanted == dept.email.lower() or wanted in (a.lower() for a in dept.aliases):
                return dept
        return None

    def admin(self, username: str) -> AdminSettings | None:
        return next((a for a in self.admins if a.username == username), None)


DEFAULT_DEPARTMENT = DepartmentSettings(
    name="Support", email="support@example.com", members=("alice",)
)
DEFAULT_ADMIN = AdminSettings(username="alice", name="Alice Admin", email="alice@example.com")


def locate_config(explicit: str | None) -> Path | None:
    """The config file to read: the flag, `$TICKETD_CONFIG`, `config/ticketd.toml`, or none."""
    if explicit:
        return Path(explicit)
    env = os.environ.get("TICKETD_CONFIG")
    if env:
        return Path(env)
    default = Path("config/ticketd.toml")
    return default if default.exists() else None


def load_settings(path: Path | None) -> Settings:
    """Read, validate and resolve the config; built-in defaults when `path` is None."""
    if path is None:
        data: dict[str, Any] = {}
        base = Path.cwd()
        source = "built-in defaults"
    else:
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as err:
            raise ConfigError(f"{path}: no such config file") from err
        except (OSError, UnicodeDecodeError) as err:
            raise ConfigError(f"{path}: cannot read: {err}") from err
        except tomllib.TOMLDecodeError as err:
            raise ConfigError(f"{path}: not valid TOML: {err}") from err
        base = path.resolve().parent
        source = str(path)
    loader = _Loader(source, base)
    settings = loader.build(Settings, data, "")
    if path is None:
        settings = replace(settings, departments=(DEFAULT_DEPARTMENT,), admins=(DEFAULT_ADMIN,))
    settings = replace(settings, source=source)
    _check_references(settings)
    return _resolve_paths(settings, base)


class _Loader:
    """Builds dataclasses from TOML tables, naming the file and key in every error."""

    def __init__(self, source: str, base: Path) -> None:
        self.source = source
        self.base = base

    def fail(self, key: str, expected: str) -> ConfigError:
        return ConfigError(f"{self.source}: key '{key}': expected {expected}")

    def build(self, cls: type[Any], table: object, prefix: str) -> Any:
        if not isinstance(table, dict):
            return self._raise_table(prefix)
        known = {f.name: f for f in fields(cls) if f.name != "source"}
        values: dict[str, Any] = {}
        hints = typing.get_type_hints(cls)
        for key, raw in table.items():
            name = f"{prefix}{key}"
            secret_key, _, kind = key.rpartition("_")
            target = key if key in known or kind not in ("env", "file") else secret_key
            if target in values:
                raise self.fail(name, f"only one of {target}, {target}_env and {target}_file")
            if key in known:
                values[key] = self.convert(hints[key], raw, name)
            elif kind in ("env", "file") and secret_key in known and secret_key in SECRET_KEYS:
                values[secret_key] = self._secret(name, kind, raw)
            else:
                raise ConfigError(f"{self.source}: unknown key '{name}'")
        for f in known.values():
            if f.name not in values and f.default is MISSING and f.default_factory is MISSING:
                raise ConfigError(f"{self.source}: key '{prefix}{f.name}' is required")
        return cls(**values)

    def _raise_table(self, prefix: str) -> Any:
        raise self.fail(prefix.rstrip(".") or "(top level)", "a table")

    def _secret(self, name: str, kind: str, raw: object) -> str:
        if not isinstance(raw, str) or not raw:
            raise self.fail(name, "a non-empty string")
        if kind == "env":
            value = os.environ.get(raw)
            if value is None:
                raise ConfigError(f"{self.source}: key '{name}': environment variable {raw} unset")
            return value
        try:
            return (self.base / raw).read_text(encoding="utf-8").strip()
        except OSError as err:
            raise ConfigError(f"{self.source}: key '{name}': cannot read {raw}: {err}") from err

    def convert(self, hint: Any, raw: object, name: str) -> Any:
        origin = typing.get_origin(hint)
        if origin is tuple:
            item = typing.get_args(hint)[0]
            if not isinstance(raw, list):
                raise self.fail(name, "a list")
            return tuple(self.convert(item, v, f"{name}[{i}]") for i, v in enumerate(raw))
        if origin in (typing.Union, types.UnionType):
            hint = next(a for a in typing.get_args(hint) if a is not type(None))
        if hint is bool:
            if not isinstance(raw, bool):
                raise self.fail(name, "true or false")
            return raw
        if hint is int:
            if isinstance(raw, bool) or not isinstance(raw, int) or raw < 0:
                raise self.fail(name, "a non-negative integer")
            return raw
        if hint is str:
            if not isinstance(raw, str):
                raise self.fail(name, "a string")
            return raw
        return self.build(hint, raw, f"{name}.")


def _check_references(settings: Settings) -> None:
    source = settings.source
    usernames = [a.username for a in settings.admins]
    if len(set(usernames)) != len(usernames):
        raise ConfigError(f"{source}: key 'admins': usernames must be unique")
    seen: set[str] = set()
    for i, dept in enumerate(settings.departments):
        for j, address in enumerate((dept.email, *dept.aliases)):
            key = f"departments[{i}].{'aliases' if j else 'email'}"
            if "@" not in address:
                raise ConfigError(f"{source}: key '{key}': expected an address")
            if address.lower() in seen:
                raise ConfigError(f"{source}: key '{key}': {address} is used twice")
            seen.add(address.lower())
        for member in dept.members:
            if member not in usernames:
                raise ConfigError(
                    f"{source}: key 'departments[{i}].members': {member!r} is not a known admin"
                )
    for i, mailbox in enumerate(settings.mailboxes):
        if mailbox.department.lower() not in seen:
            raise ConfigError(
                f"{source}: key 'mailboxes[{i}].department': {mailbox.department} is not a "
                "department address"
            )
    try:
        validate_mask(settings.tickets.number_mask)
    except ValueError as err:
        raise ConfigError(f"{source}: key 'tickets.number_mask': {err}") from err
    if settings.outbound.transport not in ("maildir", "smtp"):
        raise ConfigError(f"{source}: key 'outbound.transport': expected 'maildir' or 'smtp'")
    try:
        settings.smtp.host_port  # noqa: B018
    except ValueError as err:
        raise ConfigError(f"{source}: key 'smtp.listen': expected HOST:PORT") from err
    if not settings.tickets.statuses or "Closed" not in {s.name for s in settings.tickets.statuses}:
        raise ConfigError(f"{source}: key 'tickets.statuses': must include 'Closed'")


def _resolve_paths(settings: Settings, base: Path) -> Settings:
    def absolute(value: str) -> str:
        return str((base / value).resolve()) if value else value

    url = settings.database.url
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url.startswith("sqlite:////") and ":memory:" not in url:
        url = prefix + absolute(url[len(prefix) :])
    return replace(
        settings,
        data_dir=absolute(settings.data_dir),
        database=replace(settings.database, url=url),
        outbound=replace(settings.outbound, maildir=absolute(settings.outbound.maildir)),
        security=replace(
            settings.security, token_secret_file=absolute(settings.security.token_secret_file)
        ),
        smtp=replace(
            settings.smtp,
            tls_cert=absolute(settings.smtp.tls_cert),
            tls_key=absolute(settings.smtp.tls_key),
        ),
    )
