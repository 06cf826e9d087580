"""Outages do not use up a delivery's attempts: waits caused by the target being down as a whole
(its circuit breaker open, or opened by the failure) are rescheduled without counting, so a post
that waited out an outage longer than `delivery.max_attempts` is delivered once the target is back
and is not dead-lettered by the next blip; a failure while the target is up still counts.

Against the fake Mattermost over HTTP, a real SQLite store and the process's breaker."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bot.breaker import BreakerPolicy
from bot.breakers import MATTERMOST, Breaker
from bot.config import ChannelPostSettings, DeliverySettings
from bot.mattermost.client import MattermostClient
from bot.metrics import Metrics
from bot.pipeline.delivery import DeliveryWorker
from bot.store.db import Database
from bot.store.interfaces import DeliveryStatus, NewDelivery
from tests.fakes import FakeMattermost
from tests.pipeline.delivery_runs import run_until_settled

JIRA = "https://acme.atlassian.net"
MAX_ATTEMPTS = 4
OUTAGE_FAILURES = 3 * MAX_ATTEMPTS
# Short breaker pauses, so the outage's many probes take a second or two.
FAST = BreakerPolicy(failure_threshold=3, min_open_seconds=0.05, max_open_seconds=0.1)


def now() -> datetime:
    return datetime.now(UTC)


class World:
    def __init__(self, db: Database, mm: FakeMattermost, client: MattermostClient, channel: str) -> None:
        self.db, self.mm, self.client, self.channel = db, mm, client, channel
        self.breaker = Breaker(MATTERMOST, clock=now, policy=FAST)
        client.breaker = self.breaker
        settings = DeliverySettings(
            max_attempts=MAX_ATTEMPTS, backoff_base_seconds=0.05, backoff_max_seconds=0.1
        )
        self.worker = DeliveryWorker(
            deliveries=db.deliveries,
            threads=db.threads,
            sink=client,
            settings=settings,
            posts=ChannelPostSettings(),
            metrics=Metrics(),
            clock=now,
            owner="w1",
        )
        self.worker.breaker = self.breaker

    async def queue(self, message: str, *, issue: str = "WEB-1") -> int:
        payload = {"message": message, "props": {}, "instance_id": JIRA, "issue_key": issue}
        [delivery_id] = await self.db.deliveries.enqueue(
            [NewDelivery(self.channel, f"{self.channel}|{JIRA}|{issue}", payload)], now=now()
        )
        assert delivery_id is not None
        return delivery_id

    async def run_until_settled(self, delivery_id: int) -> None:
        await run_until_settled(self.worker, self.db.deliveries, delivery_id)

    def failed_posts(self) -> int:
        return sum(1 for r in self.mm.requests_to("/api/v4/posts", "POST") if r.status >= 500)


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    mm = FakeMattermost()
    channel = mm.add_channel("acme", "alerts", members=[mm.bot_user_id])
    await mm.start()
    db = await Database.open(f"sqlite:///{tmp_path / 'bot.db'}")
    client = MattermostClient(mm.url, mm.token)
    await client.start()
    try:
        yield World(db, mm, client, channel)
    finally:
        await client.close()
        await db.close()
        await mm.stop()


async def test_a_post_that_waited_out_a_long_outage_is_delivered_and_its_attempts_stay_low(
    world: World,
) -> None:
    world.mm.fail_next(OUTAGE_FAILURES, 503, path="/api/v4/posts", method="POST")
    delivery_id = await world.queue("WEB-1 moved to Done")
    await world.run_until_settled(delivery_id)

    d = await world.db.deliveries.get(delivery_id)
    assert d is not None and d.status == DeliveryStatus.DELIVERED.value, d
    assert world.failed_posts() == OUTAGE_FAILURES > MAX_ATTEMPTS
    # Only the failures before the breaker opened counted (fewer than its threshold).
    assert d.attempts < FAST.failure_threshold, d.attempts
    assert [p["message"] for p in world.mm.posts] == ["WEB-1 moved to Done"]


async def test_after_a_long_outage_one_more_blip_does_not_dead_letter_a_post_that_waited(
    world: World,
) -> None:
    """Two posts (two issues) wait out the outage; the probe that finds Mattermost back delivers
    one, then a single 503 hits the other: counted, but the outage did not use up its attempts."""
    world.mm.fail_next(OUTAGE_FAILURES, 503, path="/api/v4/posts", method="POST")
    first = await world.queue("WEB-1 moved", issue="WEB-1")
    second = await world.queue("WEB-2 moved", issue="WEB-2")
    deadline = asyncio.get_running_loop().time() + 30
    blipped = False
    while len(world.mm.posts) < 2 and asyncio.get_running_loop().time() < deadline:
        await world.worker.run_once()
        if len(world.mm.posts) == 1 and not blipped:
            world.mm.fail_next(1, 503, path="/api/v4/posts", method="POST")
            blipped = True
        if (await world.db.deliveries.counts())[DeliveryStatus.DEAD.value]:
            break
        await asyncio.sleep(0.02)
    assert blipped and world.failed_posts() == OUTAGE_FAILURES + 1
    done = [await world.db.deliveries.get(i) for i in (first, second)]
    assert [d.status for d in done if d is not None] == [DeliveryStatus.DELIVERED.value] * 2, done
    assert sorted(p["message"] for p in world.mm.posts) == ["WEB-1 moved", "WEB-2 moved"]
    assert max(d.attempts for d in done if d is not None) < MAX_ATTEMPTS


async def test_failures_the_breaker_does_not_take_for_an_outage_count_and_dead_letter(
    world: World,
) -> None:
    # A breaker that needs more failures in a row than the post has attempts: for it Mattermost is
    # up all along, so each 503 is this post's own, counted, and the last one dead-letters it.
    world.breaker = Breaker(MATTERMOST, clock=now, policy=BreakerPolicy(failure_threshold=MAX_ATTEMPTS + 1))
    world.client.breaker = world.worker.breaker = world.breaker
    world.mm.fail_next(MAX_ATTEMPTS, 503, path="/api/v4/posts", method="POST")
    delivery_id = await world.queue("refused each time")
    await world.run_until_settled(delivery_id)
    d = await world.db.deliveries.get(delivery_id)
    assert d is not None and d.status == DeliveryStatus.DEAD.value, d
    assert d.attempts == MAX_ATTEMPTS == world.failed_posts()
    assert world.mm.posts == []
