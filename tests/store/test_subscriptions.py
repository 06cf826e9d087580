"""Subscriptions: CRUD, JSON filters round trip, config-declared subscriptions replaced as a set."""

from __future__ import annotations

import asyncio

import pytest

from bot.routing.model import FieldFilter, Inclusion, Subscription, SubscriptionFilters
from bot.store.db import Database
from bot.store.subscriptions import config_subscription_id
from tests.store.conftest import Backend, at

ACME = "https://acme.atlassian.net"


def _sub(sub_id: str, name: str, channel: str = "chan-a", **filters: object) -> Subscription:
    return Subscription(
        id=sub_id,
        name=name,
        channel_id=channel,
        instance_id=ACME,
        filters=SubscriptionFilters.model_validate(filters),
        created_by="user-1",
    )


async def test_upsert_get_and_filters_round_trip(db: Database) -> None:
    sub = Subscription(
        id="s1",
        name="Critical bugs",
        channel_id="chan-a",
        instance_id=ACME,
        filters=SubscriptionFilters(
            events=frozenset({"event_created", "event_updated_status"}),
            projects=frozenset({"PRJ"}),
            issue_types=frozenset({"10004"}),
            fields=(
                FieldFilter(key="priority", inclusion=Inclusion.INCLUDE_ANY, values=("1", "2")),
                FieldFilter(key="labels", inclusion=Inclusion.EXCLUDE_ANY, values=("noise",)),
            ),
            jql="project = PRJ",
        ),
        created_by="user-1",
    )
    await db.subscriptions.upsert(sub, now=at(0))
    assert await db.subscriptions.get("s1") == sub
    assert await db.subscriptions.get("missing") is None
    record = await db.subscriptions.get_record("s1")
    assert record is not None
    assert (record.source, record.created_at, record.updated_at) == ("db", at(0), at(0))


async def test_upsert_replaces_the_content_and_keeps_created_at(db: Database) -> None:
    await db.subscriptions.upsert(_sub("s1", "old", projects=["PRJ"]), now=at(0))
    changed = _sub("s1", "new", channel="chan-b", events=["event_created"])
    await db.subscriptions.upsert(changed, now=at(5))
    record = await db.subscriptions.get_record("s1")
    assert record is not None
    assert record.subscription == changed
    assert (record.created_at, record.updated_at) == (at(0), at(5))
    assert await db.subscriptions.count() == 1


async def test_list_delete_and_count(db: Database) -> None:
    a2 = _sub("s2", "beta")
    a1 = _sub("s1", "alpha")
    b1 = _sub("s3", "gamma", channel="chan-b")
    for sub in (a2, a1, b1):
        await db.subscriptions.upsert(sub, now=at(0))
    assert await db.subscriptions.list_all() == [a1, a2, b1]
    assert await db.subscriptions.list_for_channel("chan-a") == [a1, a2]
    assert await db.subscriptions.count() == 3
    assert await db.subscriptions.delete("s2") is True
    assert await db.subscriptions.delete("s2") is False
    assert await db.subscriptions.list_for_channel("chan-a") == [a1]
    assert await db.subscriptions.count() == 2


async def test_unknown_source_is_refused(db: Database) -> None:
    with pytest.raises(ValueError, match="use db or config"):
        await db.subscriptions.upsert(_sub("s1", "x"), source="file", now=at(0))


