"""Duty leases: one holder at a time, renewal, takeover after expiry, fencing, release."""

from __future__ import annotations

import asyncio

from bot.store.db import Database
from bot.store.leases import Duty
from bot.store.replicas import LIVENESS_SECONDS
from tests.store.conftest import Backend, at


async def test_one_holder_until_it_expires_then_a_takeover_with_a_new_token(db: Database) -> None:
    leases = db.leases
    first = await leases.try_acquire("gate-poller", owner="a", ttl_seconds=10, now=at(0))
    assert first is not None
    assert await leases.try_acquire("gate-poller", owner="b", ttl_seconds=10, now=at(5)) is None
    # The holder extends its own lease; the token stays.
    assert await leases.try_acquire("gate-poller", owner="a", ttl_seconds=10, now=at(8)) == first
    assert await leases.try_acquire("gate-poller", owner="b", ttl_seconds=10, now=at(17)) is None
    taken = await leases.try_acquire("gate-poller", owner="b", ttl_seconds=10, now=at(18))
    assert taken == first + 1
    held = await leases.get("gate-poller")
    assert held is not None and (held.owner, held.expires_at) == ("b", at(28))
    # The old holder is fenced off: it renews and releases nothing.
    assert await leases.renew("gate-poller", owner="a", ttl_seconds=10, now=at(19)) is False
    assert await leases.release("gate-poller", owner="a") is False
    assert await leases.renew("gate-poller", owner="b", ttl_seconds=10, now=at(19)) is True
    # Other names are other leases.
    assert await leases.try_acquire("housekeeping", owner="a", ttl_seconds=10, now=at(19)) is not None


async def test_release_lets_another_owner_take_it_at_once(db: Database) -> None:
    leases = db.leases
    assert await leases.try_acquire("duty", owner="a", ttl_seconds=60, now=at(0)) is not None
    assert await leases.release("duty", owner="a") is True
    assert await leases.try_acquire("duty", owner="b", ttl_seconds=60, now=at(1)) is not None


async def test_concurrent_claims_from_two_databases_leave_exactly_one_holder(backend: Backend) -> None:
    # Two engines on one database, as two replicas have.
    one, two = await backend.open(), await backend.open()
    try:
        for round_ in range(5):
            name = f"race-{round_}"
            tokens = await asyncio.gather(
                *(
                    db.leases.try_acquire(name, owner=f"owner-{i}", ttl_seconds=30, now=at(0))
                    for i, db in enumerate([one, two, one, two, one, two])
                )
            )
            assert sum(t is not None for t in tokens) == 1, tokens
    finally:
        await one.close()
        await two.close()


async def test_purge_expired_leases(db: Database) -> None:
    await db.leases.try_acquire("old", owner="a", ttl_seconds=10, now=at(0))
    await db.leases.try_acquire("live", owner="a", ttl_seconds=100, now=at(0))
    assert await db.leases.purge_expired(before=at(50)) == 1
    assert await db.leases.get("old") is None
    assert await db.leases.get("live") is not None


async def test_duty_hold_takes_keeps_and_releases(db: Database) -> None:
    now = [at(0)]
    a = Duty(db.leases, "housekeeping", owner="a", ttl_seconds=10, clock=lambda: now[0])
    b = Duty(db.leases, "housekeeping", owner="b", ttl_seconds=10, clock=lambda: now[0])
    assert await a.hold() and a.held
    assert not await b.hold()
    now[0] = at(9)
    assert await a.hold()  # renewed to at(19)
    now[0] = at(15)
    assert not await b.hold()
    await a.release()
    assert not a.held
    assert await b.hold()
    now[0] = at(40)  # b stopped renewing (it died): a takes over
    assert await a.hold()
    assert not await b.hold()


async def test_a_lease_whose_holder_has_a_stale_heartbeat_is_taken_at_once_and_fenced(db: Database) -> None:
    leases = db.leases
    await db.replicas.beat("dead", now=at(0))
    await db.replicas.beat("alive", now=at(0))
    first = await leases.try_acquire("gate-poller", owner="dead", ttl_seconds=60, now=at(0))
    assert first is not None

    # While the holder's heartbeat is fresh its lease is its own, though it is far from expiry.
    await db.replicas.beat("alive", now=at(LIVENESS_SECONDS))
    assert (
        await leases.try_acquire("gate-poller", owner="alive", ttl_seconds=60, now=at(LIVENESS_SECONDS))
        is None
    )

    # Its last beat is older than the liveness timeout: taken at once, 54 s before the lease ends.
    later = at(LIVENESS_SECONDS + 1)
    await db.replicas.beat("alive", now=later)
    taken = await leases.try_acquire("gate-poller", owner="alive", ttl_seconds=60, now=later)
    assert taken == first + 1
    held = await leases.get("gate-poller")
    assert held is not None and held.owner == "alive"

    # The "dead" holder was only slow: it renews, releases and retakes nothing (fencing).
    await db.replicas.beat("dead", now=later)
    assert await leases.renew("gate-poller", owner="dead", ttl_seconds=60, now=later) is False
    assert await leases.release("gate-poller", owner="dead") is False
    assert await leases.try_acquire("gate-poller", owner="dead", ttl_seconds=60, now=later) is None
    slow = Duty(db.leases, "gate-poller", owner="dead", ttl_seconds=60, clock=lambda: later)
    slow.token = first  # what it believed it held
    assert not await slow.hold() and not slow.held
    held = await leases.get("gate-poller")
    assert held is not None and (held.owner, held.token) == ("alive", taken)


async def test_a_holder_without_a_heartbeat_keeps_its_lease_until_it_expires(db: Database) -> None:
    await db.replicas.beat("alive", now=at(100))
    assert await db.leases.try_acquire("duty", owner="tool", ttl_seconds=200, now=at(0)) is not None
    assert await db.leases.try_acquire("duty", owner="alive", ttl_seconds=60, now=at(100)) is None
    assert await db.leases.try_acquire("duty", owner="alive", ttl_seconds=60, now=at(200)) is not None
