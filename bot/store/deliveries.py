"""Deliveries in SQL: posts waiting for Mattermost, in order per issue, with dead letters."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Row

from bot.store.interfaces import Delivery, DeliveryStatus, InboxStatus, NewDelivery
from bot.store.replicas import claimable
from bot.store.schema import PENDING, webhook_inbox
from bot.store.schema import deliveries as delivery_table
from bot.store.sql_access import SqlAccess, picked, ready_at, status_counts


def new_delivery_row(
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
        self,
        *,
        limit: int,
        owner: str,
        now: datetime,
        lease_seconds: float,
        kinds: Collection[str] | None = None,
    ) -> list[Delivery]:
        if limit <= 0 or (kinds is not None and not kinds):
            return []
        t = delivery_table
        candidate = t.alias("candidate")
        # Only the head of each order_key is eligible: a later post for the same issue waits while an
        # earlier one is pending, leased (by any replica) or backing off, so the channel sees the
        # issue's events in order. A dead-lettered post no longer holds its successors back: they
        # go on, and the dead one goes out late if it is replayed. Ids are the sequence: the inbox
        # claim (bot.store.inbox) commits one issue's deliveries one webhook after another, in
        # the order the webhooks were accepted. Rows of a replica whose heartbeat stopped are
        # taken over (bot.store.replicas).
        # Walks the partial index of pending rows in (due time, id) order (`ix_deliveries_pending_due`,
        # hence the literal status) and stops at the LIMIT, however long the backlog.
        ids = (
            sa.select(candidate.c.id)
            .where(
                candidate.c.status == PENDING,
                candidate.c.next_attempt_at <= now,
                claimable(candidate, now),
                ~_has_older_pending(candidate),
                *([candidate.c.kind.in_(sorted(kinds))] if kinds is not None else []),
            )
            .order_by(candidate.c.next_attempt_at, candidate.c.id)
            .limit(limit)
            .with_for_update(skip_locked=True, of=candidate)
        )
        stmt = (
            sa.update(t)
            .where(picked(t.c.id, ids, self._db.dialect))
            .values(lease_owner=owner, lease_until=now + timedelta(seconds=lease_seconds))
            .returning(*t.c)
        )
        async with self._db.write() as conn:
            rows = (await conn.execute(stmt)).all()
        return sorted((_delivery(r) for r in rows), key=lambda d: (d.next_attempt_at, d.id))

    async def enqueue(self, deliveries: Sequence[NewDelivery], *, now: datetime) -> list[int | None]:
        if not deliveries:
            return []
        t = delivery_table
        insert = self._db.insert(t)
        # The unique pending_post_id is the idempotency key: a second enqueue of it is a no-op.
        stmt = insert.on_conflict_do_nothing(index_elements=[t.c.pending_post_id]).returning(t.c.id)
        ids: list[int | None] = []
        async with self._db.write() as conn:
            for d in deliveries:
                row = new_delivery_row(d, inbox_id=None, received_at=now, now=now)
                ids.append((await conn.execute(stmt.values(**row))).scalar())
        return ids

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
        # One statement shape whatever the batch size (see bot.store.inbox, complete_many).
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
        self,
        delivery_id: int,
        *,
        owner: str,
        error: str,
        next_attempt_at: datetime,
        now: datetime,
        counted: bool = True,
    ) -> bool:
        # counted=False: a wait for a target that is down as a whole, not an attempt of this
        # delivery's own; a long outage must not dead-letter it soon after.
        values: dict[str, Any] = {"last_error": error, "next_attempt_at": next_attempt_at}
        if counted:
            values["attempts"] = delivery_table.c.attempts + 1
        return await self._finish(delivery_id, owner, values)

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

    async def release_held(self, *, owner: str) -> int:
        """At a clean stop: drop the leases `owner` holds, for another replica to take the posts
        at once (with their pending_post_id, so one that did reach Mattermost is not doubled)."""
        t = delivery_table
        stmt = (
            sa.update(t)
            .where(t.c.lease_owner == owner, t.c.status == DeliveryStatus.PENDING.value)
            .values(lease_owner=None, lease_until=None)
            .returning(t.c.id)
        )
        async with self._db.write() as conn:
            return len((await conn.execute(stmt)).all())

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
        return status_counts(rows, [s.value for s in DeliveryStatus])

    async def next_due_at(self) -> datetime | None:
        t = delivery_table
        head = t.alias("head")
        # Only heads of their order_key: a later delivery waiting behind one in backoff is not "due".
        stmt = sa.select(sa.func.min(ready_at(head, head.c.next_attempt_at))).where(
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


__all__ = ["SqlDeliveryRepository", "new_delivery_row"]
