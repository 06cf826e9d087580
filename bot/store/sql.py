"""SQL repositories (SQLAlchemy Core, async) for SQLite and PostgreSQL.

Concurrency model:
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
import functools
import hashlib
import logging
import uuid
import weakref
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from bot.routing.model import Subscription
from bot.store.interfaces import (
    Delivery,
    DeliveryStatus,
    InboxCompletion,
    InboxItem,
    InboxStatus,
    NewDelivery,
    NewInboxRow,
    NewThreadRoot,
    SubscriptionRecord,
    SubscriptionSource,
)
from bot.store.schema import deliveries as delivery_table
from bot.store.schema import issue_threads, kv, subscriptions, webhook_inbox

log = logging.getLogger(__name__)

# Execution option marking a connection that will write: on SQLite its transaction starts with
# BEGIN IMMEDIATE (takes the write lock up front, waiting busy_timeout instead of failing later).
WRITE_OPTION = "store_write"

# SQLite page size (the default), for estimating how much a write adds to the write-ahead log.
_PAGE = 4096
# What a write transaction other than a webhook insert adds to the log, roughly (a few pages).
_TRANSACTION_BYTES = 3 * _PAGE
# Log growth between two background checkpoints: a quarter of the 1,000 pages at which SQLite
# would checkpoint on commit if left to itself.
_CHECKPOINT_BYTES = 250 * _PAGE
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

_FINAL_INBOX_STATUSES = frozenset({InboxStatus.DONE, InboxStatus.IGNORED, InboxStatus.FAILED})


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


def _lease_free(table: Any, now: datetime) -> sa.ColumnElement[bool]:
    return sa.or_(table.c.lease_until.is_(None), table.c.lease_until <= now)


def _ready_at(table: Any, since: sa.ColumnElement[datetime]) -> sa.ColumnElement[datetime]:
    """When a pending row becomes claimable: its due time, or its lease's end if later."""
    return sa.case(
        (sa.and_(table.c.lease_until.is_not(None), table.c.lease_until > since), table.c.lease_until),
        else_=since,
    )


def _status_counts(rows: Sequence[Any], statuses: Sequence[str]) -> dict[str, int]:
    counts = dict.fromkeys(statuses, 0)
    for row in rows:
        counts[row[0]] = int(row[1])
    return counts


# ---------------------------------------------------------------------------------------------- inbox


def _inbox_item(row: Row[Any]) -> InboxItem:
    m = row._mapping
    return InboxItem(
        id=m["id"],
        dedupe_key=m["dedupe_key"],
        route=m["route"],
        instance_id=m["instance_id"],
        params=m["params"] or {},
        body=bytes(m["body"]),
        received_at=m["received_at"],
        status=m["status"],
        attempts=m["attempts"],
        outcome=m["outcome"],
        lease_owner=m["lease_owner"],
        lease_until=m["lease_until"],
        processed_at=m["processed_at"],
    )


_Runs = list[tuple[bool, list[int]]]  # (keyed, row indexes): consecutive rows inserted by one statement
_SQLITE_INBOX_COLUMNS = (
    "dedupe_key",
    "route",
    "instance_id",
    "params",
    "body",
    "received_at",
    "available_at",
    "status",
    "attempts",
)


_SQLITE_MAX_CHUNK = 64


def _sqlite_chunks(indexes: list[int], keyed: bool) -> list[tuple[list[int], int]]:
    """Cut a run of rows into (rows, statement size) pieces whose sizes are powers of two up to
    _SQLITE_MAX_CHUNK: a keyed piece is padded up to its size (repeating a key is harmless), one
    without keys, which cannot be padded, is cut into powers of two."""
    pieces: list[tuple[list[int], int]] = []
    for start in range(0, len(indexes), _SQLITE_MAX_CHUNK):
        chunk = indexes[start : start + _SQLITE_MAX_CHUNK]
        if keyed:
            pieces.append((chunk, 1 << (len(chunk) - 1).bit_length()))
            continue
        while chunk:
            size = 1 << (len(chunk).bit_length() - 1)
            pieces.append((chunk[:size], size))
            chunk = chunk[size:]
    return pieces


@functools.lru_cache(maxsize=32)
def _sqlite_inbox_insert(count: int, keyed: bool) -> str:
    values = ",".join(["(" + ",".join("?" * len(_SQLITE_INBOX_COLUMNS)) + ")"] * count)
    conflict = " ON CONFLICT (dedupe_key) DO NOTHING RETURNING id, dedupe_key" if keyed else " RETURNING id"
    return f"INSERT INTO webhook_inbox ({', '.join(_SQLITE_INBOX_COLUMNS)}) VALUES {values}{conflict}"


def _inbox_row(row: NewInboxRow, now: datetime) -> dict[str, Any]:
    return {
        "dedupe_key": row.dedupe_key,
        "route": row.route,
        "instance_id": row.instance_id,
        "params": dict(row.params),
        "body": row.body,
        "received_at": now,
        "available_at": now,
        "status": InboxStatus.PENDING.value,
        "attempts": 0,
    }


