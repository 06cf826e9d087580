"""The webhook inbox: dedupe, leases, atomic completion."""

from __future__ import annotations

import asyncio

import pytest
import sqlalchemy as sa

from bot.store import schema
from bot.store.db import Database
from bot.store.interfaces import InboxCompletion, NewDelivery, NewInboxRow
from tests.store.conftest import T0, at


async def _enqueue(db: Database, key: str | None, *, seconds: float = 0, body: bytes = b"{}") -> int:
    item_id, _ = await db.inbox.enqueue(
        dedupe_key=key,
        route="firehose",
        instance_id="https://acme.atlassian.net",
        params={"team": "eng"},
        body=body,
        now=at(seconds),
    )
    return item_id


def _post(order_key: str, message: str, pending_post_id: str = "") -> NewDelivery:
    return NewDelivery(
        channel_id="chan1", order_key=order_key, payload={"message": message}, pending_post_id=pending_post_id
    )


async def test_enqueue_stores_the_webhook(db: Database) -> None:
    body = b'{"webhookEvent": "jira:issue_created", "x": "\xc3\xa9"}'
    item_id, created = await db.inbox.enqueue(
        dedupe_key="hook-1",
        route="legacy",
        instance_id=None,
        params={"team": "eng", "channel": "town-square", "updated_all": "1"},
        body=body,
        now=T0,
    )
    item = await db.inbox.get(item_id)
    assert created
    assert item is not None
    assert (item.dedupe_key, item.route, item.instance_id, item.status) == (
        "hook-1",
        "legacy",
        None,
        "pending",
    )
    assert item.params == {"team": "eng", "channel": "town-square", "updated_all": "1"}
    assert item.body == body
    assert item.received_at == T0
    assert item.attempts == 0


async def test_a_duplicate_dedupe_key_returns_the_existing_row(db: Database) -> None:
    first, created_first = await db.inbox.enqueue(
        dedupe_key="hook-1", route="firehose", instance_id=None, params={}, body=b"a", now=T0
    )
    again, created_again = await db.inbox.enqueue(
        dedupe_key="hook-1", route="firehose", instance_id=None, params={}, body=b"b", now=at(5)
    )
    assert (created_first, created_again) == (True, False)
    assert again == first
    item = await db.inbox.get(first)
    assert item is not None and item.body == b"a"
    assert (await db.inbox.counts())["pending"] == 1


async def test_rows_without_dedupe_key_are_never_merged(db: Database) -> None:
    ids = {await _enqueue(db, None) for _ in range(3)}
    assert len(ids) == 3


async def test_concurrent_duplicates_store_exactly_one_row(db: Database) -> None:
    results = await asyncio.gather(
        *(
            db.inbox.enqueue(
                dedupe_key="same", route="firehose", instance_id=None, params={}, body=b"x", now=T0
            )
            for _ in range(10)
        )
    )
    assert len({item_id for item_id, _ in results}) == 1
    assert sum(created for _, created in results) == 1
    async with db.engine.connect() as conn:
        assert await conn.scalar(sa.select(sa.func.count()).select_from(schema.webhook_inbox)) == 1


async def test_claim_leases_oldest_first_and_owners_never_share_a_row(db: Database) -> None:
    ids = [await _enqueue(db, f"k{i}", seconds=i) for i in range(5)]
    mine = await db.inbox.claim(limit=3, owner="a", now=at(10), lease_seconds=30)
    theirs = await db.inbox.claim(limit=10, owner="b", now=at(10), lease_seconds=30)
    nothing = await db.inbox.claim(limit=10, owner="c", now=at(20), lease_seconds=30)
    assert [i.id for i in mine] == ids[:3]
    assert [i.id for i in theirs] == ids[3:]
    assert nothing == []
    assert {i.lease_owner for i in mine} == {"a"}
    assert mine[0].lease_until == at(40)
    assert mine[0].attempts == 1


async def test_concurrent_claims_split_the_rows(db: Database) -> None:
    ids = {await _enqueue(db, f"k{i}") for i in range(12)}
    batches = await asyncio.gather(
        *(db.inbox.claim(limit=4, owner=f"w{n}", now=at(1), lease_seconds=30) for n in range(5))
    )
    claimed = [item.id for batch in batches for item in batch]
    assert len(claimed) == len(set(claimed)) == 12
    assert set(claimed) == ids


async def test_an_expired_lease_is_reclaimed(db: Database) -> None:
    item_id = await _enqueue(db, "k")
    [first] = await db.inbox.claim(limit=1, owner="a", now=at(0), lease_seconds=30)
    assert await db.inbox.claim(limit=1, owner="b", now=at(29), lease_seconds=30) == []
    [second] = await db.inbox.claim(limit=1, owner="b", now=at(30), lease_seconds=30)
    assert first.id == second.id == item_id
    assert (second.lease_owner, second.attempts) == ("b", 2)