async def test_replace_config_subscriptions_syncs_the_declared_set(db: Database) -> None:
    by_hand = _sub("manual-1", "made with a command")
    await db.subscriptions.upsert(by_hand, now=at(0))

    declared = [_sub("ignored-id", "bugs", projects=["PRJ"]), _sub("", "releases", channel="chan-b")]
    stored = await db.subscriptions.replace_config_subscriptions(declared, now=at(1))
    assert [s.id for s in stored] == [
        config_subscription_id("bugs", "chan-a"),
        config_subscription_id("releases", "chan-b"),
    ]
    records = {r.subscription.id: r for r in await db.subscriptions.list_records()}
    assert {i: r.source for i, r in records.items()} == {
        "manual-1": "db",
        stored[0].id: "config",
        stored[1].id: "config",
    }

    # Next start: "bugs" changed, "releases" was removed from the file, "tasks" is new.
    redeclared = [_sub("x", "bugs", projects=["PRJ", "OPS"]), _sub("y", "tasks")]
    again = await db.subscriptions.replace_config_subscriptions(redeclared, now=at(2))
    assert again[0].id == stored[0].id  # same name and channel, same id
    bugs = await db.subscriptions.get_record(stored[0].id)
    assert bugs is not None
    assert bugs.subscription.filters.projects == frozenset({"PRJ", "OPS"})
    assert (bugs.created_at, bugs.updated_at) == (at(1), at(2))
    assert await db.subscriptions.get(stored[1].id) is None
    assert {s.name for s in await db.subscriptions.list_all()} == {"made with a command", "bugs", "tasks"}

    # An empty file removes every config subscription and nothing else.
    assert await db.subscriptions.replace_config_subscriptions([], now=at(3)) == []
    assert await db.subscriptions.list_all() == [by_hand]


async def test_replace_config_subscriptions_refuses_duplicate_names_in_a_channel(db: Database) -> None:
    await db.subscriptions.replace_config_subscriptions([_sub("", "bugs")], now=at(0))
    with pytest.raises(ValueError, match="declared twice"):
        await db.subscriptions.replace_config_subscriptions([_sub("", "bugs"), _sub("", "bugs")], now=at(1))
    assert [s.name for s in await db.subscriptions.list_all()] == ["bugs"]


def test_config_ids_depend_on_name_and_channel_only() -> None:
    assert config_subscription_id("bugs", "c1") == config_subscription_id(" bugs ", "c1")
    assert config_subscription_id("bugs", "c1") != config_subscription_id("bugs", "c2")
    assert config_subscription_id("bugs", "c1") != config_subscription_id("bug", "c1")


async def test_iter_all_pages_through_every_subscription_in_list_order(db: Database) -> None:
    # Names repeat, so the pages must also be cut on the id.
    subs = [_sub(f"s{i:02d}", f"name {i % 4}", projects=["WEB"], events=["event_created"]) for i in range(11)]
    for sub in subs:
        await db.subscriptions.upsert(sub, now=at(0))
    streamed = [s async for s in db.subscriptions.iter_all(page_size=3)]
    assert streamed == await db.subscriptions.list_all()
    assert len(streamed) == 11
    assert [s async for s in db.subscriptions.iter_all(page_size=11)] == streamed


async def test_replicas_starting_together_replace_the_config_set_one_after_the_other(
    backend: Backend,
) -> None:
    # Three replicas (engines of their own) with overlapping sets in different orders, as during a
    # rolling upgrade: each replacement is whole (never a mix of two sets), and none deadlocks.
    replicas = [await backend.open() for _ in range(3)]
    names = [f"sub-{n:02}" for n in range(30)]
    declared = [
        [_sub("", n, projects=["PRJ"]) for n in names[:25]],
        [_sub("", n, projects=["OPS"]) for n in reversed(names[5:])],
        [_sub("", n, projects=["WEB"]) for n in names[::2]],
    ]
    try:
        for round_ in range(4):
            await asyncio.gather(
                *(
                    db.subscriptions.replace_config_subscriptions(subs, now=at(round_))
                    for db, subs in zip(replicas, declared, strict=True)
                )
            )
            final = {
                (s.name, tuple(sorted(s.filters.projects)))
                for s in await replicas[0].subscriptions.list_all()
            }
            wholes = [{(s.name, tuple(sorted(s.filters.projects))) for s in subs} for subs in declared]
            assert final in wholes
    finally:
        for db in replicas:
            await db.close()
