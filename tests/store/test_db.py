"""Engine creation, URL handling, migrations, and datetime storage on both backends."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa

from bot.store import schema, sql_access
from bot.store.db import Database, make_engine, normalise_database_url
from bot.store.interfaces import NewInboxRow
from bot.store.migrations import (
    LATEST_VERSION,
    MIGRATIONS,
    Migration,
    SchemaTooNewError,
    current_version,
    migrate,
)
from tests.store.conftest import T0, Backend, at


@pytest.mark.parametrize(
    ("given", "driver"),
    [
        ("sqlite:///var/bot.db", "sqlite+aiosqlite"),
        ("sqlite+aiosqlite:///var/bot.db", "sqlite+aiosqlite"),
        ("sqlite://", "sqlite+aiosqlite"),
        ("postgresql://u:p@db:5432/bot", "postgresql+asyncpg"),
        ("postgres://u:p@db/bot", "postgresql+asyncpg"),
        ("postgresql+asyncpg://u@db/bot", "postgresql+asyncpg"),
    ],
)
def test_urls_get_the_async_driver(given: str, driver: str) -> None:
    url = normalise_database_url(given)
    assert url.drivername == driver
    assert url.database == sa.engine.make_url(given).database


@pytest.mark.parametrize("given", ["mysql://u@db/bot", "postgresql+psycopg2://u@db/bot", "not a url"])
def test_unsupported_urls_are_refused_with_the_accepted_forms(given: str) -> None:
    with pytest.raises(ValueError, match=r"sqlite:///path/to/bot\.db"):
        normalise_database_url(given)


@pytest.mark.parametrize("how", ["open", "engine-then-migrate"])
async def test_sqlite_database_creates_the_directory_and_sets_pragmas(tmp_path: Path, how: str) -> None:
    path = tmp_path / "nested" / "dir" / "bot.db"
    if how == "open":
        db = await Database.open(f"sqlite:///{path}", run_migrations=False)
    else:
        db = Database(make_engine(f"sqlite:///{path}"))
        await db.migrate()
    try:
        async with db.engine.connect() as conn:
            journal = await conn.scalar(sa.text("PRAGMA journal_mode"))
            busy = await conn.scalar(sa.text("PRAGMA busy_timeout"))
            fks = await conn.scalar(sa.text("PRAGMA foreign_keys"))
            sync = await conn.scalar(sa.text("PRAGMA synchronous"))
        assert path.parent.is_dir()
        assert (journal, busy, fks, sync) == ("wal", 5000, 1, 1)  # synchronous=NORMAL is 1
    finally:
        await db.close()


async def test_concurrent_opens_of_a_new_sqlite_file_all_succeed(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    dbs = await asyncio.gather(*(Database.open(url) for _ in range(4)))
    try:
        assert [await db.ping() for db in dbs] == [True] * 4
    finally:
        for db in dbs:
            await db.close()


async def test_in_memory_sqlite_works_for_development() -> None:
    db = await Database.open("sqlite://")
    try:
        item_id, created = await db.inbox.enqueue(
            dedupe_key="k", route="firehose", instance_id=None, params={}, body=b"{}", now=T0
        )
        assert created
        assert (await db.inbox.get(item_id)) is not None
    finally:
        await db.close()


async def test_migrate_is_idempotent(backend: Backend) -> None:
    db = await backend.open(run_migrations=False)
    try:
        assert await current_version(db.engine) == 0
        assert await db.migrate() == LATEST_VERSION
        assert await db.migrate() == 0
        assert await current_version(db.engine) == LATEST_VERSION
        async with db.engine.connect() as conn:
            versions = (await conn.execute(sa.select(schema.schema_version.c.version))).scalars().all()
        assert versions == list(range(1, LATEST_VERSION + 1))
    finally:
        await db.close()


async def test_concurrent_migrations_apply_each_step_once(backend: Backend) -> None:
    # Two replicas starting at the same time, each with its own engine (and connections).
    first, second = await backend.open(run_migrations=False), await backend.open(run_migrations=False)
    try:
        applied = await asyncio.gather(first.migrate(), second.migrate())
        assert sorted(applied) == [0, LATEST_VERSION]
        async with first.engine.connect() as conn:
            versions = (await conn.execute(sa.select(schema.schema_version.c.version))).scalars().all()
        assert versions == list(range(1, LATEST_VERSION + 1))
    finally:
        await first.close()
        await second.close()


async def test_migrated_tables_match_the_schema_module(db: Database) -> None:
    def reflect(conn: sa.Connection) -> dict[str, set[str]]:
        inspector = sa.inspect(conn)
        return {
            name: {c["name"] for c in inspector.get_columns(name)} for name in inspector.get_table_names()
        }

    async with db.engine.connect() as conn:
        reflected = await conn.run_sync(reflect)
    expected = {t.name: {c.name for c in t.columns} for t in schema.metadata.sorted_tables}
    assert reflected == expected


async def test_a_database_migrated_by_a_newer_release_is_refused(db: Database) -> None:
    def noop(_conn: sa.Connection) -> None:
        return None

    newer = (*MIGRATIONS, Migration(LATEST_VERSION + 1, "from the future", noop))
    assert await migrate(db.engine, newer) == 1
    with pytest.raises(SchemaTooNewError, match=f"version {LATEST_VERSION + 1}"):
        await db.migrate()


async def test_ping(db: Database) -> None:
    assert await db.ping() is True


async def test_ping_reports_an_unreachable_database() -> None:
    # Port 1 on localhost refuses connections at once.
    db = Database(make_engine("postgresql://nobody@127.0.0.1:1/none"))
    try:
        assert await db.ping() is False
    finally:
        await db.close()


async def test_datetimes_come_back_aware_utc_and_naive_ones_are_refused(db: Database) -> None:
    plus_two = timezone(timedelta(hours=2))
    local = datetime(2024, 5, 1, 14, 0, 0, 123456, tzinfo=plus_two)  # the same instant as T0 + 0.123456 s
    await db.kv.put("stamp", {"n": 1}, expires_at=local)
    async with db.engine.connect() as conn:
        stored = await conn.scalar(sa.select(schema.kv.c.expires_at).where(schema.kv.c.key == "stamp"))
    assert stored == at(0.123456)
    assert stored.utcoffset() == timedelta(0)

    with pytest.raises(sa.exc.StatementError, match="naive datetime"):
        await db.kv.put("naive", 1, expires_at=datetime(2024, 5, 1, 12, 0))


async def test_sqlite_checkpoints_run_in_the_background_and_restart_a_long_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = await Database.open(f"sqlite:///{tmp_path / 'bot.db'}")
    runs: list[tuple[str, int]] = []
    original = sql_access.SqliteWal._run

    async def recording(engine: object, mode: str) -> tuple[int, int, int]:
        result = await original(engine, mode)  # type: ignore[arg-type]
        runs.append((mode, result[1]))
        return result

    monkeypatch.setattr(sql_access.SqliteWal, "_run", staticmethod(recording))
    monkeypatch.setattr(sql_access, "_RESTART_FRAMES", 200)
    try:
        async with db.engine.connect() as conn:
            assert await conn.scalar(sa.text("PRAGMA wal_autocheckpoint")) == 0
        body = b'{"pad": "' + b"x" * 20_000 + b'"}'
        for batch in range(8):
            rows = [NewInboxRow(f"k{batch}-{i}", "firehose", None, {}, body) for i in range(16)]
            await db.inbox.enqueue_many(rows, now=T0)
            await db.deliveries.backlog()  # readers meanwhile
        await db._access.settle()
        assert runs and runs[0][0] == "PASSIVE"
        # The log passed the (lowered) restart mark: a checkpoint took the lock and restarted it.
        assert any(mode == "RESTART" for mode, _ in runs)
        assert (await db.inbox.counts())["pending"] == 128
    finally:
        await db.close()


async def test_postgresql_connections_plan_each_statement(db: Database) -> None:
    if db.dialect != "postgresql":
        pytest.skip("SQLite plans every statement anyway")
    async with db.engine.connect() as conn:
        assert await conn.scalar(sa.text("SHOW plan_cache_mode")) == "force_custom_plan"
