"""No poison message: whatever goes wrong while a stored webhook is processed (an error, a hung
look-up, a process that dies on it) uses one of its attempts; after `max_attempts` it is kept as
failed with the reason, and the batch around it goes on."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import bot.pipeline.processor as processor_module
from bot.__main__ import main as cli_main
from bot.config import ChannelPostSettings
from bot.jira.events import IssueEvent
from bot.metrics import Metrics
from bot.pipeline.issue_memory import IssueMemory
from bot.pipeline.processor import EventProcessor
from bot.pipeline.subscriptions import SubscriptionCache
from bot.routing.model import Subscription, SubscriptionFilters
from bot.store.db import Database
from bot.store.interfaces import InboxItem, NewInboxRow

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = json.loads((ROOT / "examples" / "issue-created.json").read_bytes())
JIRA = "https://acme.atlassian.net"
T0 = datetime(2024, 5, 1, tzinfo=UTC)
LEASE = 10.0


def issue(key: str) -> bytes:
    doc = json.loads(json.dumps(EXAMPLE))
    doc["issue"]["key"] = key
    return json.dumps(doc).encode()


class HangingMemory(IssueMemory):
    """Never answers for the issues named in `hung`, as a stuck Jira or database call would."""

    hung: set[str]

    async def complete(self, event: IssueEvent, instance_id: str, now: datetime) -> IssueEvent:
        if event.issue.key in self.hung:
            await asyncio.Event().wait()
        return await super().complete(event, instance_id, now)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "bot.db"


@pytest.fixture
async def db(db_path: Path) -> AsyncIterator[Database]:
    database = await Database.open(f"sqlite:///{db_path}")
    await database.subscriptions.upsert(
        Subscription(
            id="s",
            name="all",
            channel_id="chan",
            instance_id=JIRA,
            filters=SubscriptionFilters(events={"event_created"}, projects={"WEB"}),
        ),
        now=T0,
    )
    yield database
    await database.close()


def make_processor(
    db: Database, now: list[datetime], *, memory: IssueMemory | None = None, **kwargs: Any
) -> tuple[EventProcessor, Metrics]:
    metrics = Metrics()
    processor = EventProcessor(
        inbox=db.inbox,
        subscriptions=SubscriptionCache(db.subscriptions, db.kv),
        memory=memory or IssueMemory(db.kv),
        settings=ChannelPostSettings(),
        metrics=metrics,
        clock=lambda: now[0],
        owner="me",
        **{"lease_seconds": LEASE, **kwargs},
    )
    return processor, metrics


async def enqueue(db: Database, *keys: str) -> list[int]:
    rows = [NewInboxRow(f"d-{k}", "firehose", JIRA, {}, issue(k)) for k in keys]
    return [item_id for item_id, _ in await db.inbox.enqueue_many(rows, now=T0)]


async def item(db: Database, item_id: int) -> InboxItem:
    found = await db.inbox.get(item_id)
    assert found is not None
    return found


async def test_a_hung_item_times_out_counts_an_attempt_and_is_failed_after_max_attempts(db: Database) -> None:
    now = [T0]
    memory = HangingMemory(db.kv)
    memory.hung = {"WEB-2"}
    processor, metrics = make_processor(db, now, memory=memory, max_attempts=2, processing_timeout=0.2)
    ids = await enqueue(db, "WEB-1", "WEB-2", "WEB-3")

    # Without the time budget this would never return.
    assert await asyncio.wait_for(processor.run_once(), 30) == 3
    hung = await item(db, ids[1])
    assert (hung.status, hung.attempts) == ("pending", 1)
    assert "longer than 0.2 s" in (hung.outcome or "")
    assert [(await item(db, i)).status for i in (ids[0], ids[2])] == ["done", "done"]

    # Not claimed again before its retry time.
    assert await processor.run_once() == 0
    now[0] += timedelta(seconds=LEASE + 1)
    assert await asyncio.wait_for(processor.run_once(), 30) == 1
    hung = await item(db, ids[1])
    assert (hung.status, hung.attempts) == ("failed", 2)
    assert "longer than 0.2 s" in (hung.outcome or "")
    assert await db.deliveries.list_for_inbox(ids[1]) == []
    assert [i.id for i in await db.inbox.list_failed()] == [ids[1]]
    assert 'jira_chatops_webhooks_total{outcome="failed"} 1.0' in metrics.render().decode()

    now[0] += timedelta(seconds=LEASE + 1)
    assert await processor.run_once() == 0


async def test_render_failing_every_time_is_failed_after_max_attempts_with_the_reason(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_render(*_args: Any, **_kwargs: Any) -> None:
        raise ValueError("renderer choked on the description")

    monkeypatch.setattr(processor_module, "render_once", broken_render)
    now = [T0]
    processor, _ = make_processor(db, now, max_attempts=3)
    [item_id] = await enqueue(db, "WEB-9")
    for attempt in (1, 2, 3):
        assert await processor.run_once() == 1
        row = await item(db, item_id)
        assert row.attempts == attempt
        assert "ValueError: renderer choked on the description" in (row.outcome or "")
        assert row.status == ("failed" if attempt == 3 else "pending")
        now[0] += timedelta(seconds=LEASE + 1)
    assert await processor.run_once() == 0


async def test_an_item_whose_process_died_each_time_is_failed_without_another_try(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    tried: list[str] = []
    real_render = processor_module.render_once

    def counting_render(event: IssueEvent, *args: Any, **kwargs: Any) -> Any:
        tried.append(event.issue.key)
        return real_render(event, *args, **kwargs)

    monkeypatch.setattr(processor_module, "render_once", counting_render)
    now = [T0]
    [item_id] = await enqueue(db, "WEB-4")
    # Three processes claimed it and were killed (or froze) before closing it: their leases ran out.
    for n in range(3):
        claimed = await db.inbox.claim(limit=1, owner=f"dead-{n}", now=now[0], lease_seconds=LEASE)
        assert [c.id for c in claimed] == [item_id]
        now[0] += timedelta(seconds=LEASE + 1)

    processor, _ = make_processor(db, now, max_attempts=3)
    assert await processor.run_once() == 1
    row = await item(db, item_id)
    assert row.status == "failed"
    assert "not finished in 3 attempts" in (row.outcome or "")
    assert "stopped" in (row.outcome or "")
    assert tried == []


async def test_a_killed_attempt_after_a_recorded_failure_keeps_that_reason(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_render(*_args: Any, **_kwargs: Any) -> None:
        raise ValueError("bad table")

    monkeypatch.setattr(processor_module, "render_once", broken_render)
    now = [T0]
    processor, _ = make_processor(db, now, max_attempts=2)
    [item_id] = await enqueue(db, "WEB-5")
    assert await processor.run_once() == 1
    now[0] += timedelta(seconds=LEASE + 1)
    # The second attempt dies with its process.
    assert len(await db.inbox.claim(limit=1, owner="dead", now=now[0], lease_seconds=LEASE)) == 1
    now[0] += timedelta(seconds=LEASE + 1)
    assert await processor.run_once() == 1
    row = await item(db, item_id)
    assert row.status == "failed"
    assert "not finished in 2 attempts; last error: ValueError: bad table" in (row.outcome or "")


async def test_the_loop_runs_between_the_items_of_a_batch(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    ticks = 0
    seen: list[int] = []

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    real_decode = processor_module.decode

    def watching_decode(inbox_item: InboxItem) -> IssueEvent | None:
        seen.append(ticks)
        return real_decode(inbox_item)

    monkeypatch.setattr(processor_module, "decode", watching_decode)
    # Unpostable webhooks: processing them awaits nothing, so only the processor can give way.
    rows = [NewInboxRow(f"u{n}", "firehose", JIRA, {}, b"{}") for n in range(10)]
    await db.inbox.enqueue_many(rows, now=T0)
    processor, _ = make_processor(db, [T0])
    task = asyncio.create_task(ticker())
    try:
        assert await processor.run_once() == 10
    finally:
        task.cancel()
    assert len(seen) == 10
    assert all(b > a for a, b in itertools.pairwise(seen)), seen


async def test_dead_letters_lists_failed_webhooks_with_the_reason_and_replays_them(
    db: Database,
    db_path: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    def broken_render(*_args: Any, **_kwargs: Any) -> None:
        raise ValueError("renderer choked")

    monkeypatch.setattr(processor_module, "render_once", broken_render)
    now = [T0]
    processor, _ = make_processor(db, now, max_attempts=1)
    [item_id] = await enqueue(db, "WEB-11")
    assert await processor.run_once() == 1

    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{db_path}")
    monkeypatch.setenv("JIRA_WEBHOOK_SECRET", "s")
    assert await asyncio.to_thread(cli_main, ["dead-letters"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert lines == [
        {
            "kind": "webhook",
            "id": item_id,
            "issue_key": "WEB-11",
            "received_at": T0.isoformat(),
            "attempts": 1,
            "error": "ValueError: renderer choked",
        }
    ]

    assert await asyncio.to_thread(cli_main, ["dead-letters", "--replay-webhooks", str(item_id)]) == 0
    assert "1 failed webhook(s) queued" in capsys.readouterr().out
    row = await item(db, item_id)
    assert (row.status, row.attempts) == ("pending", 0)

    # Fixed meanwhile: processed again, it is posted.
    monkeypatch.undo()
    now[0] = datetime.now(UTC) + timedelta(seconds=1)  # the command replays it as of the real time
    assert await processor.run_once() == 1
    assert (await item(db, item_id)).status == "done"
    assert len(await db.deliveries.list_for_inbox(item_id)) == 1


async def test_a_slow_item_makes_the_batch_give_back_the_items_it_has_not_started(db: Database) -> None:
    now = [T0]
    memory = HangingMemory(db.kv)
    memory.hung = {"WEB-1"}
    # A lease of 1 s: items are started during its first half, each may take 0.8 s at most.
    processor, _ = make_processor(db, now, memory=memory, processing_timeout=30, lease_seconds=1.0)
    ids = await enqueue(db, "WEB-1", "WEB-2", "WEB-3")

    assert await asyncio.wait_for(processor.run_once(), 30) == 1
    slow = await item(db, ids[0])
    assert (slow.status, slow.attempts) == ("pending", 1)
    assert "longer than 0.8 s" in (slow.outcome or "")
    for untouched in ids[1:]:
        row = await item(db, untouched)
        # Not worked on, so no attempt used, and free for any worker at once.
        assert (row.status, row.attempts, row.lease_owner) == ("pending", 0, None)

    assert await processor.run_once() == 2
    assert [(await item(db, i)).status for i in ids] == ["pending", "done", "done"]