async def test_complete_inserts_deliveries_and_closes_the_item_together(db: Database) -> None:
    item_id = await _enqueue(db, "k")
    await db.inbox.claim(limit=1, owner="a", now=at(1), lease_seconds=30)
    done = await db.inbox.complete(
        item_id,
        owner="a",
        outcome="2 posts",
        status="done",
        deliveries=[_post("acme/PRJ-1", "one"), _post("acme/PRJ-1", "two", pending_post_id="fixed-id")],
        now=at(2),
    )
    item = await db.inbox.get(item_id)
    posts = await db.deliveries.list_for_inbox(item_id)
    assert done
    assert item is not None
    assert (item.status, item.outcome, item.processed_at, item.lease_owner) == (
        "done",
        "2 posts",
        at(2),
        None,
    )
    assert [p.payload["message"] for p in posts] == ["one", "two"]
    assert posts[1].pending_post_id == "fixed-id"
    assert len(posts[0].pending_post_id) == 32
    assert {(p.status, p.next_attempt_at, p.received_at, p.created_at) for p in posts} == {
        ("pending", at(2), at(0), at(2))
    }


async def test_complete_is_a_no_op_once_the_lease_was_taken_over(db: Database) -> None:
    item_id = await _enqueue(db, "k")
    await db.inbox.claim(limit=1, owner="slow", now=at(0), lease_seconds=30)
    await db.inbox.claim(limit=1, owner="fast", now=at(31), lease_seconds=30)
    late = await db.inbox.complete(
        item_id, owner="slow", outcome="late", status="done", deliveries=[_post("k", "x")], now=at(40)
    )
    item = await db.inbox.get(item_id)
    assert late is False
    assert item is not None and (item.status, item.lease_owner) == ("pending", "fast")
    assert await db.deliveries.list_for_inbox(item_id) == []
    assert await db.inbox.complete(
        item_id, owner="fast", outcome="ok", status="ignored", deliveries=[], now=at(41)
    )


async def test_a_failing_complete_leaves_neither_deliveries_nor_a_closed_item(db: Database) -> None:
    item_id = await _enqueue(db, "k")
    await db.inbox.claim(limit=1, owner="a", now=at(0), lease_seconds=30)
    clashing = [_post("k", "one", pending_post_id="dup"), _post("k", "two", pending_post_id="dup")]
    with pytest.raises(sa.exc.IntegrityError):
        await db.inbox.complete(
            item_id, owner="a", outcome="x", status="done", deliveries=clashing, now=at(1)
        )
    item = await db.inbox.get(item_id)
    assert item is not None and (item.status, item.lease_owner) == ("pending", "a")
    assert await db.deliveries.list_for_inbox(item_id) == []


async def test_complete_refuses_a_non_final_status(db: Database) -> None:
    item_id = await _enqueue(db, "k")
    with pytest.raises(ValueError, match="done, ignored or failed"):
        await db.inbox.complete(item_id, owner="a", outcome="", status="pending", deliveries=[], now=T0)


async def test_release_makes_the_item_claimable_again_at_retry_time(db: Database) -> None:
    item_id = await _enqueue(db, "k")
    await db.inbox.claim(limit=1, owner="a", now=at(0), lease_seconds=30)
    assert await db.inbox.release(item_id, owner="other", error="nope", now=at(1), retry_at=at(2)) is False
    assert await db.inbox.release(item_id, owner="a", error="jira down", now=at(1), retry_at=at(60))
    assert await db.inbox.next_due_at() == at(60)
    assert await db.inbox.claim(limit=1, owner="b", now=at(59), lease_seconds=30) == []
    [again] = await db.inbox.claim(limit=1, owner="b", now=at(60), lease_seconds=30)
    assert (again.id, again.outcome, again.attempts) == (item_id, "jira down", 2)


async def test_next_due_at_accounts_for_leases(db: Database) -> None:
    assert await db.inbox.next_due_at() is None
    await _enqueue(db, "a", seconds=5)
    await db.inbox.claim(limit=1, owner="w", now=at(5), lease_seconds=30)
    assert await db.inbox.next_due_at() == at(35)
    await _enqueue(db, "b", seconds=10)
    assert await db.inbox.next_due_at() == at(10)


