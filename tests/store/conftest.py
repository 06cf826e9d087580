"""Storage fixtures: every test runs against SQLite (a file in tmp_path) and PostgreSQL.

PostgreSQL comes from TEST_POSTGRES_URL (default postgresql://postgres@127.0.0.1:5432/test). Each test
gets its own schema (search_path), dropped afterwards, so tests never see each other's rows and can
share the database with other test runs. When PostgreSQL is unreachable its tests skip, or fail
under CI=true.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from bot.store.db import Database, normalise_database_url

PG_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")

# A fixed instant: the store never reads the clock, so tests choose the time.
T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    """T0 plus `seconds`."""
    return T0 + timedelta(seconds=seconds)


@dataclass(frozen=True)
class Backend:
    name: str  # "sqlite" | "postgresql"
    url: str
    pg_schema: str | None = None

    async def open(self, *, run_migrations: bool = True) -> Database:
        return await Database.open(self.url, pg_schema=self.pg_schema, run_migrations=run_migrations)


_pg_unreachable: str | None = None
_pg_checked = False


def _asyncpg_dsn() -> str:
    return normalise_database_url(PG_URL).set(drivername="postgresql").render_as_string(hide_password=False)


async def _admin_connection() -> asyncpg.Connection:
    global _pg_checked, _pg_unreachable
    if _pg_checked and _pg_unreachable:
        _skip_or_fail(_pg_unreachable)
    try:
        conn = await asyncpg.connect(_asyncpg_dsn(), timeout=3)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        _pg_checked, _pg_unreachable = True, f"PostgreSQL not reachable at {PG_URL}: {exc!r}"
        _skip_or_fail(_pg_unreachable)
    _pg_checked = True
    return conn


def _skip_or_fail(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(reason + " (required under CI)")
    pytest.skip(reason)


@pytest.fixture(params=["sqlite", "postgresql"])
async def backend(request: pytest.FixtureRequest, tmp_path) -> AsyncIterator[Backend]:
    """An empty database (no tables yet) on each backend."""
    if request.param == "sqlite":
        yield Backend("sqlite", f"sqlite:///{tmp_path / 'data' / 'bot.db'}")
        return
    schema = f"store_test_{uuid.uuid4().hex[:16]}"
    admin = await _admin_connection()
    try:
        await admin.execute(f'CREATE SCHEMA "{schema}"')
        yield Backend("postgresql", PG_URL, pg_schema=schema)
    finally:
        await admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await admin.close()


@pytest.fixture
async def db(backend: Backend) -> AsyncIterator[Database]:
    """A migrated database on each backend."""
    database = await backend.open()
    try:
        yield database
    finally:
        await database.close()