class SqlInboxRepository:
    def __init__(self, access: SqlAccess) -> None:
        self._db = access
        t = webhook_inbox
        self._enqueue_keyed = (
            access.insert(t)
            .on_conflict_do_nothing(index_elements=[t.c.dedupe_key])
            .returning(t.c.id, t.c.dedupe_key)
        )
        # Nothing to conflict with: the ids come back in the order of the rows.
        self._enqueue_unkeyed = sa.insert(t).returning(t.c.id, sort_by_parameter_order=True)
        self._converters: dict[str, Any] | None = None

    async def enqueue(
        self,
        *,
        dedupe_key: str | None,
        route: str,
        instance_id: str | None,
        params: Mapping[str, Any],
        body: bytes,
        now: datetime,
    ) -> tuple[int, bool]:
        row = NewInboxRow(
            dedupe_key=dedupe_key, route=route, instance_id=instance_id, params=params, body=body
        )
        return (await self.enqueue_many([row], now=now))[0]

    async def enqueue_many(self, rows: Sequence[NewInboxRow], *, now: datetime) -> list[tuple[int, bool]]:
        if not rows:
            return []
        # The first row of each dedupe key is the one to store; later ones in the batch repeat it.
        first_of_key: dict[str, int] = {}
        # Rows to insert, in arrival order (ids follow it, and so does processing), cut into runs
        # of keyed rows (inserted skipping known keys) and rows without a key (never conflicting).
        runs: _Runs = []
        for i, row in enumerate(rows):
            key = row.dedupe_key
            if key is not None:
                if key in first_of_key:
                    continue
                first_of_key[key] = i
            keyed = key is not None
            if not runs or runs[-1][0] != keyed:
                runs.append((keyed, []))
            runs[-1][1].append(i)
        insert = self._insert_sqlite if self._db.dialect == "sqlite" else self._insert_sql
        stored, key_ids = await insert(rows, runs, first_of_key, now)
        results: list[tuple[int, bool]] = []
        for i, row in enumerate(rows):
            if i in stored:
                results.append((stored[i], True))
                continue
            assert row.dedupe_key is not None  # a row without a key is always stored
            if row.dedupe_key not in key_ids:
                raise RuntimeError(f"inbox row with dedupe key {row.dedupe_key!r} vanished during enqueue")
            results.append((key_ids[row.dedupe_key], False))
        return results

    async def _insert_sql(
        self, rows: Sequence[NewInboxRow], runs: _Runs, first_of_key: Mapping[str, int], now: datetime
    ) -> tuple[dict[int, int], dict[str, int]]:
        """Insert the runs in one transaction; (row index -> new id, dedupe key -> id)."""
        stored: dict[int, int] = {}
        key_ids: dict[str, int] = {}
        async with self._db.write() as conn:
            for keyed, indexes in runs:
                params = [_inbox_row(rows[i], now) for i in indexes]
                if keyed:
                    for new_id, key in (await conn.execute(self._enqueue_keyed, params)).all():
                        stored[first_of_key[key]] = key_ids[key] = int(new_id)
                else:
                    result = await conn.execute(self._enqueue_unkeyed, params)
                    stored.update(zip(indexes, (int(r[0]) for r in result.all()), strict=True))
            missing = [k for k in first_of_key if k not in key_ids]
            if missing:
                # A conflict means a committed row with that key exists (PostgreSQL waited for it).
                t = webhook_inbox
                found = await conn.execute(
                    sa.select(t.c.id, t.c.dedupe_key).where(t.c.dedupe_key.in_(missing))
                )
                key_ids.update((key, int(existing)) for existing, key in found.all())
        return stored, key_ids

    async def _insert_sqlite(
        self, rows: Sequence[NewInboxRow], runs: _Runs, first_of_key: Mapping[str, int], now: datetime
    ) -> tuple[dict[int, int], dict[str, int]]:
        """`_insert_sql` for SQLite, straight on the driver connection.

        Every statement through SQLAlchemy costs several hand-offs to the driver's thread; here a
        batch of one run (the usual case) is a single autocommitted statement, a single hand-off.
        Values are converted by the columns' own SQLAlchemy types, so rows read back exactly as if
        SQLAlchemy had written them.

        The driver keeps each prepared statement with the values last bound to it (webhook bodies
        here), so statements come in a few sizes only (see `_sqlite_chunks`): one per batch size
        would keep ~30 MB of old bodies alive per connection.
        """
        convert = self._sqlite_converters()
        when = convert["received_at"](now)
        statements = [
            (keyed, chunk, size) for keyed, indexes in runs for chunk, size in _sqlite_chunks(indexes, keyed)
        ]
        stored: dict[int, int] = {}
        key_ids: dict[str, int] = {}
        wal = self._db.sqlite_wal()
        async with wal.lock, self._db.engine.connect() as conn:
            raw = await conn.get_raw_connection()
            driver = raw.driver_connection
            assert driver is not None  # a checked-out connection always has one
            transaction = len(statements) > 1
            if transaction:
                await driver.execute_fetchall("BEGIN IMMEDIATE")
            try:
                for keyed, chunk, size in statements:
                    params: list[Any] = []
                    for n in range(size):
                        # A keyed chunk is padded with its last row, which ON CONFLICT then skips.
                        row = rows[chunk[min(n, len(chunk) - 1)]]
                        params += (
                            row.dedupe_key,
                            row.route,
                            row.instance_id,
                            convert["params"](dict(row.params)),
                            row.body,
                            when,
                            when,
                            InboxStatus.PENDING.value,
                            0,
                        )
                    returned = await driver.execute_fetchall(_sqlite_inbox_insert(size, keyed), params)
                    if keyed:
                        for new_id, key in returned:
                            stored[first_of_key[key]] = key_ids[key] = int(new_id)
                    else:
                        # Ids are given in the order of the VALUES rows; RETURNING's order is not promised.
                        new_ids = sorted(int(r[0]) for r in returned)
                        stored.update(zip(chunk, new_ids, strict=True))
                if transaction:
                    await driver.execute_fetchall("COMMIT")
            except BaseException:
                if transaction:
                    await driver.execute_fetchall("ROLLBACK")
                raise
            wal.written(self._db.engine, sum(len(rows[i].body) + _PAGE for i in stored))
            missing = [k for k in first_of_key if k not in key_ids]
            if missing:
                # The conflicting rows are committed; the inbox keeps them until long after processing.
                marks = ",".join("?" * len(missing))
                found = await driver.execute_fetchall(
                    f"SELECT id, dedupe_key FROM webhook_inbox WHERE dedupe_key IN ({marks})", missing
                )
                key_ids.update((key, int(existing)) for existing, key in found)
        return stored, key_ids

    def _sqlite_converters(self) -> dict[str, Any]:
        if self._converters is None:
            dialect = self._db.engine.dialect
            converters: dict[str, Any] = {}
            for name in ("params", "received_at"):
                processor = webhook_inbox.c[name].type.dialect_impl(dialect).bind_processor(dialect)
                converters[name] = processor if processor is not None else (lambda value: value)
            self._converters = converters
        return self._converters

    async def claim(self, *, limit: int, owner: str, now: datetime, lease_seconds: float) -> list[InboxItem]:
        if limit <= 0:
            return []
        t = webhook_inbox
        candidate = t.alias("candidate")
        ids = (
            sa.select(candidate.c.id)
            .where(
                candidate.c.status == InboxStatus.PENDING.value,
                candidate.c.available_at <= now,
                _lease_free(candidate, now),
            )
            .order_by(candidate.c.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        stmt = (
            sa.update(t)
            .where(t.c.id.in_(ids))
            .values(
                lease_owner=owner,
                lease_until=now + timedelta(seconds=lease_seconds),
                attempts=t.c.attempts + 1,
            )
            .returning(*t.c)
        )
        async with self._db.write() as conn:
            rows = (await conn.execute(stmt)).all()
        return sorted((_inbox_item(r) for r in rows), key=lambda item: item.id)

    async def complete(
        self,
        item_id: int,
        *,
        owner: str,
        outcome: str,
        status: str,
        deliveries: Sequence[NewDelivery],
        now: datetime,
    ) -> bool:
        completion = InboxCompletion(item_id=item_id, outcome=outcome, status=status, deliveries=deliveries)
        return (await self.complete_many([completion], owner=owner, now=now))[0]

    async def complete_many(
        self, completions: Sequence[InboxCompletion], *, owner: str, now: datetime
    ) -> list[bool]:
        for c in completions:
            if c.status not in _FINAL_INBOX_STATUSES:
                raise ValueError(
                    f"cannot complete an inbox item as {c.status!r}; use done, ignored or failed"
                )
        if not completions:
            return []
        t = webhook_inbox
        ids = [c.item_id for c in completions]
        # Statements of one shape whatever the batch size (executemany), so that neither SQLAlchemy's
        # compiled cache nor the driver's statement cache keeps one variant per size.
        held = (
            sa.select(t.c.id, t.c.received_at)
            .where(t.c.id.in_(ids), t.c.lease_owner == owner, t.c.status == InboxStatus.PENDING.value)
            .with_for_update()
        )
        close = (
            sa.update(t)
            .where(
                t.c.id == sa.bindparam("item_id"),
                t.c.lease_owner == owner,
                t.c.status == InboxStatus.PENDING.value,
            )
            .values(
                status=sa.bindparam("new_status"),
                outcome=sa.bindparam("new_outcome"),
                processed_at=now,
                lease_owner=None,
                lease_until=None,
            )
        )
        async with self._db.write() as conn:
            # Checking the leases first also locks the rows (PostgreSQL; SQLite holds the write lock).
            closed = {int(r.id): r.received_at for r in (await conn.execute(held)).all()}
            if closed:
                await conn.execute(
                    close,
                    [
                        {"item_id": c.item_id, "new_status": c.status, "new_outcome": c.outcome}
                        for c in completions
                        if c.item_id in closed
                    ],
                )
            rows = [
                _new_delivery_row(d, inbox_id=c.item_id, received_at=closed[c.item_id], now=now)
                for c in completions
                if c.item_id in closed
                for d in c.deliveries
            ]
            if rows:
                await conn.execute(sa.insert(delivery_table), rows)
        return [c.item_id in closed for c in completions]

    async def release(
        self, item_id: int, *, owner: str, error: str, now: datetime, retry_at: datetime
    ) -> bool:
        t = webhook_inbox
        stmt = (
            sa.update(t)
            .where(t.c.id == item_id, t.c.lease_owner == owner, t.c.status == InboxStatus.PENDING.value)
            .values(outcome=error, available_at=retry_at, lease_owner=None, lease_until=None)
            .returning(t.c.id)
        )
        async with self._db.write() as conn:
            return (await conn.execute(stmt)).first() is not None

    async def give_back(self, item_ids: Sequence[int], *, owner: str) -> int:
        if not item_ids:
            return 0
        t = webhook_inbox
        stmt = (
            sa.update(t)
            .where(
                t.c.id.in_(list(item_ids)), t.c.lease_owner == owner, t.c.status == InboxStatus.PENDING.value
            )
            .values(
                lease_owner=None,
                lease_until=None,
                attempts=sa.case((t.c.attempts > 0, t.c.attempts - 1), else_=0),
            )
            .returning(t.c.id)
        )
        async with self._db.write() as conn:
            return len((await conn.execute(stmt)).all())

    async def get(self, item_id: int) -> InboxItem | None:
        async with self._db.read() as conn:
            row = (await conn.execute(sa.select(webhook_inbox).where(webhook_inbox.c.id == item_id))).first()
        return _inbox_item(row) if row is not None else None

    async def list_failed(self, limit: int = 100) -> list[InboxItem]:
        t = webhook_inbox
        stmt = sa.select(t).where(t.c.status == InboxStatus.FAILED.value).order_by(t.c.id).limit(limit)
        async with self._db.read() as conn:
            return [_inbox_item(r) for r in (await conn.execute(stmt)).all()]

    async def replay_failed(self, ids: Sequence[int] | None, now: datetime) -> int:
        t = webhook_inbox
        where = [t.c.status == InboxStatus.FAILED.value]
        if ids is not None:
            if not ids:
                return 0
            where.append(t.c.id.in_(list(ids)))
        stmt = (
            sa.update(t)
            .where(*where)
            .values(
                status=InboxStatus.PENDING.value,
                attempts=0,
                available_at=now,
                processed_at=None,
                lease_owner=None,
                lease_until=None,
            )
            .returning(t.c.id)
        )
        async with self._db.write() as conn:
            return len((await conn.execute(stmt)).all())

    async def counts(self) -> dict[str, int]:
        t = webhook_inbox
        async with self._db.read() as conn:
            rows = (await conn.execute(sa.select(t.c.status, sa.func.count()).group_by(t.c.status))).all()
        return _status_counts(rows, [s.value for s in InboxStatus])

    async def next_due_at(self) -> datetime | None:
        t = webhook_inbox
        stmt = sa.select(sa.func.min(_ready_at(t, t.c.available_at))).where(
            t.c.status == InboxStatus.PENDING.value
        )
        async with self._db.read() as conn:
            return await conn.scalar(stmt)

    async def purge(self, *, before: datetime) -> int:
        t = webhook_inbox
        stmt = (
            sa.delete(t)
            .where(t.c.status != InboxStatus.PENDING.value, t.c.processed_at < before)
            .returning(t.c.id)
        )
        async with self._db.write() as conn:
            return len((await conn.execute(stmt)).all())


# ----------------------------------------------------------------------------------------- deliveries


def _new_delivery_row(
    d: NewDelivery, *, inbox_id: int | None, received_at: datetime | None, now: datetime
) -> dict[str, Any]:
    return {
        "inbox_id": inbox_id,
        "channel_id": d.channel_id,
        "order_key": d.order_key,
        "kind": d.kind,
        "payload": dict(d.payload),
        # 32 hex characters: unique, and within Mattermost's limit for pending_post_id.
        "pending_post_id": d.pending_post_id or uuid.uuid4().hex,
        "status": DeliveryStatus.PENDING.value,
        "attempts": 0,
        "next_attempt_at": d.next_attempt_at or now,
        "received_at": received_at,
        "created_at": now,
    }


def _delivery(row: Row[Any]) -> Delivery:
    m = row._mapping
    return Delivery(
        id=m["id"],
        inbox_id=m["inbox_id"],
        channel_id=m["channel_id"],
        order_key=m["order_key"],
        kind=m["kind"],
        payload=m["payload"] or {},
        pending_post_id=m["pending_post_id"],
        status=m["status"],
        attempts=m["attempts"],
        next_attempt_at=m["next_attempt_at"],
        created_at=m["created_at"],
        last_error=m["last_error"],
        lease_owner=m["lease_owner"],
        lease_until=m["lease_until"],
        received_at=m["received_at"],
        delivered_at=m["delivered_at"],
        dead_at=m["dead_at"],
        post_id=m["post_id"],
    )


def _has_older_pending(d: Any) -> sa.Exists:
    """Whether another pending delivery with d's order_key was created before d."""
    older = delivery_table.alias("older")
    return sa.exists().where(
        older.c.order_key == d.c.order_key,
        older.c.status == DeliveryStatus.PENDING.value,
        older.c.id < d.c.id,
    )


class SqlDeliveryRepository:
    def __init__(self, access: SqlAccess) -> None:
        self._db = access

    async def claim_due(
        self, *, limit: int, owner: str, now: datetime, lease_seconds: float
    ) -> list[Delivery]:
        if limit <= 0:
            return []
        t = delivery_table
        candidate = t.alias("candidate")
        # Only the head of each order_key is eligible: a later post for the same issue waits while an
        # earlier one is pending, leased or backing off, so the channel sees the issue's events in order.
        ids = (
            sa.select(candidate.c.id)
            .where(
                candidate.c.status == DeliveryStatus.PENDING.value,
                candidate.c.next_attempt_at <= now,
                _lease_free(candidate, now),
                ~_has_older_pending(candidate),
            )
            .order_by(candidate.c.next_attempt_at, candidate.c.id)
            .limit(limit)
            .with_for_update(skip_locked=True, of=candidate)
        )
        stmt = (
            sa.update(t)
            .where(t.c.id.in_(ids))
            .values(lease_owner=owner, lease_until=now + timedelta(seconds=lease_seconds))
            .returning(*t.c)
        )
        async with self._db.write() as conn:
            rows = (await conn.execute(stmt)).all()
        return sorted((_delivery(r) for r in rows), key=lambda d: (d.next_attempt_at, d.id))

    async def _finish(self, delivery_id: int, owner: str, values: Mapping[str, Any]) -> bool:
        t = delivery_table
        stmt = (
            sa.update(t)
            .where(
                t.c.id == delivery_id, t.c.lease_owner == owner, t.c.status == DeliveryStatus.PENDING.value
            )
            .values(lease_owner=None, lease_until=None, **values)
            .returning(t.c.id)
        )
        async with self._db.write() as conn:
            return (await conn.execute(stmt)).first() is not None

    async def mark_delivered(self, delivery_id: int, *, owner: str, post_id: str, now: datetime) -> bool:
        return await self._finish(
            delivery_id,
            owner,
            {"status": DeliveryStatus.DELIVERED.value, "delivered_at": now, "post_id": post_id},
        )

    async def mark_delivered_many(
        self, delivered: Sequence[tuple[int, str]], *, owner: str, now: datetime
    ) -> list[bool]:
        if not delivered:
            return []
        t = delivery_table
        post_ids = dict(delivered)
        pending = (t.c.lease_owner == owner, t.c.status == DeliveryStatus.PENDING.value)
        held = sa.select(t.c.id).where(t.c.id.in_(list(post_ids)), *pending).with_for_update()
        # One statement shape whatever the batch size (see SqlInboxRepository.complete_many).
        mark = (
            sa.update(t)
            .where(t.c.id == sa.bindparam("delivery_id"), *pending)
            .values(
                status=DeliveryStatus.DELIVERED.value,
                delivered_at=now,
                post_id=sa.bindparam("new_post_id"),
                lease_owner=None,
                lease_until=None,
            )
        )
        async with self._db.write() as conn:
            done = {int(r[0]) for r in (await conn.execute(held)).all()}
            if done:
                await conn.execute(
                    mark, [{"delivery_id": i, "new_post_id": post_ids[i]} for i in post_ids if i in done]
                )
        return [delivery_id in done for delivery_id, _ in delivered]

    async def reschedule(
        self, delivery_id: int, *, owner: str, error: str, next_attempt_at: datetime, now: datetime
    ) -> bool:
        return await self._finish(
            delivery_id,
            owner,
            {
                "attempts": delivery_table.c.attempts + 1,
                "last_error": error,
                "next_attempt_at": next_attempt_at,
            },
        )

    async def dead_letter(self, delivery_id: int, *, owner: str, error: str, now: datetime) -> bool:
        return await self._finish(
            delivery_id,
            owner,
            {
                "status": DeliveryStatus.DEAD.value,
                "attempts": delivery_table.c.attempts + 1,
                "last_error": error,
                "dead_at": now,
            },
        )

    async def get(self, delivery_id: int) -> Delivery | None:
        async with self._db.read() as conn:
            row = (
                await conn.execute(sa.select(delivery_table).where(delivery_table.c.id == delivery_id))
            ).first()
        return _delivery(row) if row is not None else None

    async def list_for_inbox(self, inbox_id: int) -> list[Delivery]:
        stmt = (
            sa.select(delivery_table)
            .where(delivery_table.c.inbox_id == inbox_id)
            .order_by(delivery_table.c.id)
        )
        async with self._db.read() as conn:
            return [_delivery(r) for r in (await conn.execute(stmt)).all()]

    async def list_dead(self, limit: int = 100) -> list[Delivery]:
        stmt = (
            sa.select(delivery_table)
            .where(delivery_table.c.status == DeliveryStatus.DEAD.value)
            .order_by(delivery_table.c.id)
            .limit(limit)
        )
        async with self._db.read() as conn:
            return [_delivery(r) for r in (await conn.execute(stmt)).all()]

    async def replay(self, ids: Sequence[int] | None, now: datetime) -> int:
        t = delivery_table
        where = [t.c.status == DeliveryStatus.DEAD.value]
        if ids is not None:
            if not ids:
                return 0
            where.append(t.c.id.in_(list(ids)))
        # pending_post_id is kept: if a "dead" post did reach Mattermost, the replay is dropped there.
        stmt = (
            sa.update(t)
            .where(*where)
            .values(
                status=DeliveryStatus.PENDING.value,
                attempts=0,
                next_attempt_at=now,
                last_error=None,
                dead_at=None,
                lease_owner=None,
                lease_until=None,
            )
            .returning(t.c.id)
        )
        async with self._db.write() as conn:
            return len((await conn.execute(stmt)).all())

    async def backlog(self) -> int:
        # Two index-only counts on (status, ...) indexes, in one round trip.
        inbox_pending = (
            sa.select(sa.func.count())
            .select_from(webhook_inbox)
            .where(webhook_inbox.c.status == InboxStatus.PENDING.value)
            .scalar_subquery()
        )
        deliveries_pending = (
            sa.select(sa.func.count())
            .select_from(delivery_table)
            .where(delivery_table.c.status == DeliveryStatus.PENDING.value)
            .scalar_subquery()
        )
        async with self._db.read() as conn:
            total = await conn.scalar(sa.select(inbox_pending + deliveries_pending))
        return int(total or 0)

    async def counts(self) -> dict[str, int]:
        t = delivery_table
        async with self._db.read() as conn:
            rows = (await conn.execute(sa.select(t.c.status, sa.func.count()).group_by(t.c.status))).all()
        return _status_counts(rows, [s.value for s in DeliveryStatus])

    async def next_due_at(self) -> datetime | None:
        t = delivery_table
        head = t.alias("head")
        # Only heads of their order_key: a later delivery waiting behind one in backoff is not "due".
        stmt = sa.select(sa.func.min(_ready_at(head, head.c.next_attempt_at))).where(
            head.c.status == DeliveryStatus.PENDING.value, ~_has_older_pending(head)
        )
        async with self._db.read() as conn:
            return await conn.scalar(stmt)

    async def purge(self, *, before: datetime) -> int:
        t = delivery_table
        stmt = (
            sa.delete(t)
            .where(t.c.status == DeliveryStatus.DELIVERED.value, t.c.delivered_at < before)
            .returning(t.c.id)
        )
        async with self._db.write() as conn:
            return len((await conn.execute(stmt)).all())


# -------------------------------------------------------------------------------------- subscriptions


def config_subscription_id(name: str, channel_id: str) -> str:
    """The id of a subscription declared in the configuration file: stable across restarts."""
    digest = hashlib.sha256(f"{channel_id}\x00{name.strip()}".encode()).hexdigest()
    return f"cfg-{digest[:24]}"


def _subscription(row: Row[Any]) -> Subscription:
    m = row._mapping
    return Subscription.model_validate(
        {
            "id": m["id"],
            "name": m["name"],
            "channel_id": m["channel_id"],
            "instance_id": m["instance_id"],
            "filters": m["filters"] or {},
            "created_by": m["created_by"],
        }
    )


def _subscription_record(row: Row[Any]) -> SubscriptionRecord:
    m = row._mapping
    return SubscriptionRecord(
        subscription=_subscription(row),
        source=m["source"],
        created_at=m["created_at"],
        updated_at=m["updated_at"],
    )


def _subscription_row(sub: Subscription, source: str, now: datetime) -> dict[str, Any]:
    return {
        "id": sub.id,
        "name": sub.name,
        "channel_id": sub.channel_id,
        "instance_id": sub.instance_id,
        "filters": sub.filters.model_dump(mode="json"),
        "created_by": sub.created_by,
        "source": source,
        "created_at": now,
        "updated_at": now,
    }


class SqlSubscriptionRepository:
    def __init__(self, access: SqlAccess) -> None:
        self._db = access

    def _upsert_statement(self) -> Any:
        t = subscriptions
        stmt = self._db.insert(t)
        # created_at is kept from the first insert; everything else follows the new version.
        return stmt.on_conflict_do_update(
            index_elements=[t.c.id],
            set_={
                name: stmt.excluded[name]
                for name in (
                    "name",
                    "channel_id",
                    "instance_id",
                    "filters",
                    "created_by",
                    "source",
                    "updated_at",
                )
            },
        )

    async def _select(self, *where: sa.ColumnElement[bool]) -> list[Row[Any]]:
        t = subscriptions
        stmt = sa.select(t).where(*where).order_by(t.c.name, t.c.id)
        async with self._db.read() as conn:
            return list((await conn.execute(stmt)).all())

    async def list_all(self) -> list[Subscription]:
        return [_subscription(r) for r in await self._select()]

    async def iter_all(self, *, page_size: int = 500) -> AsyncIterator[Subscription]:
        t = subscriptions
        after: tuple[str, str] | None = None
        while True:
            # Keyset pagination on the list order: each page starts after the last row seen.
            stmt = sa.select(t).order_by(t.c.name, t.c.id).limit(page_size)
            if after is not None:
                stmt = stmt.where(sa.tuple_(t.c.name, t.c.id) > sa.tuple_(*after))
            async with self._db.read() as conn:
                rows = (await conn.execute(stmt)).all()
            for row in rows:
                yield _subscription(row)
            if len(rows) < page_size:
                return
            after = (rows[-1].name, rows[-1].id)

    async def list_records(self) -> list[SubscriptionRecord]:
        return [_subscription_record(r) for r in await self._select()]

    async def list_for_channel(self, channel_id: str) -> list[Subscription]:
        return [_subscription(r) for r in await self._select(subscriptions.c.channel_id == channel_id)]

    async def get(self, subscription_id: str) -> Subscription | None:
        rows = await self._select(subscriptions.c.id == subscription_id)
        return _subscription(rows[0]) if rows else None

    async def get_record(self, subscription_id: str) -> SubscriptionRecord | None:
        rows = await self._select(subscriptions.c.id == subscription_id)
        return _subscription_record(rows[0]) if rows else None

    async def upsert(
        self, sub: Subscription, *, source: str = SubscriptionSource.DB.value, now: datetime
    ) -> None:
        if source not in {s.value for s in SubscriptionSource}:
            raise ValueError(f"unknown subscription source {source!r}; use db or config")
        async with self._db.write() as conn:
            await conn.execute(self._upsert_statement(), [_subscription_row(sub, source, now)])

    async def delete(self, subscription_id: str) -> bool:
        t = subscriptions
        async with self._db.write() as conn:
            rows = (await conn.execute(sa.delete(t).where(t.c.id == subscription_id).returning(t.c.id))).all()
        return bool(rows)

    async def replace_config_subscriptions(
        self, subs: Sequence[Subscription], *, now: datetime
    ) -> list[Subscription]:
        """Store `subs` as the config-sourced set: ids are recomputed from name and channel (the given ids
        are ignored), missing ones are deleted, existing ones keep their created_at.
        """
        stored: dict[str, Subscription] = {}
        for sub in subs:
            sub_id = config_subscription_id(sub.name, sub.channel_id)
            if sub_id in stored:
                raise ValueError(
                    f"subscription {sub.name!r} is declared twice for channel {sub.channel_id}; "
                    "give each subscription of a channel its own name"
                )
            stored[sub_id] = sub.model_copy(update={"id": sub_id})
        t = subscriptions
        # Deleting first makes the write lock the transaction's first step (see SqlAccess.write).
        remove = sa.delete(t).where(t.c.source == SubscriptionSource.CONFIG.value)
        if stored:
            remove = remove.where(t.c.id.not_in(list(stored)))
        async with self._db.write() as conn:
            await conn.execute(remove)
            if stored:
                await conn.execute(
                    self._upsert_statement(),
                    [_subscription_row(s, SubscriptionSource.CONFIG.value, now) for s in stored.values()],
                )
        return list(stored.values())

    async def count(self) -> int:
        async with self._db.read() as conn:
            n = await conn.scalar(sa.select(sa.func.count()).select_from(subscriptions))
        return int(n or 0)


# -------------------------------------------------------------------------------------------- threads


class SqlThreadRepository:
    def __init__(self, access: SqlAccess) -> None:
        self._db = access

    @staticmethod
    def _key(instance_id: str, channel_id: str, issue_key: str) -> sa.ColumnElement[bool]:
        t = issue_threads
        return sa.and_(
            t.c.instance_id == instance_id, t.c.channel_id == channel_id, t.c.issue_key == issue_key
        )

    async def get_root(
        self, instance_id: str, channel_id: str, issue_key: str, *, now: datetime
    ) -> str | None:
        t = issue_threads
        stmt = sa.select(t.c.root_post_id).where(
            self._key(instance_id, channel_id, issue_key), t.c.expires_at > now
        )
        async with self._db.read() as conn:
            return await conn.scalar(stmt)

    def _root_upsert(self, now: datetime) -> Any:
        t = issue_threads
        stmt = self._db.insert(t)
        # A live root wins; an expired one is replaced.
        return stmt.on_conflict_do_update(
            index_elements=[t.c.instance_id, t.c.channel_id, t.c.issue_key],
            set_={"root_post_id": stmt.excluded.root_post_id, "expires_at": stmt.excluded.expires_at},
            where=t.c.expires_at <= now,
        )

    async def set_root_if_absent(
        self,
        instance_id: str,
        channel_id: str,
        issue_key: str,
        *,
        root_post_id: str,
        expires_at: datetime,
        now: datetime,
    ) -> str:
        t = issue_threads
        row = {
            "instance_id": instance_id,
            "channel_id": channel_id,
            "issue_key": issue_key,
            "root_post_id": root_post_id,
            "expires_at": expires_at,
        }
        async with self._db.write() as conn:
            await conn.execute(self._root_upsert(now), [row])
            root = await conn.scalar(
                sa.select(t.c.root_post_id).where(self._key(instance_id, channel_id, issue_key))
            )
        if root is None:
            raise RuntimeError(f"thread root for {issue_key} in {channel_id} vanished while being set")
        return str(root)

    async def set_roots_if_absent(self, roots: Sequence[NewThreadRoot], *, now: datetime) -> None:
        # Within the batch the first root of a key wins, as it would one transaction at a time
        # (and one statement may not update the same row twice on PostgreSQL).
        first: dict[tuple[str, str, str], dict[str, Any]] = {}
        for r in roots:
            first.setdefault(
                (r.instance_id, r.channel_id, r.issue_key),
                {
                    "instance_id": r.instance_id,
                    "channel_id": r.channel_id,
                    "issue_key": r.issue_key,
                    "root_post_id": r.root_post_id,
                    "expires_at": r.expires_at,
                },
            )
        if not first:
            return
        async with self._db.write() as conn:
            await conn.execute(self._root_upsert(now), list(first.values()))

    async def purge_expired(self, *, now: datetime) -> int:
        t = issue_threads
        async with self._db.write() as conn:
            rows = (
                await conn.execute(sa.delete(t).where(t.c.expires_at <= now).returning(t.c.issue_key))
            ).all()
        return len(rows)


# ------------------------------------------------------------------------------------------------- kv


def _live(expires_at: datetime | None, now: datetime) -> bool:
    return expires_at is None or expires_at > now


class SqlKeyValueRepository:
    """Small JSON values by key, with optional expiry (OAuth states, rate-limit stamps)."""

    def __init__(self, access: SqlAccess) -> None:
        self._db = access

    async def get(self, key: str, *, now: datetime) -> Any | None:
        async with self._db.read() as conn:
            row = (await conn.execute(sa.select(kv.c.value, kv.c.expires_at).where(kv.c.key == key))).first()
        if row is None or not _live(row.expires_at, now):
            return None
        return row.value

    async def put(self, key: str, value: Any, *, expires_at: datetime | None = None) -> None:
        stmt = self._db.insert(kv).values(key=key, value=value, expires_at=expires_at)
        stmt = stmt.on_conflict_do_update(
            index_elements=[kv.c.key],
            set_={"value": stmt.excluded.value, "expires_at": stmt.excluded.expires_at},
        )
        async with self._db.write() as conn:
            await conn.execute(stmt)

    async def add(self, key: str, value: Any, *, expires_at: datetime | None = None, now: datetime) -> bool:
        """Store the value only if the key is absent or expired; True when stored (first caller wins)."""
        stmt = self._db.insert(kv).values(key=key, value=value, expires_at=expires_at)
        stmt = stmt.on_conflict_do_update(
            index_elements=[kv.c.key],
            set_={"value": stmt.excluded.value, "expires_at": stmt.excluded.expires_at},
            where=sa.and_(kv.c.expires_at.is_not(None), kv.c.expires_at <= now),
        ).returning(kv.c.key)
        async with self._db.write() as conn:
            return (await conn.execute(stmt)).first() is not None

    async def delete(self, key: str) -> bool:
        async with self._db.write() as conn:
            rows = (await conn.execute(sa.delete(kv).where(kv.c.key == key).returning(kv.c.key))).all()
        return bool(rows)

    async def take(self, key: str, *, now: datetime) -> Any | None:
        # DELETE ... RETURNING: of concurrent takers exactly one gets the row.
        stmt = sa.delete(kv).where(kv.c.key == key).returning(kv.c.value, kv.c.expires_at)
        async with self._db.write() as conn:
            row = (await conn.execute(stmt)).first()
        if row is None or not _live(row.expires_at, now):
            return None
        return row.value

    async def purge_expired(self, *, now: datetime) -> int:
        stmt = sa.delete(kv).where(kv.c.expires_at.is_not(None), kv.c.expires_at <= now).returning(kv.c.key)
        async with self._db.write() as conn:
            return len((await conn.execute(stmt)).all())


__all__ = [
    "WRITE_OPTION",
    "SqlAccess",
    "SqlDeliveryRepository",
    "SqlInboxRepository",
    "SqlKeyValueRepository",
    "SqlSubscriptionRepository",
    "SqlThreadRepository",
    "config_subscription_id",
]
