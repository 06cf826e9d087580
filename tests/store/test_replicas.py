"""Several replicas on one database: per-issue order of the inbox claim, takeover of the rows of a
replica whose heartbeat stopped, fencing of the one that lost them, release at a clean stop."""

from __future__ import annotations

import asyncio

import sqlalchemy as sa

from bot.store.db import Database
from bot.store.interfaces import NewDelivery, NewInboxRow
from bot.store.migrations import MIGRATIONS, migrate
from bot.store.replicas import LIVENESS_SECONDS
from tests.store.conftest import Backend, at


async def _webhooks(db: Database, *issues: str | None) -> list[int]:
    """Store one webhook per entry, about that issue (None: about none); their ids."""
    rows = [
        NewInboxRow(
            dedupe_key=None,
            route="firehose",
            instance_id="acme",
            params={},
            body=f"{n}".encode(),
            order_key=f"acme|{issue}" if issue else None,
        )
        for n, issue in enumerate(issues)
    ]
    return [i for i, _ in await db.inbox.enqueue_many(rows, now=at(0))]


async def _close(db: Database, item_id: int, owner: str, *, status: str = "done", post: str = "") -> bool:
    deliveries = (
        [NewDelivery(channel_id="chan", order_key="chan|" + post, payload={"m": post})] if post else []
    )
    return await db.inbox.complete(
        item_id, owner=owner, outcome="", status=status, deliveries=deliveries, now=at(1)
    )


async def test_inbox_claim_takes_the_earliest_unfinished_webhook_of_each_issue_only(db: Database) -> None:
    a1, b1, a2, none, a3 = await _webhooks(db, "A", "B", "A", None, "A")

    first = await db.inbox.claim(limit=10, owner="r1", now=at(1), lease_seconds=30)
    assert [i.id for i in first] == [a1, b1, none]
    # Another replica finds A-2 behind A-1, which r1 holds.
    assert await db.inbox.claim(limit=10, owner="r2", now=at(1), lease_seconds=30) == []

    assert await _close(db, a1, "r1")
    assert [i.id for i in await db.inbox.claim(limit=10, owner="r2", now=at(1), lease_seconds=30)] == [a2]
    # A-2 waits for a retry: A-3 waits with it.
    assert await db.inbox.release(a2, owner="r2", error="Jira busy", now=at(1), retry_at=at(20))
    assert await db.inbox.claim(limit=10, owner="r2", now=at(10), lease_seconds=30) == []
    # A dead letter (failed) no longer holds its successors back.
    [again] = await db.inbox.claim(limit=10, owner="r2", now=at(20), lease_seconds=30)
    assert again.id == a2
    assert await _close(db, a2, "r2", status="failed")
    assert [i.id for i in await db.inbox.claim(limit=10, owner="r1", now=at(20), lease_seconds=30)] == [a3]


async def test_deliveries_of_one_issue_follow_acceptance_whichever_replica_processes_them(
    db: Database,
) -> None:
    # Six issues, three webhooks each, interleaved; two replicas claim and close in turn, the
    # second always closing its rows first (as a faster replica would).
    issues = [f"I{n}" for n in range(6)]
    ids = await _webhooks(db, *(issue for _ in range(3) for issue in issues))
    accepted = {i: f"{issues[n % 6]}-{n // 6}" for n, i in enumerate(ids)}
    for _ in range(3):
        one = await db.inbox.claim(limit=3, owner="r1", now=at(1), lease_seconds=30)
        two = await db.inbox.claim(limit=10, owner="r2", now=at(1), lease_seconds=30)
        assert {i.id for i in one}.isdisjoint(i.id for i in two)
        for owner, batch in (("r2", two), ("r1", one)):
            for item in batch:
                assert await _close(db, item.id, owner, post=accepted[item.id].split("-")[0])
    delivered = []
    for n in range(10):
        batch = await db.deliveries.claim_due(limit=100, owner="d", now=at(2 + n), lease_seconds=30)
        for d in batch:
            delivered.append(d)
            assert await db.deliveries.mark_delivered(d.id, owner="d", post_id=f"p{d.id}", now=at(2 + n))
    assert len(delivered) == 18
    for issue in issues:
        inbox_order = [d.inbox_id for d in delivered if d.order_key == f"chan|{issue}"]
        assert inbox_order == sorted(inbox_order), issue


async def test_concurrent_claims_never_take_two_webhooks_of_one_issue(db: Database) -> None:
    ids = await _webhooks(db, *(f"I{n % 5}" for n in range(40)))
    batches = await asyncio.gather(
        *(db.inbox.claim(limit=4, owner=f"r{w}", now=at(1), lease_seconds=30) for w in range(4))
    )
    # The first webhook of each of the five issues, each once.
    assert sorted(i.id for b in batches for i in b) == ids[:5]


