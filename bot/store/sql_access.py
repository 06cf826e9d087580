"""The engine as the SQL repositories use it, and the query pieces several of them share.

Concurrency model of the repositories (`bot.store.inbox`, `.deliveries`, `.subscriptions`,
`.threads`, `.kv`), SQLAlchemy Core, async, on SQLite and PostgreSQL:
- Claims are one `UPDATE ... WHERE id IN (SELECT ... LIMIT n) RETURNING ...` statement. On PostgreSQL
  the inner select takes `FOR UPDATE SKIP LOCKED`, so replicas claiming at once skip each other's
  rows; SQLite has one writer at a time, and write transactions start with `BEGIN IMMEDIATE`
  (see `bot.store.db`), so the statement cannot interleave with another claim.
- A lease (`lease_owner`, `lease_until`) marks a claimed row. Every later change of the row checks
  `lease_owner`, so a worker whose lease expired and was taken over changes nothing.
- Inserts that may race (dedupe keys, thread roots, one-time values) use INSERT ... ON CONFLICT.
- On SQLite the write transactions of a process queue on one asyncio lock, and checkpoints of the
  write-ahead log run in the background (see `SqliteWal`).
- Batch operations (`enqueue_many`, `complete_many`, `mark_delivered_many`) do a batch in one
  transaction, with statements whose shape does not depend on the batch size.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.selectable import Alias
from sqlalchemy.sql.visitors import InternalTraversal

log = logging.getLogger(__name__)

# Execution option marking a connection that will write: on SQLite its transaction starts with
# BEGIN IMMEDIATE (takes the write lock up front, waiting busy_timeout instead of failing later).
WRITE_OPTION = "store_write"

# SQLite page size (the default), for estimating how much a write adds to the write-ahead log.
PAGE = 4096
# What a write transaction other than a webhook insert adds to the log, roughly (a few pages).
_TRANSACTION_BYTES = 3 * PAGE
# Log growth between two background checkpoints: a quarter of the 1,000 pages at which SQLite
# would checkpoint on commit if left to itself.
_CHECKPOINT_BYTES = 250 * PAGE
# Past this many frames in the log, a checkpoint waits for the writers, so the log starts over.
_RESTART_FRAMES = 16_384


class SqliteWal:
    """The write lock and the checkpoints of one SQLite database, for one event loop.

    Lock: SQLite has one writer at a time. Without the lock, a writer finding the database
    locked sleeps in SQLite's busy handler (1, 2, 5, 10... ms) however soon it frees up; with it,
    the writers of this process queue in order and start the moment the previous one commits
    (other processes still meet the busy timeout). A write transaction must not wait for another
    one of the same database (none does; SQLite would time out on that as well).

    Checkpoints: left to itself, SQLite checkpoints when a commit finds the log past 1,000 pages,
    and that commit waits for the copy and an fsync (about 10 ms here, with every webhook queued
    behind it). `bot.store.db` turns that off; instead a checkpoint runs in the background after
    every `_CHECKPOINT_BYTES` written, on a connection of its own and without the lock (PASSIVE:
    neither waits for nor blocks readers and writers). Under a steady stream of writes the log
    then never gets back to its start, so once it passes `_RESTART_FRAMES` a checkpoint takes
    the lock and restarts it.
    """

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self._unchecked = 0
        self._task: asyncio.Task[None] | None = None

    def written(self, engine: AsyncEngine, size: int) -> None:
        """Note `size` bytes written to the log; start a checkpoint when enough accumulated."""
        self._unchecked += size
        if self._unchecked < _CHECKPOINT_BYTES or (self._task is not None and not self._task.done()):
            return
        self._unchecked = 0
        self._task = asyncio.create_task(self._checkpoint(engine), name="sqlite-checkpoint")

    async def settle(self) -> None:
        if self._task is not None:
            await self._task

    async def _checkpoint(self, engine: AsyncEngine) -> None:
        try:
            _busy, frames, _copied = await self._run(engine, "PASSIVE")
            if frames >= _RESTART_FRAMES:
                async with self.lock:
                    await self._run(engine, "RESTART")
        except Exception as e:  # the log only grows until the next one; nothing is lost
            log.warning("SQLite checkpoint failed: %s", e)

    @staticmethod
    async def _run(engine: AsyncEngine, mode: str) -> tuple[int, int, int]:
        async with engine.connect() as conn:
            raw = await conn.get_raw_connection()
            driver = raw.driver_connection
            assert driver is not None  # a checked-out connection always has one
            rows = list(await driver.execute_fetchall(f"PRAGMA wal_checkpoint({mode})"))
        busy, frames, copied = rows[0] if rows else (0, 0, 0)
        return int(busy), int(frames), int(copied)


# Per engine and event loop; see SqlAccess.sqlite_wal.
_SQLITE_WALS: weakref.WeakKeyDictionary[Any, weakref.WeakKeyDictionary[Any, SqliteWal]] = (
    weakref.WeakKeyDictionary()
)


class SqlAccess:
    """The engine plus what every repository needs: read/write connections and dialect-specific insert."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        self._writer = engine.execution_options(**{WRITE_OPTION: True})

    def read(self) -> AsyncConnection:
        """A connection for reads (async context manager)."""
        return self.engine.connect()

    def write(self) -> AbstractAsyncContextManager[AsyncConnection]:
        """A write transaction, committed on exit (async context manager)."""
        if self.dialect == "sqlite":
            return self._sqlite_write()
        return self._writer.begin()

    @contextlib.asynccontextmanager
    async def _sqlite_write(self) -> AsyncIterator[AsyncConnection]:
        wal = self.sqlite_wal()
        async with wal.lock, self._writer.begin() as conn:
            yield conn
        wal.written(self.engine, _TRANSACTION_BYTES)

    def sqlite_wal(self) -> SqliteWal:
        """The write lock and checkpoints of this SQLite database, shared by every SqlAccess of
        the engine in this event loop (tests run each in a loop of its own)."""
        loop = asyncio.get_running_loop()
        per_loop = _SQLITE_WALS.setdefault(self.engine.sync_engine, weakref.WeakKeyDictionary())
        wal = per_loop.get(loop)
        if wal is None:
            wal = per_loop[loop] = SqliteWal()
        return wal

    async def settle(self) -> None:
        """Wait for background database work (a SQLite checkpoint) to finish, before disposal."""
        if self.dialect == "sqlite":
            per_loop = _SQLITE_WALS.get(self.engine.sync_engine)
            wal = per_loop.get(asyncio.get_running_loop()) if per_loop is not None else None
            if wal is not None:
                await wal.settle()

    def insert(self, table: sa.Table) -> Any:
        """INSERT supporting on_conflict_do_nothing / on_conflict_do_update on the current dialect."""
        if self.dialect == "postgresql":
            return postgresql.insert(table)
        if self.dialect == "sqlite":
            return sqlite.insert(table)
        raise NotImplementedError(f"unsupported database dialect: {self.dialect}")


