"""Subscriptions in SQL: the ones made in chat and the ones declared in the configuration file."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Row

from bot.routing.model import Subscription
from bot.store.interfaces import SubscriptionRecord, SubscriptionSource
from bot.store.schema import subscriptions
from bot.store.sql_access import SqlAccess, serialise_transaction


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


def subscription_row(sub: Subscription, source: str, now: datetime) -> dict[str, Any]:
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
            await conn.execute(self._upsert_statement(), [subscription_row(sub, source, now)])

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
            # Replicas starting together replace the set one after the other, not interleaved.
            await serialise_transaction(conn, "config-subscriptions")
            await conn.execute(remove)
            if stored:
                await conn.execute(
                    self._upsert_statement(),
                    [subscription_row(s, SubscriptionSource.CONFIG.value, now) for s in stored.values()],
                )
        return list(stored.values())

    async def count(self) -> int:
        async with self._db.read() as conn:
            n = await conn.scalar(sa.select(sa.func.count()).select_from(subscriptions))
        return int(n or 0)


__all__ = ["SqlSubscriptionRepository", "config_subscription_id", "subscription_row"]
