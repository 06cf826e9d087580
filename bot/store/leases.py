"""Duty leases in SQL: what one replica of several does at a time, taken over when it dies.

A lease is a row (`leases`: name, owner, token, expires_at). Taking it is one
`INSERT ... ON CONFLICT (name) DO UPDATE ... WHERE owner = me OR expires_at <= now OR <owner is
dead> RETURNING token` statement: atomic on PostgreSQL (the row lock of the conflicting row) and on
SQLite (one writer at a time), so of replicas racing for a free lease exactly one gets it. The
holder renews it before it runs out. A holder that died stops renewing; the first replica to ask
takes it over as soon as the holder's heartbeat is stale (`bot.store.replicas.dead`, the rule the
inbox and delivery claims follow: within `LIVENESS_SECONDS`), or else after `expires_at` (an owner
without a heartbeat row: a tool, a test). Every change of the row checks `owner`, so a holder that
lost its lease (it was paused past its expiry, or long enough to look dead, and another replica
took over) renews nothing and learns that it lost it.

`token` rises each time the lease changes hands (a fencing token: work stamped with an older token
is stale). The same rows serve SQLite, where replicas are processes sharing one file.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError

from bot.store.interfaces import LeaseInfo, LeaseRepository
from bot.store.replicas import dead
from bot.store.schema import leases
from bot.store.sql_access import SqlAccess

log = logging.getLogger(__name__)


class SqlLeaseRepository:
    def __init__(self, access: SqlAccess) -> None:
        self._db = access

    async def try_acquire(self, name: str, *, owner: str, ttl_seconds: float, now: datetime) -> int | None:
        t = leases
        until = now + timedelta(seconds=ttl_seconds)
        stmt = self._db.insert(t).values(name=name, owner=owner, token=1, acquired_at=now, expires_at=until)
        mine = t.c.owner == stmt.excluded.owner
        stmt = stmt.on_conflict_do_update(
            index_elements=[t.c.name],
            set_={
                "owner": stmt.excluded.owner,
                "expires_at": stmt.excluded.expires_at,
                "token": sa.case((mine, t.c.token), else_=t.c.token + 1),
                "acquired_at": sa.case((mine, t.c.acquired_at), else_=stmt.excluded.acquired_at),
            },
            where=sa.or_(mine, t.c.expires_at <= now, dead(t.c.owner, now)),
        ).returning(t.c.token)
        async with self._db.write() as conn:
            token = (await conn.execute(stmt)).scalar()
        return int(token) if token is not None else None

    async def renew(self, name: str, *, owner: str, ttl_seconds: float, now: datetime) -> bool:
        t = leases
        # An expired lease nobody took yet is still this owner's: renewing it is safe, since a
        # taker would have changed the owner first.
        stmt = (
            sa.update(t)
            .where(t.c.name == name, t.c.owner == owner)
            .values(expires_at=now + timedelta(seconds=ttl_seconds))
            .returning(t.c.name)
        )
        async with self._db.write() as conn:
            return (await conn.execute(stmt)).first() is not None

    async def release(self, name: str, *, owner: str) -> bool:
        t = leases
        stmt = sa.delete(t).where(t.c.name == name, t.c.owner == owner).returning(t.c.name)
        async with self._db.write() as conn:
            return (await conn.execute(stmt)).first() is not None

    async def get(self, name: str) -> LeaseInfo | None:
        t = leases
        async with self._db.read() as conn:
            row = (await conn.execute(sa.select(t).where(t.c.name == name))).first()
        if row is None:
            return None
        m = row._mapping
        return LeaseInfo(
            name=m["name"],
            owner=m["owner"],
            token=int(m["token"]),
            acquired_at=m["acquired_at"],
            expires_at=m["expires_at"],
        )

    async def purge_expired(self, *, before: datetime) -> int:
        t = leases
        stmt = sa.delete(t).where(t.c.expires_at < before).returning(t.c.name)
        async with self._db.write() as conn:
            return len((await conn.execute(stmt)).all())


class Duty:
    """A duty done by one replica at a time: `await duty.hold()` before each round of it.

    `hold()` takes the lease when it is free or expired and renews it when this owner has it;
    True means "go ahead, for at most `ttl_seconds`". Call it more often than `ttl_seconds`
    (rounds shorter than the lease), or the lease lapses and another replica takes over. A
    database error counts as not holding: better a round skipped than one done twice.
    """

    def __init__(
        self,
        leases: LeaseRepository,
        name: str,
        *,
        owner: str,
        ttl_seconds: float,
        clock: Callable[[], datetime],
    ) -> None:
        self.name = name
        self.owner = owner
        self.ttl_seconds = ttl_seconds
        self._leases = leases
        self._clock = clock
        self.token: int | None = None

    @property
    def held(self) -> bool:
        """Whether the last `hold()` found this owner holding the lease."""
        return self.token is not None

    async def hold(self) -> bool:
        was = self.token
        try:
            self.token = await self._leases.try_acquire(
                self.name, owner=self.owner, ttl_seconds=self.ttl_seconds, now=self._clock()
            )
        except (SQLAlchemyError, OSError) as e:
            log.warning("duty %s: lease not checked (%s); skipping this round", self.name, e)
            self.token = None
        if self.token is not None and self.token != was:
            log.info("duty %s: taken by this replica (%s, token %d)", self.name, self.owner, self.token)
        elif self.token is None and was is not None:
            log.warning("duty %s: lease lost; another replica has it", self.name)
        return self.token is not None

    async def release(self) -> None:
        """Give the duty up at once (on shutdown), so another replica takes it without waiting."""
        if self.token is None:
            return
        self.token = None
        try:
            await self._leases.release(self.name, owner=self.owner)
        except (SQLAlchemyError, OSError) as e:
            log.warning("duty %s: lease not released (%s); it runs out by itself", self.name, e)


__all__ = ["Duty", "SqlLeaseRepository"]
