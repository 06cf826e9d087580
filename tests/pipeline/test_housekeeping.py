"""Housekeeping with several replicas on one database (SQLite file and PostgreSQL): one of them
purges; when it stops (or dies) another one takes the duty over."""

from __future__ import annotations

from datetime import datetime, timedelta

from bot.pipeline.housekeeping import DUTY, Housekeeping
from bot.store.db import Database
from bot.store.interfaces import InboxStatus, NewDelivery
from tests.store.conftest import Backend, at, backend  # noqa: F401  (the fixture: both engines)


class Clock:
    def __init__(self) -> None:
        self.now = at(0)

    def __call__(self) -> datetime:
        return self.now


async def _old_done_webhook(db: Database, n: int) -> int:
    item_id, _ = await db.inbox.enqueue(
        dedupe_key=f"hook-{n}", route="firehose", instance_id=None, params={}, body=b"{}", now=at(0)
    )
    [claimed] = await db.inbox.claim(limit=1, owner="w", now=at(0), lease_seconds=30)
    delivery = NewDelivery(channel_id="c", order_key=f"k{n}", payload={"message": "m"})
    await db.inbox.complete(
        claimed.id, owner="w", outcome="done", status=InboxStatus.DONE, deliveries=[delivery], now=at(1)
    )
    [post] = await db.deliveries.claim_due(limit=1, owner="w", now=at(1), lease_seconds=30)
    await db.deliveries.mark_delivered(post.id, owner="w", post_id=f"p{n}", now=at(2))
    return item_id


async def test_one_replica_purges_and_another_takes_over(backend: Backend) -> None:  # noqa: F811
    one, two = await backend.open(), await backend.open()
    clock = Clock()
    try:
        old = await _old_done_webhook(one, 1)
        keep = timedelta(days=1)
        a = Housekeeping(one, owner="replica-a", keep=keep, interval_seconds=60, clock=clock)
        b = Housekeeping(two, owner="replica-b", keep=keep, interval_seconds=60, clock=clock)
        clock.now = at(0) + timedelta(days=2)
        first = await a.run_once()
        assert first is not None and (first["webhooks"], first["posts"]) == (1, 1)
        assert await one.inbox.get(old) is None
        # The other replica leaves it alone while the lease lasts.
        assert await b.run_once() is None
        clock.now += timedelta(seconds=60)
        assert await a.run_once() is not None  # renewed at its next round
        assert await b.run_once() is None

        # a dies (no more rounds, no release): once its lease has run out, b purges.
        lease = await two.leases.get(DUTY)
        assert lease is not None and lease.owner == "replica-a"
        clock.now = lease.expires_at + timedelta(seconds=1)
        assert await b.run_once() is not None
        assert await a.run_once() is None

        # A clean stop hands the duty over at once.
        await b.stop()
        assert await a.run_once() is not None
    finally:
        await one.close()
        await two.close()
