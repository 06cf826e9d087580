"""Issue thread roots (first wins, expiry) and the key-value table (expiry, one-time take)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from bot.store.db import Database
from bot.store.interfaces import NewThreadRoot
from tests.store.conftest import T0, at

ACME = "https://acme.atlassian.net"


async def test_first_root_wins_until_it_expires(db: Database) -> None:
    threads = db.threads
    assert await threads.get_root(ACME, "chan", "PRJ-1", now=at(0)) is None
    first = await threads.set_root_if_absent(
        ACME, "chan", "PRJ-1", root_post_id="p1", expires_at=at(100), now=at(0)
    )
    second = await threads.set_root_if_absent(
        ACME, "chan", "PRJ-1", root_post_id="p2", expires_at=at(200), now=at(50)
    )
    assert (first, second) == ("p1", "p1")
    assert await threads.get_root(ACME, "chan", "PRJ-1", now=at(99)) == "p1"
    # Other channels and issues have their own roots.
    assert await threads.get_root(ACME, "other", "PRJ-1", now=at(0)) is None
    assert await threads.get_root(ACME, "chan", "PRJ-2", now=at(0)) is None

    assert await threads.get_root(ACME, "chan", "PRJ-1", now=at(100)) is None
    replaced = await threads.set_root_if_absent(
        ACME, "chan", "PRJ-1", root_post_id="p3", expires_at=at(300), now=at(100)
    )
    assert replaced == "p3"
    assert await threads.get_root(ACME, "chan", "PRJ-1", now=at(299)) == "p3"


async def test_concurrent_roots_agree_on_one(db: Database) -> None:
    roots = await asyncio.gather(
        *(
            db.threads.set_root_if_absent(
                ACME, "chan", "PRJ-9", root_post_id=f"p{n}", expires_at=at(60), now=at(0)
            )
            for n in range(8)
        )
    )
    assert len(set(roots)) == 1
    assert await db.threads.get_root(ACME, "chan", "PRJ-9", now=at(1)) == roots[0]


async def test_purge_expired_threads(db: Database) -> None:
    await db.threads.set_root_if_absent(ACME, "c", "PRJ-1", root_post_id="a", expires_at=at(10), now=at(0))
    await db.threads.set_root_if_absent(ACME, "c", "PRJ-2", root_post_id="b", expires_at=at(20), now=at(0))
    assert await db.threads.purge_expired(now=at(10)) == 1
    assert await db.threads.get_root(ACME, "c", "PRJ-2", now=at(10)) == "b"


async def test_kv_put_get_overwrite_delete(db: Database) -> None:
    await db.kv.put("settings", {"a": [1, 2], "b": None})
    assert await db.kv.get("settings", now=at(0)) == {"a": [1, 2], "b": None}
    await db.kv.put("settings", "replaced", expires_at=at(5))
    assert await db.kv.get("settings", now=at(4)) == "replaced"
    assert await db.kv.get("settings", now=at(5)) is None
    assert await db.kv.delete("settings") is True
    assert await db.kv.delete("settings") is False
    assert await db.kv.get("missing", now=at(0)) is None


async def test_kv_put_many_writes_new_and_replaces_existing_keys(db: Database) -> None:
    await db.kv.put("a", "old")
    await db.kv.put_many([("a", {"v": 1}, None), ("b", [2], at(5)), ("c", None, None)])
    assert await db.kv.get("a", now=at(0)) == {"v": 1}
    assert await db.kv.get("b", now=at(0)) == [2]
    assert await db.kv.get("b", now=at(6)) is None  # its expiry was written too
    await db.kv.put_many([])


async def test_kv_take_is_one_time_even_when_concurrent(db: Database) -> None:
    await db.kv.put("oauth-state:abc", {"user": "u1"}, expires_at=at(600))
    taken = await asyncio.gather(*(db.kv.take("oauth-state:abc", now=at(1)) for _ in range(6)))
    assert [t for t in taken if t is not None] == [{"user": "u1"}]
    assert await db.kv.get("oauth-state:abc", now=at(1)) is None


async def test_kv_take_refuses_and_removes_an_expired_value(db: Database) -> None:
    await db.kv.put("oauth-state:old", {"user": "u1"}, expires_at=at(600))
    assert await db.kv.take("oauth-state:old", now=at(600)) is None
    await db.kv.put("oauth-state:old", {"user": "u2"}, expires_at=None)
    assert await db.kv.take("oauth-state:old", now=at(10_000)) == {"user": "u2"}


async def test_kv_add_only_stores_when_absent_or_expired(db: Database) -> None:
    assert await db.kv.add("stamp", 1, expires_at=at(10), now=at(0)) is True
    assert await db.kv.add("stamp", 2, expires_at=at(20), now=at(5)) is False
    assert await db.kv.get("stamp", now=at(5)) == 1
    assert await db.kv.add("stamp", 3, expires_at=at(30), now=at(10)) is True
    assert await db.kv.get("stamp", now=at(10)) == 3
    await db.kv.put("forever", "x")
    assert await db.kv.add("forever", "y", now=at(10_000)) is False


async def test_kv_purge_expired(db: Database) -> None:
    await db.kv.put("a", 1, expires_at=at(1))
    await db.kv.put("b", 2)
    assert await db.kv.purge_expired(now=at(1)) == 1
    assert await db.kv.get("b", now=at(1)) == 2


async def test_set_roots_if_absent_records_several_roots_first_of_a_key_winning(db: Database) -> None:
    later = T0 + timedelta(days=30)
    await db.threads.set_root_if_absent("i", "c1", "A-1", root_post_id="old", expires_at=later, now=T0)
    await db.threads.set_roots_if_absent(
        [
            NewThreadRoot("i", "c1", "A-1", "ignored-live-root-exists", later),
            NewThreadRoot("i", "c1", "A-2", "first", later),
            NewThreadRoot("i", "c1", "A-2", "second", later),
            NewThreadRoot("i", "c2", "A-2", "other-channel", later),
        ],
        now=T0,
    )
    assert await db.threads.get_root("i", "c1", "A-1", now=T0) == "old"
    assert await db.threads.get_root("i", "c1", "A-2", now=T0) == "first"
    assert await db.threads.get_root("i", "c2", "A-2", now=T0) == "other-channel"
    await db.threads.set_roots_if_absent([], now=T0)
