"""Issue threads in every channel, through the delivery workers, a real SQLite store and the fake
Mattermost over HTTP: the first post about an issue in a channel is the thread root whatever its
kind, later comments reply to it (also in a channel that gets only comments), concurrent first
posts agree on one root, and a deleted root post starts a new thread."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from bot.config import ChannelPostSettings, DeliverySettings
from bot.jira.events import COMMENT_KINDS
from bot.mattermost.client import MattermostClient
from bot.metrics import Metrics
from bot.pipeline.delivery import DeliveryWorker
from bot.pipeline.processor import _thread_role
from bot.store.db import Database
from bot.store.interfaces import NewDelivery
from tests.fakes import FakeMattermost

JIRA = "https://acme.atlassian.net"
NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
POSTS = ChannelPostSettings()
COMMENT = _thread_role(SimpleNamespace(kinds=frozenset(COMMENT_KINDS)), POSTS)  # type: ignore[arg-type]
UPDATE = _thread_role(SimpleNamespace(kinds=frozenset({"event_updated_status"})), POSTS)  # type: ignore[arg-type]


class World:
    def __init__(self, db: Database, mm: FakeMattermost, client: MattermostClient, channel: str) -> None:
        self.db, self.mm, self.client, self.channel = db, mm, client, channel
        self.serial = 0

    def worker(self, owner: str = "w1") -> DeliveryWorker:
        return DeliveryWorker(
            deliveries=self.db.deliveries,
            threads=self.db.threads,
            sink=self.client,
            settings=DeliverySettings(),
            posts=POSTS,
            metrics=Metrics(),
            clock=lambda: NOW,
            owner=owner,
        )

    async def queue(self, role: str, message: str, *, issue: str = "WEB-1", order_key: str = "") -> None:
        self.serial += 1
        payload = {"message": message, "props": {}, "instance_id": JIRA, "issue_key": issue, "thread": role}
        key = order_key or f"{self.channel}|{JIRA}|{issue}"
        await self.db.deliveries.enqueue([NewDelivery(self.channel, key, payload)], now=NOW)

    async def deliver(self, role: str, message: str, **kw: Any) -> dict[str, Any]:
        await self.queue(role, message, **kw)
        assert await self.worker().run_once() == 1
        return self.mm.posts[-1]

    async def root(self, issue: str = "WEB-1") -> str | None:
        return await self.db.threads.get_root(JIRA, self.channel, issue, now=NOW)


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    mm = FakeMattermost()
    channel = mm.add_channel("acme", "comments-only", members=[mm.bot_user_id])
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


def test_comments_thread_and_other_events_stay_at_the_top_level() -> None:
    assert (COMMENT, UPDATE) == ("thread", "root")
    off = ChannelPostSettings(thread_comments_days=0)
    assert _thread_role(SimpleNamespace(kinds=frozenset(COMMENT_KINDS)), off) == ""  # type: ignore[arg-type]


async def test_in_a_channel_of_comments_only_the_first_comment_is_the_root(world: World) -> None:
    first = await world.deliver(COMMENT, "first comment")
    second = await world.deliver(COMMENT, "second comment")
    third = await world.deliver(COMMENT, "third comment")
    assert first["root_id"] == ""
    assert second["root_id"] == first["id"] and third["root_id"] == first["id"]
    assert await world.root() == first["id"]
    other = await world.deliver(COMMENT, "about another issue", issue="WEB-2")
    assert other["root_id"] == ""


async def test_the_first_post_is_the_root_whatever_its_kind(world: World) -> None:
    update = await world.deliver(UPDATE, "status changed")
    comment = await world.deliver(COMMENT, "a comment")
    later_update = await world.deliver(UPDATE, "resolved")
    assert update["root_id"] == "" and comment["root_id"] == update["id"]
    assert later_update["root_id"] == ""  # updates stay visible in the channel
    assert await world.root() == update["id"]


async def test_concurrent_first_posts_agree_on_one_root(world: World) -> None:
    # Two first posts of one issue claimed at once (two replicas, or a lease that ran out).
    await world.queue(COMMENT, "from replica A", order_key="a")
    await world.queue(COMMENT, "from replica B", order_key="b")
    a, b = world.worker("replica-a"), world.worker("replica-b")
    world.mm.set_latency(0.2, "/api/v4/posts")  # both posts are in flight together
    claimed = await asyncio.gather(a.run_once(), b.run_once())
    world.mm.set_latency(0.0, "/api/v4/posts")
    assert sum(claimed) == 2
    tops = [p for p in world.mm.posts if p["root_id"] == ""]
    assert len(tops) == 2  # both were posted before either was recorded
    root = await world.root()
    assert root in {p["id"] for p in tops}
    later = await world.deliver(COMMENT, "later comment")
    assert later["root_id"] == root


async def test_a_deleted_root_post_starts_a_new_thread(world: World) -> None:
    first = await world.deliver(COMMENT, "first comment")
    world.mm.delete_post(first["id"])
    second = await world.deliver(COMMENT, "second comment")
    assert second["root_id"] == "" and second["id"] != first["id"]
    assert await world.root() == second["id"]
    third = await world.deliver(COMMENT, "third comment")
    assert third["root_id"] == second["id"]
