"""Issue thread roots in SQL: the post under which a channel's notifications of one issue gather.

One row per (instance, channel, issue), its primary key: recording a root is an insert-if-absent
(ON CONFLICT … DO UPDATE only over an expired row), so concurrent first posts, also from several
replicas, agree on the first root recorded. A root whose post was deleted is dropped with
`forget_root` (compare-and-delete) and the next post becomes the new root.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from bot.store.interfaces import NewThreadRoot
from bot.store.schema import issue_threads
from bot.store.sql_access import SqlAccess


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

    async def forget_root(
        self, instance_id: str, channel_id: str, issue_key: str, *, root_post_id: str
    ) -> bool:
        # Compare-and-delete: a root another worker recorded meanwhile is kept.
        t = issue_threads
        stmt = (
            sa.delete(t)
            .where(self._key(instance_id, channel_id, issue_key), t.c.root_post_id == root_post_id)
            .returning(t.c.issue_key)
        )
        async with self._db.write() as conn:
            return (await conn.execute(stmt)).first() is not None

    async def purge_expired(self, *, now: datetime) -> int:
        t = issue_threads
        async with self._db.write() as conn:
            rows = (
                await conn.execute(sa.delete(t).where(t.c.expires_at <= now).returning(t.c.issue_key))
            ).all()
        return len(rows)


__all__ = ["SqlThreadRepository"]
