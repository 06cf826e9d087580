"""The claims walk partial indexes of pending rows and stop at their LIMIT (schema version 6),
so a claim costs the same however long the backlog and however many rows are finished."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from bot.store.db import Database
from bot.store.migrations import LATEST_VERSION, MIGRATIONS, current_version, migrate
from tests.store.conftest import Backend, at

PENDING_INDEXES = {"webhook_inbox": "ix_webhook_inbox_pending_id", "deliveries": "ix_deliveries_pending_due"}


async def test_postgresql_compresses_webhook_bodies_with_lz4(backend: Backend) -> None:
    if backend.name != "postgresql":
        pytest.skip("a PostgreSQL column setting")
    db = await backend.open()
    try:
        async with db.engine.connect() as conn:
            has_lz4 = await conn.scalar(
                sa.text(
                    "SELECT count(*) FROM pg_settings WHERE name = 'default_toast_compression'"
                    " AND 'lz4' = ANY(enumvals)"
                )
            )
            method = await conn.scalar(
                sa.text(
                    "SELECT attcompression FROM pg_attribute"
                    " WHERE attrelid = 'webhook_inbox'::regclass AND attname = 'body'"
                )
            )
        # "char" comes back as bytes: l for lz4, empty for the default (pglz)
        assert method == (b"l" if has_lz4 else b"")
    finally:
        await db.close()


async def _index_names(db: Database, table: str) -> set[str]:
    async with db.engine.connect() as conn:
        return await conn.run_sync(lambda c: {i["name"] for i in sa.inspect(c).get_indexes(table)})


async def test_a_version_5_database_gets_the_pending_indexes(backend: Backend) -> None:
    db = await backend.open(run_migrations=False)
    try:
        await migrate(db.engine, MIGRATIONS[:5])
        # Step 1 of this release already makes them: drop them to stand for an older database.
        async with db.engine.begin() as conn:
            for name in PENDING_INDEXES.values():
                await conn.execute(sa.text(f"DROP INDEX {name}"))
        assert await db.migrate() == LATEST_VERSION - 5
        assert await current_version(db.engine) == LATEST_VERSION
        for table, name in PENDING_INDEXES.items():
            assert name in await _index_names(db, table)
    finally:
        await db.close()


class _Captured:
    """The SELECT ... LIMIT inside a claim's UPDATE, as SQLite receives it."""

    def __init__(self) -> None:
        self.statements: list[tuple[str, Any]] = []

    def __call__(
        self, conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool
    ) -> None:
        if statement.lstrip().upper().startswith("UPDATE"):
            self.statements.append((statement, parameters))


async def _plan(db: Database, statement: str, parameters: Any) -> str:
    async with db.engine.connect() as conn:
        rows = await conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters)
        return "\n".join(str(r[-1]) for r in rows)


@pytest.mark.parametrize(
    ("table", "claim"),
    [
        ("webhook_inbox", lambda db: db.inbox.claim(limit=8, owner="w", now=at(0), lease_seconds=30)),
        ("deliveries", lambda db: db.deliveries.claim_due(limit=8, owner="w", now=at(0), lease_seconds=30)),
    ],
)
async def test_sqlite_claims_walk_the_pending_index(tmp_path: Any, table: str, claim: Any) -> None:
    db = await Database.open(f"sqlite:///{tmp_path / 'bot.db'}")
    captured = _Captured()
    sa.event.listen(db.engine.sync_engine, "before_cursor_execute", captured)
    try:
        await claim(db)
        [(statement, parameters)] = captured.statements
        plan = await _plan(db, statement, parameters)
        # The walk follows an index in the claim's order and stops at the LIMIT: no sort of
        # every pending row first.
        assert "TEMP B-TREE" not in plan, plan
        if table == "webhook_inbox":
            assert f"SCAN candidate USING INDEX {PENDING_INDEXES[table]}" in plan, plan
    finally:
        sa.event.remove(db.engine.sync_engine, "before_cursor_execute", captured)
        await db.close()


async def test_postgresql_inbox_claim_walks_the_pending_index(backend: Backend) -> None:
    if backend.name != "postgresql":
        pytest.skip("PostgreSQL's planner; SQLite is held to its index by the claim itself")
    db = await backend.open()
    try:
        # Many finished rows and a long backlog, with statistics, as a busy database has them.
        async with db.engine.begin() as conn:
            await conn.exec_driver_sql(
                "INSERT INTO webhook_inbox (dedupe_key, route, params, body, received_at, available_at,"
                " status, attempts, order_key)"
                " SELECT 'd' || i, 'firehose', '{}', 'x', now(), now(),"
                " CASE WHEN i <= 25000 THEN 'done' ELSE 'pending' END, 0, 'k|' || (i % 5000)"
                " FROM generate_series(1, 40000) AS i"
            )
            await conn.exec_driver_sql("ANALYZE webhook_inbox")
        captured = _Captured()
        sa.event.listen(db.engine.sync_engine, "before_cursor_execute", captured)
        try:
            claimed = await db.inbox.claim(limit=8, owner="w", now=at(10**9), lease_seconds=30)
        finally:
            sa.event.remove(db.engine.sync_engine, "before_cursor_execute", captured)
        assert [item.id for item in claimed] == list(range(25001, 25009))
        [(statement, parameters)] = captured.statements
        async with db.engine.connect() as conn:
            rows = await conn.exec_driver_sql("EXPLAIN " + statement, parameters)
            plan = "\n".join(str(r[0]) for r in rows)
            await conn.rollback()
        assert f"Index Scan using {PENDING_INDEXES['webhook_inbox']} on webhook_inbox candidate" in plan, plan
        assert "Sort" not in plan, plan
    finally:
        await db.close()