async def test_counts_and_purge(db: Database) -> None:
    done_id, ignored_id, _pending = (
        await _enqueue(db, "a"),
        await _enqueue(db, "b"),
        await _enqueue(db, "c"),
    )
    await db.inbox.claim(limit=2, owner="w", now=at(1), lease_seconds=30)
    await db.inbox.complete(done_id, owner="w", outcome="", status="done", deliveries=[], now=at(2))
    await db.inbox.complete(
        ignored_id, owner="w", outcome="no match", status="ignored", deliveries=[], now=at(5)
    )
    assert await db.inbox.counts() == {"pending": 1, "done": 1, "ignored": 1, "failed": 0}
    assert await db.inbox.purge(before=at(3)) == 1
    assert await db.inbox.get(done_id) is None
    assert await db.inbox.counts() == {"pending": 1, "done": 0, "ignored": 1, "failed": 0}


def _row(key: str | None, body: bytes = b"{}", route: str = "firehose") -> NewInboxRow:
    return NewInboxRow(
        dedupe_key=key, route=route, instance_id="https://acme.atlassian.net", params={}, body=body
    )


async def test_enqueue_many_stores_a_batch_in_arrival_order(db: Database) -> None:
    rows = [_row("a", b"1"), _row(None, b"2"), _row("b", b"3"), _row(None, b"4"), _row("c", b"5")]
    results = await db.inbox.enqueue_many(rows, now=T0)
    assert [created for _, created in results] == [True] * 5
    ids = [item_id for item_id, _ in results]
    assert ids == sorted(ids) and len(set(ids)) == 5  # ids, and so processing, follow arrival
    items = await db.inbox.claim(limit=10, owner="o", now=at(1), lease_seconds=30)
    assert [(i.dedupe_key, i.body) for i in items] == [(r.dedupe_key, r.body) for r in rows]
    assert {i.received_at for i in items} == {T0}


async def test_enqueue_many_stores_a_key_once_within_a_batch_and_across_batches(db: Database) -> None:
    first = await db.inbox.enqueue_many([_row("a", b"1"), _row("b", b"2"), _row("a", b"3")], now=T0)
    assert [c for _, c in first] == [True, True, False]
    assert first[2][0] == first[0][0]
    again = await db.inbox.enqueue_many([_row("b", b"4"), _row("d", b"5")], now=at(1))
    assert again[0] == (first[1][0], False)
    assert again[1][1] is True
    item = await db.inbox.get(first[0][0])
    assert item is not None and item.body == b"1"
    assert (await db.inbox.counts())["pending"] == 3


@pytest.mark.parametrize("size", [1, 3, 23, 64, 65, 130])
async def test_enqueue_many_of_any_size(db: Database, size: int) -> None:
    # Sizes around the statement sizes the SQLite path cuts batches into.
    rows = [_row(f"k{i}" if i % 7 else None, body=f'{{"n": {i}}}'.encode()) for i in range(size)]
    results = await db.inbox.enqueue_many(rows, now=T0)
    assert all(created for _, created in results)
    items = await db.inbox.claim(limit=size + 1, owner="o", now=at(1), lease_seconds=30)
    assert [i.body for i in items] == [r.body for r in rows]
    assert [i.id for i in items] == [item_id for item_id, _ in results]


async def test_enqueue_many_at_once_with_shared_keys_stores_each_key_once(db: Database) -> None:
    # As the intake's writer does on PostgreSQL: several batches in flight, a key in two of them.
    batches = [[_row(f"k{b}-{i}") for i in range(20)] + [_row("shared"), _row(None)] for b in range(3)]
    results = await asyncio.gather(*(db.inbox.enqueue_many(rows, now=T0) for rows in batches))
    shared = [result[20] for result in results]
    assert sum(created for _, created in shared) == 1 and len({i for i, _ in shared}) == 1
    assert all(created for result in results for _, created in result[:20] + result[21:])
    assert (await db.inbox.counts())["pending"] == 3 * 21 + 1


async def test_enqueue_many_of_nothing(db: Database) -> None:
    assert await db.inbox.enqueue_many([], now=T0) == []