async def test_rows_of_a_replica_whose_heartbeat_stopped_are_taken_over_before_their_lease_ends(
    db: Database,
) -> None:
    [item_id] = await _webhooks(db, "A")
    await db.replicas.beat("dead", now=at(0))
    await db.replicas.beat("alive", now=at(0))
    [item] = await db.inbox.claim(limit=1, owner="dead", now=at(0), lease_seconds=60)
    assert await _close(db, item.id, "dead", post="A")
    await db.inbox.enqueue_many(
        [
            NewInboxRow(
                dedupe_key=None,
                route="firehose",
                instance_id="acme",
                params={},
                body=b"x",
                order_key="acme|A",
            )
        ],
        now=at(0),
    )
    [held] = await db.inbox.claim(limit=1, owner="dead", now=at(1), lease_seconds=60)
    [post] = await db.deliveries.claim_due(limit=1, owner="dead", now=at(1), lease_seconds=60)

    # While its heartbeat is fresh, its rows stay its own.
    await db.replicas.beat("alive", now=at(LIVENESS_SECONDS))
    assert await db.inbox.claim(limit=1, owner="alive", now=at(LIVENESS_SECONDS), lease_seconds=60) == []
    assert (
        await db.deliveries.claim_due(limit=1, owner="alive", now=at(LIVENESS_SECONDS), lease_seconds=60)
        == []
    )
    assert await db.replicas.live(now=at(LIVENESS_SECONDS)) == ["alive", "dead"]

    # Its last beat is now older than the liveness timeout: the survivor takes both at once.
    later = at(LIVENESS_SECONDS + 1)
    assert await db.replicas.live(now=later) == ["alive"]
    [taken] = await db.inbox.claim(limit=1, owner="alive", now=later, lease_seconds=60)
    [taken_post] = await db.deliveries.claim_due(limit=1, owner="alive", now=later, lease_seconds=60)
    assert (taken.id, taken_post.id) == (held.id, post.id)
    assert taken_post.pending_post_id == post.pending_post_id

    # The "dead" one was only slow: it changes nothing now (fencing).
    assert not await _close(db, held.id, "dead", post="A")
    assert not await db.deliveries.mark_delivered(post.id, owner="dead", post_id="x", now=later)
    assert await db.deliveries.mark_delivered(post.id, owner="alive", post_id="y", now=later)
    assert (await db.deliveries.get(post.id)).post_id == "y"  # type: ignore[union-attr]
    assert item_id == item.id


async def test_an_owner_without_a_heartbeat_keeps_its_rows_until_the_lease_ends(db: Database) -> None:
    await _webhooks(db, "A")
    await db.replicas.beat("other", now=at(100))
    [held] = await db.inbox.claim(limit=1, owner="tool", now=at(0), lease_seconds=60)
    assert await db.inbox.claim(limit=1, owner="other", now=at(59), lease_seconds=60) == []
    [taken] = await db.inbox.claim(limit=1, owner="other", now=at(60), lease_seconds=60)
    assert taken.id == held.id


async def test_a_clean_stop_releases_every_claim_for_the_others_at_once(db: Database) -> None:
    a1, b1 = await _webhooks(db, "A", "B")
    await db.inbox.claim(limit=1, owner="stopping", now=at(0), lease_seconds=60)
    assert await _close(db, a1, "stopping", post="A")
    await db.inbox.claim(limit=1, owner="stopping", now=at(0), lease_seconds=60)  # B-1
    [post] = await db.deliveries.claim_due(limit=1, owner="stopping", now=at(1), lease_seconds=60)
    await db.replicas.beat("stopping", now=at(0))

    assert await db.inbox.release_held(owner="stopping") == 1
    assert await db.deliveries.release_held(owner="stopping") == 1
    await db.replicas.forget("stopping")

    [item] = await db.inbox.claim(limit=1, owner="peer", now=at(2), lease_seconds=60)
    assert (item.id, item.attempts) == (b1, 1)  # the given-back claim was not counted
    [again] = await db.deliveries.claim_due(limit=1, owner="peer", now=at(2), lease_seconds=60)
    assert again.id == post.id
    assert await db.replicas.live(now=at(2)) == []


async def test_an_older_database_gets_the_order_column_and_the_heartbeats(backend: Backend) -> None:
    db = await backend.open(run_migrations=False)
    try:
        await migrate(db.engine, MIGRATIONS[:4])
        async with db.engine.begin() as conn:
            await conn.execute(sa.text("DROP INDEX ix_webhook_inbox_order_key_status_id"))
            await conn.execute(sa.text("ALTER TABLE webhook_inbox DROP COLUMN order_key"))
        assert await migrate(db.engine) == len(MIGRATIONS) - 4
        a1, a2 = await _webhooks(db, "A", "A")
        [item] = await db.inbox.claim(limit=10, owner="r", now=at(1), lease_seconds=30)
        assert item.id == a1 != a2
        await db.replicas.beat("r", now=at(1))
    finally:
        await db.close()


async def test_an_owner_is_dead_once_its_heartbeat_is_stale_and_never_without_one(db: Database) -> None:
    await db.replicas.beat("r1", now=at(0))
    assert not await db.replicas.is_dead("r1", now=at(LIVENESS_SECONDS - 0.5))
    assert await db.replicas.is_dead("r1", now=at(LIVENESS_SECONDS + 0.5))
    assert not await db.replicas.is_dead("a-tool", now=at(LIVENESS_SECONDS + 0.5))
    await db.replicas.forget("r1")  # a clean stop
    assert not await db.replicas.is_dead("r1", now=at(LIVENESS_SECONDS + 0.5))
