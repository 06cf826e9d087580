"""The webhook inbox in SQL: webhooks stored as received, claimed and completed by the processors.

Completing an item stores its deliveries (`bot.store.deliveries`) in the same transaction.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Row

from bot.store.deliveries import new_delivery_row
from bot.store.interfaces import InboxCompletion, InboxItem, InboxStatus, NewDelivery, NewInboxRow
from bot.store.replicas import claimable
from bot.store.schema import PENDING, PENDING_ID_INDEX, webhook_inbox
from bot.store.schema import deliveries as delivery_table
from bot.store.sql_access import PAGE, SqlAccess, indexed_alias, picked, ready_at, status_counts

_FINAL_INBOX_STATUSES = frozenset({InboxStatus.DONE, InboxStatus.IGNORED, InboxStatus.FAILED})


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
    "order_key",
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


# Inbox batches in flight at once on PostgreSQL: enough to hide a commit's wait behind the
# others' work, few enough to leave the pool's other connections to processing and delivery.
_PG_WRITE_CONCURRENCY = 3

# The rows' values as arrays, unnested in their order (see `_insert_postgresql`).
_PG_INBOX_INSERT = (
    "INSERT INTO webhook_inbox (dedupe_key, route, instance_id, params, body, received_at, available_at,"
    " status, attempts, order_key)"
    " SELECT k, r, i, p::jsonb, b, $7::timestamptz, $7::timestamptz, 'pending', 0, o"
    " FROM unnest($1::varchar[], $2::varchar[], $3::varchar[], $4::text[], $5::bytea[], $6::varchar[])"
    " WITH ORDINALITY AS u(k, r, i, p, b, o, n)"
    " ORDER BY n"
    " ON CONFLICT (dedupe_key) DO NOTHING"
    " RETURNING id, dedupe_key"
)


@functools.lru_cache(maxsize=32)
def _sqlite_inbox_insert(count: int, keyed: bool) -> str:
    values = ",".join(["(" + ",".join("?" * len(_SQLITE_INBOX_COLUMNS)) + ")"] * count)
    conflict = " ON CONFLICT (dedupe_key) DO NOTHING RETURNING id, dedupe_key" if keyed else " RETURNING id"
    return f"INSERT INTO webhook_inbox ({', '.join(_SQLITE_INBOX_COLUMNS)}) VALUES {values}{conflict}"


class SqlInboxRepository:
    def __init__(self, access: SqlAccess) -> None:
        self._db = access
        # Batches of webhooks worth committing at once (bot.pipeline.inbox_writer): on PostgreSQL
        # each waits for its commit on a connection of its own, so the waits overlap; SQLite has
        # one writer at a time.
        self.write_concurrency = 1 if access.dialect == "sqlite" else _PG_WRITE_CONCURRENCY
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
        insert = self._insert_sqlite if self._db.dialect == "sqlite" else self._insert_postgresql
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

    async def _insert_postgresql(
        self, rows: Sequence[NewInboxRow], runs: _Runs, first_of_key: Mapping[str, int], now: datetime
    ) -> tuple[dict[int, int], dict[str, int]]:
        """Insert the rows as one autocommitted statement, straight on the driver connection:
        (row index -> new id, dedupe key -> id).

        One round trip that returns once the rows are committed (durable: synchronous_commit is
        left on), where a transaction through SQLAlchemy costs four (BEGIN, INSERT, COMMIT and the
        pool's ping) and its per-statement work in the event loop. The arrays are unnested in the
        rows' order, so the ids follow it (`ORDER BY n`, as SQLAlchemy's own ordered inserts rely on).
        """
        convert = self._converters_for_dialect()
        indexes = [i for _, run in runs for i in run]
        picked_rows = [rows[i] for i in indexes]
        stored: dict[int, int] = {}
        key_ids: dict[str, int] = {}
        async with self._db.engine.connect() as conn:
            raw = await conn.get_raw_connection()
            driver = raw.driver_connection
            assert driver is not None  # a checked-out connection always has one
            returned = await driver.fetch(
                _PG_INBOX_INSERT,
                [r.dedupe_key for r in picked_rows],
                [r.route for r in picked_rows],
                [r.instance_id for r in picked_rows],
                [convert["params"](dict(r.params)) for r in picked_rows],
                [r.body for r in picked_rows],
                [r.order_key for r in picked_rows],
                convert["received_at"](now),
            )
            # Rows without a key never conflict: their ids, in order, are theirs in order.
            unkeyed = iter(i for i in indexes if rows[i].dedupe_key is None)
            for new_id, key in sorted(returned):
                if key is None:
                    stored[next(unkeyed)] = int(new_id)
                else:
                    stored[first_of_key[key]] = key_ids[key] = int(new_id)
            missing = [k for k in first_of_key if k not in key_ids]
            if missing:
                # A conflict means a committed row with that key exists (PostgreSQL waited for it).
                found = await driver.fetch(
                    "SELECT id, dedupe_key FROM webhook_inbox WHERE dedupe_key = ANY($1::varchar[])", missing
                )
                key_ids.update((key, int(existing)) for existing, key in found)
        return stored, key_ids

    async def _insert_sqlite(
        self, rows: Sequence[NewInboxRow], runs: _Runs, first_of_key: Mapping[str, int], now: datetime
    ) -> tuple[dict[int, int], dict[str, int]]:
        """`_insert_postgresql` for SQLite, straight on the driver connection.

        Every statement through SQLAlchemy costs several hand-offs to the driver's thread; here a
        batch of one run (the usual case) is a single autocommitted statement, a single hand-off.
        Values are converted by the columns' own SQLAlchemy types, so rows read back exactly as if
        SQLAlchemy had written them.

        The driver keeps each prepared statement with the values last bound to it (webhook bodies
        here), so statements come in a few sizes only (see `_sqlite_chunks`): one per batch size
        would keep ~30 MB of old bodies alive per connection.
        """
        convert = self._converters_for_dialect()
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
                            row.order_key,
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
            wal.written(self._db.engine, sum(len(rows[i].body) + PAGE for i in stored))
            missing = [k for k in first_of_key if k not in key_ids]
            if missing:
                # The conflicting rows are committed; the inbox keeps them until long after processing.
                marks = ",".join("?" * len(missing))
                found = await driver.execute_fetchall(
                    f"SELECT id, dedupe_key FROM webhook_inbox WHERE dedupe_key IN ({marks})", missing
                )
                key_ids.update((key, int(existing)) for existing, key in found)
        return stored, key_ids

    def _converters_for_dialect(self) -> dict[str, Any]:
        if self._converters is None:
            dialect = self._db.engine.dialect
            converters: dict[str, Any] = {}
            for name in ("params", "received_at"):
                processor = webhook_inbox.c[name].type.dialect_impl(dialect).bind_processor(dialect)
                converters[name] = processor if processor is not None else (lambda value: value)
            self._converters = converters
        return self._converters

    async def claim(self, *, limit: int, owner: str, now: datetime, lease_seconds: float) -> list[InboxItem]:
        """Lease pending rows, at most one per issue: the earliest unfinished one of its issue.

        Per-issue order across replicas: a row whose issue (`order_key`) has an earlier row still
        pending (leased by any replica, waiting for a retry, or not yet claimed) is not taken, so
        the deliveries of one issue's webhooks are committed one webhook after another, and their
        ids (the order `bot.store.deliveries` posts them in) follow the webhooks' order. A row
        closed as failed (a dead letter) no longer holds its successors back.

        The sequence is the order of acceptance (the row id), not Jira's `timestamp`: Jira sends
        the events of an issue one after another as they happen, so acceptance order is their
        order; `timestamp` has millisecond resolution (ties within a bulk change), comes from the
        clocks of several Jira nodes on Data Center, and is absent from some events. Two webhooks
        of one issue accepted at the same moment by two replicas have no order to keep.

        Rows held by a replica whose heartbeat stopped are taken over (`bot.store.replicas`).
        """
        if limit <= 0:
            return []
        t = webhook_inbox
        # Walks the partial index of pending rows in id order (`ix_webhook_inbox_pending_id`,
        # hence the literal status) and stops at the LIMIT: a claim costs the same with ten or
        # ten thousand webhooks queued.
        candidate = indexed_alias(t, "candidate", PENDING_ID_INDEX)
        earlier = t.alias("earlier")
        ids = (
            sa.select(candidate.c.id)
            .where(
                candidate.c.status == PENDING,
                candidate.c.available_at <= now,
                claimable(candidate, now),
                # NULL order_key (a webhook naming no issue) matches nothing: no order to keep.
                ~sa.exists().where(
                    earlier.c.order_key == candidate.c.order_key,
                    earlier.c.status == InboxStatus.PENDING.value,
                    earlier.c.id < candidate.c.id,
                ),
            )
            .order_by(candidate.c.id)
            .limit(limit)
            .with_for_update(skip_locked=True, of=candidate)
        )
        stmt = (
            sa.update(t)
            .where(picked(t.c.id, ids, self._db.dialect))
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
                new_delivery_row(d, inbox_id=c.item_id, received_at=closed[c.item_id], now=now)
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

    async def release_held(self, *, owner: str) -> int:
        """At a clean stop: give back every row `owner` holds (as `give_back`), for another
        replica to take at once; returns how many."""
        t = webhook_inbox
        held = sa.select(t.c.id).where(t.c.lease_owner == owner, t.c.status == InboxStatus.PENDING.value)
        async with self._db.read() as conn:
            ids = [int(r[0]) for r in (await conn.execute(held)).all()]
        return await self.give_back(ids, owner=owner)

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
        return status_counts(rows, [s.value for s in InboxStatus])

    async def next_due_at(self) -> datetime | None:
        t = webhook_inbox
        stmt = sa.select(sa.func.min(ready_at(t, t.c.available_at))).where(
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


__all__ = ["SqlInboxRepository"]
