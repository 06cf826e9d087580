"""Group commit of the webhook inbox: concurrent webhooks share one transaction."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime

import pytest

from bot.pipeline.inbox_writer import InboxWriter
from bot.pipeline.loop import give_way
from bot.store.interfaces import NewInboxRow

T0 = datetime(2024, 5, 1, tzinfo=UTC)


class RecordingInbox:
    """enqueue_many as the store does it (dedupe within and across batches), recording batches."""

    def __init__(self, *, fail: bool = False, delay: float = 0.0) -> None:
        self.batches: list[list[str | None]] = []
        self.ids: dict[str, int] = {}
        self.fail = fail
        self.delay = delay
        self._next = 0

    async def enqueue_many(self, rows: Sequence[NewInboxRow], *, now: datetime) -> list[tuple[int, bool]]:
        self.batches.append([r.dedupe_key for r in rows])
        await asyncio.sleep(self.delay)
        if self.fail:
            raise OSError("disk full")
        results = []
        for row in rows:
            if row.dedupe_key is not None and row.dedupe_key in self.ids:
                results.append((self.ids[row.dedupe_key], False))
                continue
            self._next += 1
            if row.dedupe_key is not None:
                self.ids[row.dedupe_key] = self._next
            results.append((self._next, True))
        return results


def row(key: str | None) -> NewInboxRow:
    return NewInboxRow(dedupe_key=key, route="firehose", instance_id=None, params={}, body=b"{}")


def writer(inbox: RecordingInbox, **kw: float) -> InboxWriter:
    return InboxWriter(inbox, clock=lambda: T0, **kw)  # type: ignore[arg-type]


async def test_concurrent_enqueues_share_one_transaction() -> None:
    inbox = RecordingInbox()
    w = writer(inbox)
    results = await asyncio.gather(*(w.enqueue(row(f"k{i}")) for i in range(10)))
    assert inbox.batches == [[f"k{i}" for i in range(10)]]
    assert results == [(i + 1, True) for i in range(10)]
    assert (w.batches, w.rows, w.queued) == (1, 10, 0)


async def test_a_repeated_delivery_id_in_one_batch_answers_both_once_stored() -> None:
    inbox = RecordingInbox()
    w = writer(inbox)
    first, again = await asyncio.gather(w.enqueue(row("same")), w.enqueue(row("same")))
    assert len(inbox.batches) == 1
    assert first == (1, True) and again == (1, False)


async def test_batches_are_cut_at_max_batch_and_rows_arriving_during_a_commit_form_the_next() -> None:
    inbox = RecordingInbox(delay=0.01)
    w = writer(inbox, max_batch=4)
    first = [asyncio.create_task(w.enqueue(row(f"a{i}"))) for i in range(6)]
    await asyncio.sleep(0.005)  # the first commit is under way
    late = [asyncio.create_task(w.enqueue(row(f"b{i}"))) for i in range(2)]
    await asyncio.gather(*first, *late)
    assert inbox.batches == [["a0", "a1", "a2", "a3"], ["a4", "a5", "b0", "b1"]]


async def test_a_failed_commit_fails_every_request_of_its_batch_only() -> None:
    inbox = RecordingInbox(fail=True)
    w = writer(inbox)
    results = await asyncio.gather(*(w.enqueue(row(f"k{i}")) for i in range(3)), return_exceptions=True)
    assert all(isinstance(r, OSError) for r in results)
    inbox.fail = False
    assert await w.enqueue(row("later")) == (1, True)


async def test_a_cancelled_request_leaves_the_others_of_its_batch_alone() -> None:
    inbox = RecordingInbox(delay=0.01)
    w = writer(inbox)
    gone = asyncio.create_task(w.enqueue(row("gone")))
    kept = asyncio.create_task(w.enqueue(row("kept")))
    await asyncio.sleep(0.005)
    gone.cancel()
    assert await kept == (2, True)
    with pytest.raises(asyncio.CancelledError):
        await gone
    # Its row was committed with the batch: a redelivery is recognised.
    assert await w.enqueue(row("gone")) == (1, False)
    await w.close()


async def test_a_lone_webhook_waits_no_longer_than_max_wait() -> None:
    inbox = RecordingInbox()
    w = writer(inbox, max_wait=0.05)
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await w.enqueue(row("only")) == (1, True)
    assert 0.04 <= loop.time() - started < 1.0


class OverlapInbox(RecordingInbox):
    """RecordingInbox that also records how many batches were being written at once."""

    def __init__(self, *, delay: float) -> None:
        super().__init__(delay=delay)
        self.writing = 0
        self.most_at_once = 0

    async def enqueue_many(self, rows: Sequence[NewInboxRow], *, now: datetime) -> list[tuple[int, bool]]:
        self.writing += 1
        self.most_at_once = max(self.most_at_once, self.writing)
        try:
            return await super().enqueue_many(rows, now=now)
        finally:
            self.writing -= 1


async def test_with_concurrency_batches_are_written_at_once_up_to_the_bound() -> None:
    inbox = OverlapInbox(delay=0.05)
    w = InboxWriter(inbox, clock=lambda: T0, max_batch=2, concurrency=2)  # type: ignore[arg-type]
    results = await asyncio.gather(*(w.enqueue(row(f"k{i}")) for i in range(8)))
    await w.close()
    assert inbox.most_at_once == 2
    # Every row stored once and answered with its own id, whatever order the batches committed in.
    assert sorted(key for batch in inbox.batches for key in batch) == sorted(f"k{i}" for i in range(8))
    assert {inbox.ids[f"k{i}"] for i in range(8)} == {i for i, _ in results}
    assert all(created for _, created in results) and len(set(results)) == 8
    assert (w.batches, w.rows, w.queued) == (4, 8, 0)


async def test_with_concurrency_a_failed_batch_fails_only_its_own_requests() -> None:
    class FailFirst(RecordingInbox):
        async def enqueue_many(self, rows: Sequence[NewInboxRow], *, now: datetime) -> list[tuple[int, bool]]:
            first = not self.batches
            self.batches.append([r.dedupe_key for r in rows])
            await asyncio.sleep(0.01)
            if first:
                raise OSError("disk full")
            self.batches.pop()  # recorded again by the store itself
            return await super().enqueue_many(rows, now=now)

    inbox = FailFirst()
    w = InboxWriter(inbox, clock=lambda: T0, max_batch=2, concurrency=3)  # type: ignore[arg-type]
    results = await asyncio.gather(*(w.enqueue(row(f"k{i}")) for i in range(6)), return_exceptions=True)
    assert [isinstance(r, OSError) for r in results] == [True, True, False, False, False, False]
    assert sorted(r for r in results if not isinstance(r, BaseException)) == [(i, True) for i in range(1, 5)]


def test_max_batch_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_batch"):
        writer(RecordingInbox(), max_batch=0)


async def test_give_way_waits_while_busy_and_no_longer_than_its_bound() -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    await give_way(lambda: False, longest=5)
    assert loop.time() - started < 0.5

    busy_until = loop.time() + 0.05
    await give_way(lambda: loop.time() < busy_until, step=0.005, longest=5)
    assert 0.04 <= loop.time() - started < 1.0

    started = loop.time()
    await give_way(lambda: True, step=0.01, longest=0.05)
    assert 0.04 <= loop.time() - started < 1.0
