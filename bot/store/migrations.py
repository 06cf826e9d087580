"""Schema migrations: an ordered list of steps, applied at start.

Why not Alembic: the schema is six tables, the bot migrates itself on start (no separate CLI step),
and it must run on SQLite and PostgreSQL from the same code. A list of numbered steps, each a
function of a synchronous connection, covers that in a few lines; `schema_version` records the
steps applied.

Safety:
- All pending steps run in ONE transaction (both databases have transactional DDL), so a failed
  step leaves the schema as it was.
- Replicas starting at once are serialised: on PostgreSQL by a transaction-scoped advisory lock
  (keyed by the current schema, so separate schemas do not wait for each other); on SQLite by the
  write lock taken by BEGIN IMMEDIATE.
- A database migrated by a newer release (version above the latest known here) is refused rather
  than used with an outdated idea of its tables.

Adding a step: append `Migration(n + 1, "...", fn)` where `fn` issues the DDL (e.g.
`conn.execute(sa.text("ALTER TABLE ..."))`) and update `schema.py` to match. Step 1 creates the
tables from `schema.py`; once a step 2 exists, step 1 must keep creating the version-1 tables, so
freeze it then (copy the version-1 table definitions into this module).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.store import schema
from bot.store.sql_access import WRITE_OPTION

# First key of the PostgreSQL advisory lock (fits an int4): "JCMG".
ADVISORY_LOCK_NAMESPACE = 0x4A434D47


class SchemaTooNewError(RuntimeError):
    """The database was migrated by a newer release than this one."""


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    description: str
    apply: Callable[[Connection], None]


def _create_initial_schema(conn: Connection) -> None:
    tables = [
        schema.webhook_inbox,
        schema.deliveries,
        schema.subscriptions,
        schema.issue_threads,
        schema.kv,
    ]
    schema.metadata.create_all(conn, tables=tables, checkfirst=True)


def _create_account_tables(conn: Connection) -> None:
    schema.metadata.create_all(conn, tables=[schema.connections, schema.user_prefs], checkfirst=True)


def _create_gate_tables(conn: Connection) -> None:
    schema.metadata.create_all(
        conn, tables=[schema.gates, schema.gate_links, schema.gate_events], checkfirst=True
    )


def _create_lease_table(conn: Connection) -> None:
    schema.metadata.create_all(conn, tables=[schema.leases], checkfirst=True)


def _add_issue_order_and_replicas(conn: Connection) -> None:
    # Step 1 builds webhook_inbox from schema.py, so a database created by this release has the
    # column and its index already; an older one gets them here.
    inbox = schema.webhook_inbox
    if "order_key" not in {c["name"] for c in sa.inspect(conn).get_columns(inbox.name)}:
        conn.execute(sa.text("ALTER TABLE webhook_inbox ADD COLUMN order_key VARCHAR(1024)"))
    existing = {i["name"] for i in sa.inspect(conn).get_indexes(inbox.name)}
    for index in inbox.indexes:
        if index.name not in existing:
            index.create(conn)
    schema.metadata.create_all(conn, tables=[schema.replicas], checkfirst=True)


def _add_pending_indexes(conn: Connection) -> None:
    # Partial indexes over pending rows for the claims; a database created by this release has
    # them from step 1 (and step 5 may have added the inbox's).
    for table in (schema.webhook_inbox, schema.deliveries):
        existing = {i["name"] for i in sa.inspect(conn).get_indexes(table.name)}
        for index in table.indexes:
            if index.name not in existing:
                index.create(conn)


def _compress_webhook_bodies_with_lz4(conn: Connection) -> None:
    # PostgreSQL compresses a stored webhook body (a few KB) with pglz by default, which costs it
    # more than the rest of the insert; lz4 (PostgreSQL 14 and later, when built with it) takes
    # about a third of that time for the same size. Rows already stored keep theirs.
    if conn.dialect.name != "postgresql":
        return
    if int(conn.execute(sa.text("SELECT current_setting('server_version_num')")).scalar_one()) < 140000:
        return
    try:
        with conn.begin_nested():
            conn.execute(sa.text("ALTER TABLE webhook_inbox ALTER COLUMN body SET COMPRESSION lz4"))
    except sa.exc.DBAPIError:
        pass  # a server built without lz4: pglz stays


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "initial schema", _create_initial_schema),
    Migration(2, "connected Jira accounts and user preferences", _create_account_tables),
    Migration(3, "change gate: gates, links to change requests, gate events", _create_gate_tables),
    Migration(4, "duty leases shared by replicas", _create_lease_table),
    Migration(5, "per-issue order of webhooks, replica heartbeats", _add_issue_order_and_replicas),
    Migration(6, "partial indexes over pending webhooks and deliveries for the claims", _add_pending_indexes),
    Migration(7, "webhook bodies compressed with lz4 on PostgreSQL", _compress_webhook_bodies_with_lz4),
)
LATEST_VERSION = MIGRATIONS[-1].version


def _check_steps(steps: tuple[Migration, ...]) -> None:
    versions = [m.version for m in steps]
    if versions != list(range(1, len(steps) + 1)):
        raise RuntimeError(f"migration versions must be 1..n in order, got {versions}")


async def current_version(engine: AsyncEngine) -> int:
    """The schema version of the database (0 when it was never migrated)."""
    async with engine.connect() as conn:
        exists = await conn.run_sync(lambda c: sa.inspect(c).has_table(schema.schema_version.name))
        if not exists:
            return 0
        return int(await conn.scalar(sa.select(sa.func.max(schema.schema_version.c.version))) or 0)


async def migrate(engine: AsyncEngine, steps: tuple[Migration, ...] = MIGRATIONS) -> int:
    """Apply the missing steps; idempotent and safe to run from several processes at once.

    Returns the number of steps applied.
    """
    _check_steps(steps)
    latest = steps[-1].version
    writer = engine.execution_options(**{WRITE_OPTION: True})
    async with writer.begin() as conn:
        if conn.dialect.name == "postgresql":
            await conn.execute(
                sa.text("SELECT pg_advisory_xact_lock(:ns, hashtext(coalesce(current_schema(), '')))"),
                {"ns": ADVISORY_LOCK_NAMESPACE},
            )
        await conn.run_sync(lambda c: schema.schema_version.create(c, checkfirst=True))
        current = int(await conn.scalar(sa.select(sa.func.max(schema.schema_version.c.version))) or 0)
        if current > latest:
            raise SchemaTooNewError(
                f"the database schema is at version {current} but this release knows only up to {latest}; "
                "run a release at least as new as the one that migrated it"
            )
        applied = 0
        for step in steps:
            if step.version <= current:
                continue
            await conn.run_sync(step.apply)
            # The database's clock: bookkeeping only, nothing compares it with the bot's `now`.
            await conn.execute(
                sa.insert(schema.schema_version).values(
                    version=step.version, applied_at=sa.func.current_timestamp()
                )
            )
            applied += 1
    return applied
