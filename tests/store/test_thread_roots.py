"""Thread roots under concurrency: of first roots recorded at once (several replicas), one wins
and every caller is told the same; a root whose post was deleted is dropped only while it is
still the one recorded."""

from __future__ import annotations

import asyncio

from bot.store.db import Database
from tests.store.conftest import Backend, at

ACME = "https://acme.atlassian.net"


async def test_concurrent_first_roots_from_two_replicas_agree(backend: Backend, db: Database) -> None:
    other = await backend.open(run_migrations=False)  # a second replica on the same database
    try:
        winners = await asyncio.gather(
            *(
                repo.set_root_if_absent(
                    ACME, "chan", "PRJ-1", root_post_id=post, expires_at=at(100), now=at(0)
                )
                for repo, post in (
                    (db.threads, "a"),
                    (other.threads, "b"),
                    (db.threads, "c"),
                    (other.threads, "d"),
                )
            )
        )
    finally:
        await other.close()
    assert len(set(winners)) == 1 and winners[0] in "abcd"
    assert await db.threads.get_root(ACME, "chan", "PRJ-1", now=at(1)) == winners[0]


async def test_a_deleted_root_is_forgotten_only_while_it_is_the_root(db: Database) -> None:
    threads = db.threads
    await threads.set_root_if_absent(ACME, "chan", "PRJ-1", root_post_id="old", expires_at=at(100), now=at(0))
    assert await threads.forget_root(ACME, "chan", "PRJ-1", root_post_id="other") is False
    assert await threads.get_root(ACME, "chan", "PRJ-1", now=at(1)) == "old"
    assert await threads.forget_root(ACME, "chan", "PRJ-1", root_post_id="old") is True
    assert await threads.get_root(ACME, "chan", "PRJ-1", now=at(1)) is None
    assert await threads.forget_root(ACME, "chan", "PRJ-1", root_post_id="old") is False
    new = await threads.set_root_if_absent(
        ACME, "chan", "PRJ-1", root_post_id="new", expires_at=at(100), now=at(2)
    )
    assert new == "new"
