"""The event processor closes a batch of stored webhooks in one transaction; one webhook that
fails does not hold back the others, and is retried before it is given up."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.config import ChannelPostSettings
from bot.jira.events import IssueEvent
from bot.metrics import Metrics
from bot.pipeline.issue_memory import IssueMemory
from bot.pipeline.processor import EventProcessor
from bot.pipeline.subscriptions import SubscriptionCache
from bot.routing.model import Subscription, SubscriptionFilters
from bot.store.db import Database
from bot.store.interfaces import NewInboxRow

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = json.loads((ROOT / "examples" / "issue-created.json").read_bytes())
JIRA = "https://acme.atlassian.net"
MAX_ATTEMPTS = 5
T0 = datetime(2024, 5, 1, tzinfo=UTC)


def issue(key: str) -> bytes:
    doc = json.loads(json.dumps(EXAMPLE))
    doc["issue"]["key"] = key
    return json.dumps(doc).encode()


class FlakyMemory(IssueMemory):
    """Fails on the issues named in `broken`, as a database error would."""

    broken: set[str]

    async def complete(self, event: IssueEvent, instance_id: str, now: datetime) -> IssueEvent:
        if event.issue.key in self.broken:
            raise OSError("database is locked")
        return await super().complete(event, instance_id, now)


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = await Database.open(f"sqlite:///{tmp_path / 'bot.db'}")
    yield database
    await database.close()


async def test_a_failing_webhook_is_retried_then_failed_while_the_batch_goes_on(db: Database) -> None:
    now = [T0]
    sub = Subscription(
        id="s",
        name="all",
        channel_id="chan",
        instance_id=JIRA,
        filters=SubscriptionFilters(events={"event_created"}, projects={"WEB"}),
    )
    await db.subscriptions.upsert(sub, now=T0)
    memory = FlakyMemory(db.kv)
    memory.broken = {"WEB-2"}
    metrics = Metrics()
    processor = EventProcessor(
        inbox=db.inbox,
        subscriptions=SubscriptionCache(db.subscriptions, db.kv),
        memory=memory,
        settings=ChannelPostSettings(),
        metrics=metrics,
        clock=lambda: now[0],
        owner="me",
        lease_seconds=10,
        max_attempts=MAX_ATTEMPTS,
    )
    rows = [NewInboxRow(f"d{n}", "firehose", JIRA, {}, issue(f"WEB-{n}")) for n in (1, 2, 3)]
    rows.append(NewInboxRow("d4", "firehose", JIRA, {}, b'{"webhookEvent": "jira:issue_updated"}'))
    ids = [item_id for item_id, _ in await db.inbox.enqueue_many(rows, now=T0)]

    assert await processor.run_once() == 4
    statuses = [(await db.inbox.get(i)).status for i in ids]  # type: ignore[union-attr]
    assert statuses == ["done", "pending", "done", "ignored"]
    assert [len(await db.deliveries.list_for_inbox(i)) for i in ids] == [1, 0, 1, 0]
    assert 'jira_chatops_webhooks_total{outcome="ignored"} 1.0' in metrics.render().decode()

    # Still failing: claimed again each time its lease runs out, then closed as failed.
    for _ in range(MAX_ATTEMPTS - 1):
        now[0] += timedelta(seconds=11)
        assert await processor.run_once() == 1
    failed = await db.inbox.get(ids[1])
    assert failed is not None and failed.status == "failed" and "database is locked" in (failed.outcome or "")
    now[0] += timedelta(seconds=11)
    assert await processor.run_once() == 0


async def test_a_webhook_that_recovers_is_posted(db: Database) -> None:
    now = [T0]
    sub = Subscription(
        id="s",
        name="all",
        channel_id="chan",
        instance_id=JIRA,
        filters=SubscriptionFilters(events={"event_created"}, projects={"WEB"}),
    )
    await db.subscriptions.upsert(sub, now=T0)
    memory = FlakyMemory(db.kv)
    memory.broken = {"WEB-7"}
    processor = EventProcessor(
        inbox=db.inbox,
        subscriptions=SubscriptionCache(db.subscriptions, db.kv),
        memory=memory,
        settings=ChannelPostSettings(),
        metrics=Metrics(),
        clock=lambda: now[0],
        owner="me",
        lease_seconds=10,
    )
    [(item_id, _)] = await db.inbox.enqueue_many(
        [NewInboxRow("d7", "firehose", JIRA, {}, issue("WEB-7"))], now=T0
    )
    assert await processor.run_once() == 1
    memory.broken = set()
    now[0] += timedelta(seconds=11)
    assert await processor.run_once() == 1
    item = await db.inbox.get(item_id)
    assert item is not None and item.status == "done"
    assert len(await db.deliveries.list_for_inbox(item_id)) == 1
