"""The schema: migrations build an empty database on SQLite and PostgreSQL exactly as
the models describe it, `ticketd init` is idempotent, SQLite runs durable."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import run_cli
from sqlalchemy import Engine, func, inspect, select, text
from sqlalchemy.exc import IntegrityError

from storage import tables
from storage.engine import make_engine
from storage.schema import differences, upgrade


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'empty.sqlite3'}"
    else:
        url = request.getfixturevalue("postgres_url")
    engine = make_engine(url)
    yield engine
    engine.dispose()


def test_migrations_build_what_the_models_describe(empty_engine: Engine) -> None:
    assert inspect(empty_engine).get_table_names() == []
    upgrade(empty_engine)
    names = set(inspect(empty_engine).get_table_names())
    assert set(tables.metadata.tables) <= names
    assert "alembic_version" in names
    assert differences(empty_engine) == []
    upgrade(empty_engine)  # at head already: nothing to do, nothing fails
    assert differences(empty_engine) == []


def _counts(app: Any) -> dict[str, int]:
    with app.engine.connect() as connection:
        return {
            name: int(connection.execute(select(func.count()).select_from(table)).scalar_one())
            for name, table in (
                ("admins", tables.admins),
                ("departments", tables.departments),
                ("members", tables.department_members),
            )
        } | {
            "versions": len(list(connection.execute(text("SELECT * FROM alembic_version")))),
        }


def test_init_twice_is_idempotent(app: Any, config_path: Path) -> None:
    key = Path(app.settings.security.token_secret_file)
    secret = key.read_bytes()
    before = _counts(app)
    assert before == {"admins": 3, "departments": 2, "members": 3, "versions": 1}
    result = run_cli(config_path, "init")  # the second time: `app` ran the first
    assert result.returncode == 0, result.stderr
    assert "token secret" not in result.stdout  # kept, not regenerated
    assert "database schema at" in result.stdout
    assert key.read_bytes() == secret
    assert _counts(app) == before
    assert differences(app.engine) == []


def test_sqlite_connections_are_durable(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'd.sqlite3'}", busy_timeout_ms=1234)
    try:
        with engine.connect() as connection:
            pragma = {
                name: connection.exec_driver_sql(f"PRAGMA {name}").scalar()
                for name in ("journal_mode", "synchronous", "foreign_keys", "busy_timeout")
            }
        assert pragma == {
            "journal_mode": "wal",
            "synchronous": 2,
            "foreign_keys": 1,
            "busy_timeout": 1234,
        }
        upgrade(engine)
        with pytest.raises(IntegrityError), engine.begin() as connection:
            connection.execute(
                tables.department_members.insert().values(department_id=98, admin_id=99)
            )
    finally:
        engine.dispose()
