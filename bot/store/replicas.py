"""Replica heartbeats: which `serve` processes sharing the database are alive, as it sees them.

Each process writes a row under its owner id (the `lease_owner` its claims carry) every
`HEARTBEAT_SECONDS`. A claim (inbox rows, deliveries, duty leases: bot.store.leases) may take a
row whose lease has not run out when the lease's owner has a heartbeat row older than
`LIVENESS_SECONDS`: the work of a replica
killed with -9, or cut off from the database, is taken over within a few seconds instead of
after the lease (`delivery.lease_seconds`). The lease stays the fallback: an owner without a
heartbeat row (a process that stopped cleanly and released its rows, or a tool) keeps its rows
until the lease ends.

Heartbeat rows rather than PostgreSQL session advisory locks: they work the same on SQLite; an
advisory lock is bound to one connection that would have to stay checked out of the pool for the
process's life; and the server notices a lost network only when TCP keepalives give up (minutes
by default), while a heartbeat goes stale after `LIVENESS_SECONDS` whatever the cause, a frozen
event loop included. Clocks: `beat_at` is written with the beating replica's clock and compared
with the claiming one's, as leases already are; replicas need clocks in step to a second or so.

A replica declared dead while only slow changes nothing on return: every later change of a
row checks `lease_owner` (fencing), and a post it sent meanwhile carries the same
`pending_post_id` as the new owner's, which Mattermost recognises.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from bot.store.schema import replicas
from bot.store.sql_access import SqlAccess, lease_free

# How often a replica writes its heartbeat.
HEARTBEAT_SECONDS = 1.0
# A replica whose heartbeat is older than this is taken for dead: its claimed rows may be taken.
LIVENESS_SECONDS = 5.0


def dead(owner: sa.ColumnElement[Any], now: datetime) -> sa.ColumnElement[bool]:
    """Whether `owner` (a column naming a replica) has a heartbeat row older than
    `LIVENESS_SECONDS`. An owner without a row is not dead: it stopped cleanly or is a tool."""
    holder = replicas.alias("holder")
    return sa.exists().where(
        holder.c.owner == owner,
        holder.c.beat_at < now - timedelta(seconds=LIVENESS_SECONDS),
    )


def orphaned(table: Any, now: datetime) -> sa.ColumnElement[bool]:
    """Whether a row's lease is held by a replica whose heartbeat stopped."""
    return dead(table.c.lease_owner, now)


def claimable(table: Any, now: datetime) -> sa.ColumnElement[bool]:
    """A lease that is free, has run out, or whose holder is dead."""
    return sa.or_(lease_free(table, now), orphaned(table, now))


class SqlReplicaRepository:
    def __init__(self, access: SqlAccess) -> None:
        self._db = access
        self._upsert = access.insert(replicas)

    async def beat(self, owner: str, *, now: datetime) -> None:
        """Record that `owner` is alive at `now` (its first beat registers it)."""
        stmt = self._upsert.values(owner=owner, started_at=now, beat_at=now).on_conflict_do_update(
            index_elements=[replicas.c.owner], set_={"beat_at": now}
        )
        async with self._db.write() as conn:
            await conn.execute(stmt)

    async def forget(self, owner: str) -> None:
        """Remove `owner`'s heartbeat (a clean stop, after its rows were released)."""
        async with self._db.write() as conn:
            await conn.execute(sa.delete(replicas).where(replicas.c.owner == owner))

    async def live(self, *, now: datetime) -> list[str]:
        """Owners whose heartbeat is fresh, oldest first."""
        stmt = (
            sa.select(replicas.c.owner)
            .where(replicas.c.beat_at >= now - timedelta(seconds=LIVENESS_SECONDS))
            .order_by(replicas.c.started_at, replicas.c.owner)
        )
        async with self._db.read() as conn:
            return [str(r[0]) for r in (await conn.execute(stmt)).all()]

    async def is_dead(self, owner: str, *, now: datetime) -> bool:
        """`dead` for one owner: a heartbeat row older than `LIVENESS_SECONDS` (an owner without a
        row is not dead)."""
        async with self._db.read() as conn:
            return bool((await conn.execute(sa.select(dead(sa.literal(owner), now)))).scalar())

    async def purge(self, *, before: datetime) -> int:
        """Delete heartbeats older than `before` (replicas long gone)."""
        stmt = sa.delete(replicas).where(replicas.c.beat_at < before).returning(replicas.c.owner)
        async with self._db.write() as conn:
            return len((await conn.execute(stmt)).all())


__all__ = ["HEARTBEAT_SECONDS", "LIVENESS_SECONDS", "SqlReplicaRepository", "claimable", "dead", "orphaned"]