async def test_complete_many_closes_the_items_still_leased_and_inserts_their_deliveries(db: Database) -> None:
    ids = [await _enqueue(db, f"k{i}") for i in range(3)]
    await db.inbox.claim(limit=3, owner="a", now=at(1), lease_seconds=30)
    # The lease of the last item runs out and another worker takes it.
    await db.inbox.claim(limit=3, owner="b", now=at(40), lease_seconds=30)
    results = await db.inbox.complete_many(
        [
            InboxCompletion(ids[0], outcome="routed", status="done", deliveries=[_post("o1", "one")]),
            InboxCompletion(ids[1], outcome="unrouted", status="ignored"),
        ],
        owner="b",
        now=at(41),
    )
    assert results == [True, True]
    first, second = await db.inbox.get(ids[0]), await db.inbox.get(ids[1])
    assert first is not None and (first.status, first.outcome, first.lease_owner) == ("done", "routed", None)
    assert second is not None and (second.status, second.outcome) == ("ignored", "unrouted")
    assert [d.payload["message"] for d in await db.deliveries.list_for_inbox(ids[0])] == ["one"]
    # The old owner changes nothing any more.
    stale = await db.inbox.complete_many(
        [InboxCompletion(ids[2], outcome="routed", status="done", deliveries=[_post("o3", "three")])],
        owner="a",
        now=at(42),
    )
    assert stale == [False]
    assert await db.deliveries.list_for_inbox(ids[2]) == []
    third = await db.inbox.get(ids[2])
    assert third is not None and third.status == "pending"


async def test_complete_many_refuses_a_non_final_status(db: Database) -> None:
    with pytest.raises(ValueError, match="pending"):
        await db.inbox.complete_many([InboxCompletion(1, outcome="", status="pending")], owner="a", now=T0)


async def test_a_claim_counts_an_attempt_even_if_the_claimer_never_comes_back(db: Database) -> None:
    item_id = await _enqueue(db, "k")
    # Each claimer dies holding the lease (kill -9, a frozen process): its claim still counted.
    for n in range(3):
        [claimed] = await db.inbox.claim(limit=1, owner=f"w{n}", now=at(30 * n), lease_seconds=30)
        assert claimed.attempts == n + 1
    item = await db.inbox.get(item_id)
    assert item is not None and (item.status, item.attempts) == ("pending", 3)


async def test_failed_items_are_listed_and_replayed_with_fresh_attempts(db: Database) -> None:
    failed_a, failed_b, done_id, pending_id = [await _enqueue(db, k) for k in "abcd"]
    await db.inbox.claim(limit=3, owner="w", now=at(1), lease_seconds=30)
    await db.inbox.complete_many(
        [
            InboxCompletion(failed_a, outcome="failed: ValueError: bad", status="failed"),
            InboxCompletion(failed_b, outcome="failed: took too long", status="failed"),
            InboxCompletion(done_id, outcome="routed", status="done"),
        ],
        owner="w",
        now=at(2),
    )
    listed = await db.inbox.list_failed()
    assert [(i.id, i.outcome, i.attempts) for i in listed] == [
        (failed_a, "failed: ValueError: bad", 1),
        (failed_b, "failed: took too long", 1),
    ]
    assert [i.id for i in await db.inbox.list_failed(limit=1)] == [failed_a]

    assert await db.inbox.replay_failed([], at(3)) == 0
    assert await db.inbox.replay_failed([failed_b, done_id, pending_id], at(3)) == 1
    assert [i.id for i in await db.inbox.list_failed()] == [failed_a]
    replayed = await db.inbox.get(failed_b)
    assert replayed is not None
    assert (replayed.status, replayed.attempts, replayed.processed_at) == ("pending", 0, None)
    # Claimable from the replay time on, like a new webhook.
    early = await db.inbox.claim(limit=5, owner="x", now=at(2), lease_seconds=30)
    assert [i.id for i in early] == [pending_id]
    [claimed] = await db.inbox.claim(limit=5, owner="x", now=at(3), lease_seconds=30)
    assert (claimed.id, claimed.attempts) == (failed_b, 1)

    assert await db.inbox.replay_failed(None, at(4)) == 1
    assert await db.inbox.list_failed() == []
    assert await db.inbox.counts() == {"pending": 3, "done": 1, "ignored": 0, "failed": 0}


async def test_give_back_drops_the_lease_and_uncounts_the_claim(db: Database) -> None:
    mine, other = await _enqueue(db, "a"), await _enqueue(db, "b")
    await db.inbox.claim(limit=1, owner="w", now=at(0), lease_seconds=30)
    await db.inbox.claim(limit=1, owner="x", now=at(0), lease_seconds=30)
    assert await db.inbox.give_back([mine, other], owner="w") == 1
    row = await db.inbox.get(mine)
    assert row is not None and (row.status, row.attempts, row.lease_owner, row.lease_until) == (
        "pending",
        0,
        None,
        None,
    )
    held = await db.inbox.get(other)
    assert held is not None and (held.attempts, held.lease_owner) == (1, "x")
    assert await db.inbox.give_back([], owner="w") == 0
    [again] = await db.inbox.claim(limit=5, owner="y", now=at(1), lease_seconds=30)
    assert (again.id, again.attempts) == (mine, 1)
