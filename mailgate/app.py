"""The one place that wires settings, storage and core together.

`App` owns the engine and blob store, mirrors departments and admins from the
config into the database, and opens units of work for the edges to use.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError, ProgrammingError

from core.errors import ConfigError, TransientError
from core.model import Admin, CustomField, Department, DepartmentMember
from core.policy import Policy
from mailgate.settings import Settings
from storage.blobs import BlobStore
from storage.engine import make_engine
from storage.revision import HEAD_REVISION
from storage.uow import SqlUnitOfWork


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class App:
    """Everything a command needs, built lazily from the settings."""

    settings: Settings

    @cached_property
    def engine(self) -> Engine:
        db = self.settings.database
        return make_engine(db.url, db.busy_timeout_ms, db.password)

    @cached_property
    def blobs(self) -> BlobStore:
        return BlobStore(Path(self.settings.data_dir) / "blobs")

    def uow(self) -> SqlUnitOfWork:
        return SqlUnitOfWork(self.engine, self.blobs)

    @cached_property
    def token_secret(self) -> bytes:
        security = self.settings.security
        if security.token_secret:
            return security.token_secret.encode()
        try:
            return Path(security.token_secret_file).read_bytes().strip()
        except OSError as err:
            raise ConfigError(
                f"cannot read security.token_secret_file {security.token_secret_file}: "
                f"{err.strerror}; run 'ticketd init'"
            ) from err

    @cached_property
    def policy(self) -> Policy:
        t = self.settings.tickets
        domains = {d.email.rpartition("@")[2].lower() for d in self.settings.departments}
        if self.settings.outbound.message_id_domain:
            domains.add(self.settings.outbound.message_id_domain.lower())
        return Policy(
            statuses=t.statuses,
            number_mask=t.number_mask,
            allowed_extensions=tuple(e.lower() for e in t.allowed_attachment_extensions),
            close_inactive_hours=t.close_inactive_hours,
            rate_limit_count=t.rate_limit_count,
            rate_limit_minutes=t.rate_limit_minutes,
            acknowledgement_window_minutes=t.acknowledgement_window_minutes,
            own_domains=frozenset(domains),
            token_secret=self.token_secret,
            department_addresses={
                address.lower(): d.email.lower()
                for d in self.settings.departments
                for address in (d.email, *d.aliases)
            },
            escalations=self.settings.escalations,
        )

    def init(self) -> list[str]:
        """Create folders, the token secret and the schema; mirror the directory."""
        done = []
        folders = [Path(self.settings.data_dir), Path(self.settings.outbound.maildir)]
        if self.engine.dialect.name == "sqlite" and self.engine.url.database:
            folders.append(Path(self.engine.url.database).parent)  # the url may point elsewhere
        for folder in folders:
            folder.mkdir(parents=True, exist_ok=True)
        for sub in ("tmp", "new", "cur"):
            (Path(self.settings.outbound.maildir) / sub).mkdir(exist_ok=True)
        done.append(f"data folder {self.settings.data_dir}")
        secret_file = Path(self.settings.security.token_secret_file)
        if not self.settings.security.token_secret and not secret_file.exists():
            secret_file.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(secret_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_hex(32) + "\n")
            done.append(f"token secret {secret_file}")
        self.upgrade_schema()
        done.append(f"database schema at {self.engine.url.render_as_string()}")
        self.sync_directory()
        done.append("departments and admins mirrored from the config")
        return done

    def ensure_schema(self) -> None:
        """Run `init` unless the schema is at the newest revision and the secret exists."""
        from sqlalchemy import text

        Path(self.settings.data_dir).mkdir(parents=True, exist_ok=True)
        if self.engine.dialect.name == "sqlite" and self.engine.url.database:
            Path(self.engine.url.database).parent.mkdir(parents=True, exist_ok=True)

        secret = self.settings.security
        if secret.token_secret or Path(secret.token_secret_file).exists():
            try:
                with self.engine.connect() as connection:
                    found = connection.execute(text("SELECT version_num FROM alembic_version"))
                    if [row[0] for row in found] == [HEAD_REVISION]:
                        return
            except (OperationalError, ProgrammingError):
                pass
        self.init()

    def upgrade_schema(self) -> None:
        from storage import schema

        try:
            schema.upgrade(self.engine)
        except (OperationalError, ProgrammingError) as err:
            raise TransientError(f"database unavailable: {err.orig}") from err

    def sync_directory(self) -> None:
        """Mirror config departments, admins and memberships into their tables."""
        with self.uow() as uow:
            admins = {a.username: a for a in uow.admins()}
            for conf in self.settings.admins:
                admin = admins.get(conf.username)
                if admin is None:
                    admin = Admin(conf.username, conf.name, conf.email.lower(), conf.signature)
                    uow.add(admin)
                    admins[conf.username] = admin
                admin.name, admin.email, admin.signature = (
                    conf.name,
                    conf.email.lower(),
                    conf.signature,
                )
            departments = {d.email: d for d in uow.departments()}
            for dconf in self.settings.departments:
                dept = departments.get(dconf.email.lower())
                if dept is None:
                    dept = Department(dconf.email.lower(), dconf.name)
                    uow.add(dept)
                dept.name = dconf.name
                dept.clients_only = dconf.clients_only
                dept.reopen_on_reply = dconf.reopen_on_reply
                dept.feedback_requests = dconf.feedback_requests
                dept.auto_acknowledge = dconf.auto_acknowledge
                uow.flush()
                assert dept.id is not None
                uow.delete_where("department_members", department_id=dept.id)
                for username in dconf.members:
                    admin_id = admins[username].id
                    assert admin_id is not None
                    uow.add(DepartmentMember(department_id=dept.id, admin_id=admin_id))
                known = {f.name.lower() for f in uow.custom_fields(dept.id)}
                for name in dconf.custom_fields:
                    if name.lower() not in known:
                        uow.add(CustomField(department_id=dept.id, name=name))
            uow.commit()

    def finish(self, uow: SqlUnitOfWork) -> None:
        """Queue the notifications the transaction's events call for, then commit."""
        from mailgate.notify import queue_notifications

        queue_notifications(self, uow, utcnow())
        uow.commit()

    def reload(self, settings: Settings) -> None:
        """Adopt new settings and re-read templates; the database URL and data folder stay."""
        from mailgate.render import environment

        self.settings = settings
        for cached in ("policy", "token_secret"):
            self.__dict__.pop(cached, None)
        environment.cache_clear()
        self.sync_directory()
