"""Small values by key in SQL, with optional expiry."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from bot.store.schema import kv
from bot.store.sql_access import SqlAccess


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
        await self.put_many([(key, value, expires_at)])

    async def put_many(self, items: Sequence[tuple[str, Any, datetime | None]]) -> None:
        """`put` each (key, value, expires_at), in one transaction."""
        if not items:
            return
        stmt = self._db.insert(kv)
        stmt = stmt.on_conflict_do_update(
            index_elements=[kv.c.key],
            set_={"value": stmt.excluded.value, "expires_at": stmt.excluded.expires_at},
        )
        rows = [{"key": key, "value": value, "expires_at": expires_at} for key, value, expires_at in items]
        async with self._db.write() as conn:
            await conn.execute(stmt, rows)

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


__all__ = ["SqlKeyValueRepository"]