# First key of the PostgreSQL advisory locks the store takes (fits an int4): "JCMG".
ADVISORY_LOCK_NAMESPACE = 0x4A434D47


async def serialise_transaction(conn: AsyncConnection, name: str) -> None:
    """Make write transactions naming `name` run one at a time across replicas, until this one
    ends: a transaction-scoped advisory lock on PostgreSQL (keyed by the schema too, so separate
    schemas do not wait for each other); on SQLite every write transaction is alone already."""
    if conn.dialect.name == "postgresql":
        await conn.execute(
            sa.text("SELECT pg_advisory_xact_lock(:ns, hashtext(:name || coalesce(current_schema(), '')))"),
            {"ns": ADVISORY_LOCK_NAMESPACE, "name": name},
        )


def lease_free(table: Any, now: datetime) -> sa.ColumnElement[bool]:
    return sa.or_(table.c.lease_until.is_(None), table.c.lease_until <= now)


def ready_at(table: Any, since: sa.ColumnElement[datetime]) -> sa.ColumnElement[datetime]:
    """When a pending row becomes claimable: its due time, or its lease's end if later."""
    return sa.case(
        (sa.and_(table.c.lease_until.is_not(None), table.c.lease_until > since), table.c.lease_until),
        else_=since,
    )


def picked(column: sa.ColumnElement[int], ids: sa.Select[Any], dialect: str) -> sa.ColumnElement[bool]:
    """`column IN (ids)` for a claim's UPDATE. On PostgreSQL as `= ANY(ARRAY(ids))`: the ids are
    then picked first and the rows found by their key, where `IN` may be planned as a hash join
    over a scan of the whole table (finished rows included)."""
    if dialect == "postgresql":
        return column == sa.any_(sa.func.array(ids.scalar_subquery()))
    return column.in_(ids)


class IndexedAlias(Alias):
    """An alias of a table that SQLite must read through one index (`INDEXED BY`); other
    databases see a plain alias. See `indexed_alias`."""

    __visit_name__ = "alias"
    inherit_cache = True
    # The index is part of the statement's cache key: two claims naming different indexes compile apart.
    _traverse_internals = [  # noqa: RUF012 (declared so by SQLAlchemy)
        *Alias._traverse_internals,
        ("index_name", InternalTraversal.dp_string),
    ]
    index_name: str


def indexed_alias(table: sa.Table, name: str, index: str) -> IndexedAlias:
    """`table AS name`, read on SQLite through `index` only. For claims whose planner choice must
    not depend on statistics: without the hint SQLite prefers an index matching more terms of
    the WHERE and then sorts every row it matched for the ORDER BY ... LIMIT."""
    alias = IndexedAlias._construct(table, name=name)
    alias.index_name = index
    return alias


@compiles(IndexedAlias, "sqlite")
def _sqlite_indexed_by(element: IndexedAlias, compiler: Any, **kw: Any) -> str:
    text: str = compiler.visit_alias(element, **kw)
    return f"{text} INDEXED BY {element.index_name}" if kw.get("asfrom") else text


def status_counts(rows: Sequence[Any], statuses: Sequence[str]) -> dict[str, int]:
    counts = dict.fromkeys(statuses, 0)
    for row in rows:
        counts[row[0]] = int(row[1])
    return counts


__all__ = [
    "ADVISORY_LOCK_NAMESPACE",
    "PAGE",
    "WRITE_OPTION",
    "IndexedAlias",
    "SqlAccess",
    "SqliteWal",
    "indexed_alias",
    "lease_free",
    "picked",
    "ready_at",
    "serialise_transaction",
    "status_counts",
]
