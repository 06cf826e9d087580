"""Single-use nonces claimed in the database, on SQLite and PostgreSQL: the first claim wins,
until the nonce expires or is given back, also between replicas with their own connections."""

from __future__ import annotations

import asyncio
from datetime import datetime

import pytest

from bot.security.signing import ContextSigner, ReplayedContext, derive_key
from bot.store.db import Database
from bot.store.nonces import StoreNonces
from tests.store.conftest import Backend, at


class Clock:
    def __init__(self) -> None:
        self.now = at(0)

    def __call__(self) -> datetime:
        return self.now


async def test_first_claim_wins_until_expiry(db: Database) -> None:
    clock = Clock()
    nonces = StoreNonces(db.kv, clock)
    assert await nonces("n1", at(60)) is True
    assert await nonces("n1", at(120)) is False
    assert await nonces("n2", at(60)) is True  # another nonce is its own
    clock.now = at(59)
    assert await nonces("n1", at(120)) is False
    # Its context is refused for expiry from now on, so the row may be taken again.
    clock.now = at(60)
    assert await nonces("n1", at(120)) is True


async def test_a_released_nonce_can_be_claimed_once_more(db: Database) -> None:
    nonces = StoreNonces(db.kv, Clock())
    assert await nonces("form", at(60)) is True
    await nonces.release("form")
    assert await nonces("form", at(60)) is True
    assert await nonces("form", at(60)) is False
    await nonces.release("never-claimed")  # nothing to give back is fine


async def test_concurrent_claims_have_one_winner(db: Database) -> None:
    nonces = StoreNonces(db.kv, Clock())
    results = await asyncio.gather(*(nonces("race", at(60)) for _ in range(12)))
    assert results.count(True) == 1


async def test_two_replicas_agree_on_one_winner(backend: Backend) -> None:
    """Each replica has its own engine and connections to the same database."""
    first, second = await backend.open(), await backend.open(run_migrations=False)
    try:
        for round_ in range(5):
            nonce = f"replayed-{round_}"
            claims = [StoreNonces(first.kv, Clock()), StoreNonces(second.kv, Clock())]
            results = await asyncio.gather(*(claim(nonce, at(60)) for claim in claims * 3))
            assert results.count(True) == 1, results
    finally:
        await first.close()
        await second.close()


async def test_signed_single_use_state_is_refused_the_second_time(db: Database) -> None:
    signer = ContextSigner(derive_key(b"k" * 32, "interactive-context"))
    nonces = StoreNonces(db.kv, Clock())
    state = signer.dumps({"dialog": "create"}, ttl_seconds=60, now=at(0), user_id="u1", once=True)
    assert await signer.loads_once(state, at(1), nonces, user_id="u1", require_once=True) == {
        "dialog": "create"
    }
    with pytest.raises(ReplayedContext):
        await signer.loads_once(state, at(2), nonces, user_id="u1", require_once=True)
    await signer.release_once(state, nonces)
    assert await signer.loads_once(state, at(3), nonces, user_id="u1") == {"dialog": "create"}
