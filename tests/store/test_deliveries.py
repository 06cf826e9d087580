"""Deliveries: per-issue order, leases, retries, dead letters and replay, backlog."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from bot.store.db import Database
from bot.store.interfaces import Delivery, NewDelivery
from tests.store.conftest import at


async def _add(db: Database, *posts: tuple[str, str], seconds: float = 0) -> list[Delivery]:
    """Store one processed webhook producing `posts` ((order_key, message) pairs); return its deliveries."""
    item_id, _ = await db.inbox.enqueue(
        dedupe_key=None, route="firehose", instance_id="acme", params={}, body=b"{}", now=at(seconds)
    )
    await db.inbox.claim(limit=1, owner="intake", now=at(seconds), lease_seconds=30)
    news = [NewDelivery(channel_id="chan", order_key=k, payload={"message": m}) for k, m in posts]
    assert await db.inbox.complete(
        item_id, owner="intake", outcome="", status="done", deliveries=news, now=at(seconds)
    )
    return await db.deliveries.list_for_inbox(item_id)


def _messages(deliveries: Sequence[Delivery]) -> list[str]:
    return [d.payload["message"] for d in deliveries]


async def test_only_the_oldest_pending_delivery_of_an_issue_is_claimable(db: Database) -> None:
    await _add(db, ("PRJ-1", "1a"), ("PRJ-2", "2a"))
    await _add(db, ("PRJ-1", "1b"), ("PRJ-3", "3a"), seconds=1)

    first = await db.deliveries.claim_due(limit=10, owner="w1", now=at(2), lease_seconds=30)
    assert _messages(first) == ["1a", "2a", "3a"]
    # 1b waits while 1a is leased, even for another worker.
    assert await db.deliveries.claim_due(limit=10, owner="w2", now=at(2), lease_seconds=30) == []

    one_a = first[0]
    assert await db.deliveries.mark_delivered(one_a.id, owner="w1", post_id="post-1a", now=at(3))
    [one_b] = await db.deliveries.claim_due(limit=10, owner="w2", now=at(3), lease_seconds=30)
    assert one_b.payload["message"] == "1b"


async def test_a_delivery_in_backoff_holds_back_its_issue_but_not_others(db: Database) -> None:
    [head] = await _add(db, ("PRJ-1", "1a"))
    await _add(db, ("PRJ-1", "1b"), ("PRJ-2", "2a"), seconds=1)

    [claimed, other] = await db.deliveries.claim_due(limit=10, owner="w", now=at(2), lease_seconds=30)
    assert (claimed.id, other.payload["message"]) == (head.id, "2a")
    assert await db.deliveries.reschedule(head.id, owner="w", error="503", next_attempt_at=at(60), now=at(3))

    assert await db.deliveries.claim_due(limit=10, owner="w", now=at(30), lease_seconds=30) == []
    assert await db.deliveries.next_due_at() == at(32)  # 2a's lease ends first; 1b is not "due"
    await db.deliveries.mark_delivered(other.id, owner="w", post_id="p", now=at(4))
    assert await db.deliveries.next_due_at() == at(60)

    [retried] = await db.deliveries.claim_due(limit=10, owner="w", now=at(60), lease_seconds=30)
    assert (retried.id, retried.attempts, retried.last_error) == (head.id, 1, "503")
    assert retried.pending_post_id == head.pending_post_id


async def test_a_dead_delivery_no_longer_holds_back_its_issue(db: Database) -> None:
    [head, _] = await _add(db, ("PRJ-1", "1a"), ("PRJ-1", "1b"))
    await db.deliveries.claim_due(limit=10, owner="w", now=at(1), lease_seconds=30)
    assert await db.deliveries.dead_letter(head.id, owner="w", error="400 bad request", now=at(2))
    [nxt] = await db.deliveries.claim_due(limit=10, owner="w", now=at(2), lease_seconds=30)
    assert nxt.payload["message"] == "1b"


async def test_concurrent_claims_never_share_a_delivery_or_an_issue(db: Database) -> None:
    for n in range(4):
        await _add(db, *((f"PRJ-{i}", f"{i}-{n}") for i in range(6)), seconds=n)
    batches = await asyncio.gather(
        *(db.deliveries.claim_due(limit=3, owner=f"w{w}", now=at(10), lease_seconds=30) for w in range(4))
    )
    claimed = [d for batch in batches for d in batch]
    assert len({d.id for d in claimed}) == len(claimed) == 6
    assert sorted(d.payload["message"] for d in claimed) == [f"{i}-0" for i in range(6)]


async def test_an_expired_delivery_lease_is_reclaimed_and_the_old_owner_loses(db: Database) -> None:
    [d] = await _add(db, ("PRJ-1", "1a"))
    await db.deliveries.claim_due(limit=1, owner="old", now=at(0), lease_seconds=30)
    [again] = await db.deliveries.claim_due(limit=1, owner="new", now=at(30), lease_seconds=30)
    assert again.id == d.id
    assert await db.deliveries.mark_delivered(d.id, owner="old", post_id="x", now=at(31)) is False
    assert (
        await db.deliveries.reschedule(d.id, owner="old", error="e", next_attempt_at=at(99), now=at(31))
        is False
    )
    assert await db.deliveries.dead_letter(d.id, owner="old", error="e", now=at(31)) is False
    assert await db.deliveries.mark_delivered(d.id, owner="new", post_id="post-9", now=at(32))
    stored = await db.deliveries.get(d.id)
    assert stored is not None
    assert (stored.status, stored.post_id, stored.delivered_at, stored.lease_owner) == (
        "delivered",
        "post-9",
        at(32),
        None,
    )


async def test_dead_letters_are_listed_and_replayed_with_the_same_pending_post_id(db: Database) -> None:
    posts = await _add(db, ("PRJ-1", "a"), ("PRJ-2", "b"), ("PRJ-3", "c"))
    await db.deliveries.claim_due(limit=10, owner="w", now=at(1), lease_seconds=30)
    for d in posts:
        await db.deliveries.reschedule(d.id, owner="w", error="timeout", next_attempt_at=at(2), now=at(1))
    await db.deliveries.claim_due(limit=10, owner="w", now=at(2), lease_seconds=30)
    for d in posts:
        await db.deliveries.dead_letter(d.id, owner="w", error="channel archived", now=at(3))

    dead = await db.deliveries.list_dead()
    assert [d.id for d in dead] == [d.id for d in posts]
    assert {(d.status, d.attempts, d.last_error, d.dead_at) for d in dead} == {
        ("dead", 2, "channel archived", at(3))
    }
    assert await db.deliveries.list_dead(limit=1) == dead[:1]

    assert await db.deliveries.replay([posts[0].id], now=at(10)) == 1
    assert await db.deliveries.replay([], now=at(10)) == 0
    [replayed] = await db.deliveries.claim_due(limit=10, owner="w", now=at(10), lease_seconds=30)
    assert (replayed.id, replayed.status, replayed.attempts, replayed.next_attempt_at) == (
        posts[0].id,
        "pending",
        0,
        at(10),
    )
    assert replayed.pending_post_id == posts[0].pending_post_id

    assert await db.deliveries.replay(None, now=at(11)) == 2
    assert await db.deliveries.list_dead() == []
    rest = await db.deliveries.claim_due(limit=10, owner="w", now=at(11), lease_seconds=30)
    assert [d.pending_post_id for d in rest] == [d.pending_post_id for d in posts[1:]]


async def test_backlog_counts_pending_inbox_rows_and_pending_deliveries(db: Database) -> None:
    assert await db.deliveries.backlog() == 0
    posts = await _add(db, ("PRJ-1", "a"), ("PRJ-2", "b"))
    await db.inbox.enqueue(
        dedupe_key="waiting", route="firehose", instance_id=None, params={}, body=b"", now=at(0)
    )
    assert await db.deliveries.backlog() == 3
    await db.deliveries.claim_due(limit=10, owner="w", now=at(1), lease_seconds=30)
    await db.deliveries.mark_delivered(posts[0].id, owner="w", post_id="p", now=at(2))
    await db.deliveries.dead_letter(posts[1].id, owner="w", error="gone", now=at(2))
    assert await db.deliveries.backlog() == 1
    assert await db.deliveries.counts() == {"pending": 0, "delivered": 1, "dead": 1}


async def test_future_deliveries_wait_for_their_time(db: Database) -> None:
    item_id, _ = await db.inbox.enqueue(
        dedupe_key=None, route="firehose", instance_id=None, params={}, body=b"", now=at(0)
    )
    await db.inbox.claim(limit=1, owner="i", now=at(0), lease_seconds=30)
    later = NewDelivery(channel_id="c", order_key="PRJ-1", payload={"message": "m"}, next_attempt_at=at(50))
    await db.inbox.complete(item_id, owner="i", outcome="", status="done", deliveries=[later], now=at(0))
    assert await db.deliveries.next_due_at() == at(50)
    assert await db.deliveries.claim_due(limit=1, owner="w", now=at(49), lease_seconds=30) == []
    assert len(await db.deliveries.claim_due(limit=1, owner="w", now=at(50), lease_seconds=30)) == 1


async def test_purge_removes_old_delivered_rows_only(db: Database) -> None:
    done, dead = await _add(db, ("PRJ-1", "a"), ("PRJ-2", "b"))
    await db.deliveries.claim_due(limit=10, owner="w", now=at(1), lease_seconds=30)
    await db.deliveries.mark_delivered(done.id, owner="w", post_id="p", now=at(2))
    await db.deliveries.dead_letter(dead.id, owner="w", error="x", now=at(2))
    assert await db.deliveries.purge(before=at(2)) == 0
    assert await db.deliveries.purge(before=at(3)) == 1
    assert await db.deliveries.get(done.id) is None
    assert await db.deliveries.get(dead.id) is not None


async def test_mark_delivered_many_records_the_posts_of_leases_still_held(db: Database) -> None:
    deliveries = await _add(db, ("k1", "one"), ("k2", "two"), ("k3", "three"))
    claimed = await db.deliveries.claim_due(limit=3, owner="a", now=at(1), lease_seconds=10)
    assert len(claimed) == 3
    # One lease runs out and passes to another worker.
    [taken] = await db.deliveries.claim_due(limit=1, owner="b", now=at(12), lease_seconds=10)
    others = [d.id for d in claimed if d.id != taken.id]
    results = await db.deliveries.mark_delivered_many(
        [(others[0], "p1"), (taken.id, "p-late"), (others[1], "p2")], owner="a", now=at(13)
    )
    assert results == [True, False, True]
    stored = {d.id: d for d in await db.deliveries.list_for_inbox(deliveries[0].inbox_id or 0)}
    assert (stored[others[0]].status, stored[others[0]].post_id) == ("delivered", "p1")
    assert (stored[others[1]].status, stored[others[1]].post_id) == ("delivered", "p2")
    assert stored[others[1]].delivered_at == at(13) and stored[others[1]].lease_owner is None
    assert (stored[taken.id].status, stored[taken.id].lease_owner) == ("pending", "b")
    assert await db.deliveries.mark_delivered_many([], owner="a", now=at(14)) == []


async def test_a_claim_of_some_kinds_takes_only_those_and_keeps_the_issue_order(db: Database) -> None:
    await db.deliveries.enqueue(
        [
            NewDelivery(channel_id="chan", order_key="PRJ-1", payload={"message": "post"}),
            NewDelivery(channel_id="", order_key="CR-1", payload={"message": "comment"}, kind="gate_comment"),
            NewDelivery(channel_id="", order_key="PRJ-1", payload={"message": "late"}, kind="gate_comment"),
        ],
        now=at(0),
    )
    claimed = await db.deliveries.claim_due(
        limit=10, owner="w1", now=at(1), lease_seconds=30, kinds=("gate_comment",)
    )
    # "late" is of the kind but waits behind its issue's pending post.
    assert _messages(claimed) == ["comment"]
    assert await db.deliveries.claim_due(limit=10, owner="w1", now=at(1), lease_seconds=30, kinds=()) == []
    assert _messages(await db.deliveries.claim_due(limit=10, owner="w2", now=at(1), lease_seconds=30)) == [
        "post"
    ]
