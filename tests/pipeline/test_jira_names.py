"""Custom field names and the priority order, learnt from Jira for JQL: when they are read,
kept and read again, and how the subscription index follows them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from bot.config import JiraInstanceSettings, ServiceAccount
from bot.instances import InstanceDirectory
from bot.jira.client import JiraGateway
from bot.pipeline.jira_names import JiraNamesCache
from bot.pipeline.subscriptions import SubscriptionCache
from bot.routing.model import Subscription, SubscriptionFilters
from bot.store.db import Database
from tests.commands.conftest import SERVICE_EMAIL, SERVICE_TOKEN
from tests.fakes import FakeJira
from tests.routing.jql_events import event


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


class _NoKv:
    """Only configured instances are looked up: no storage needed."""


@pytest.fixture
async def fake() -> Any:
    jira = FakeJira("cloud")
    jira.add_user("Jira Service Account", email=SERVICE_EMAIL, password=SERVICE_TOKEN)
    jira.custom_fields = {"customfield_10016": "Story Points", "customfield_10072": "Team"}
    server = TestServer(jira.app())
    await server.start_server()
    gateway = JiraGateway(max_workers=4, timeout=10.0)
    url = str(server.make_url("")).rstrip("/")
    yield jira, gateway, url
    await gateway.close()
    await server.close()


def cache_for(gateway: JiraGateway, url: str, clock: Clock, *, service: bool = True) -> JiraNamesCache:
    account = ServiceAccount(email=SERVICE_EMAIL, api_token=SERVICE_TOKEN)  # type: ignore[arg-type]
    instance = JiraInstanceSettings(url=url, type="cloud", service_account=account if service else None)
    directory = InstanceDirectory([instance], _NoKv())  # type: ignore[arg-type]
    return JiraNamesCache(gateway=gateway, instances=directory, clock=clock, refresh_seconds=3600)


def reads(jira: FakeJira) -> tuple[int, int]:
    return len(jira.requests_to("/rest/api/2/field", "GET")), len(
        jira.requests_to("/rest/api/2/priority", "GET")
    )


async def test_names_are_learnt_then_refreshed_hourly(fake: Any) -> None:
    jira, gateway, url = fake
    clock = Clock()
    names = cache_for(gateway, url, clock)
    assert names.get(url) is None and names.version == 0
    learnt = await names.learn(url)
    assert learnt is not None and names.get(url + "/") == learnt
    assert dict(learnt.custom_fields) == {"story points": "customfield_10016", "team": "customfield_10072"}
    assert learnt.priorities == ("Highest", "High", "Medium", "Low", "Lowest")
    assert reads(jira) == (1, 1) and names.version == 1
    clock.now += timedelta(minutes=59)
    await names.learn(url)
    assert reads(jira) == (1, 1)
    # An hour on: read again; the same names leave the version (and so the index) alone.
    clock.now += timedelta(minutes=2)
    await names.learn(url)
    assert reads(jira) == (2, 2) and names.version == 1
    # A field Jira gained: a save that names it forces a read, once a minute at most.
    jira.custom_fields["customfield_10100"] = "Customer"
    clock.now += timedelta(seconds=30)
    await names.learn(url, force=True)
    assert reads(jira) == (2, 2)
    clock.now += timedelta(seconds=31)
    again = await names.learn(url, force=True)
    assert reads(jira) == (3, 3) and names.version == 2
    assert again is not None and again.custom_fields["customer"] == "customfield_10100"


async def test_a_name_two_custom_fields_share_is_left_out(fake: Any) -> None:
    jira, gateway, url = fake
    jira.custom_fields["customfield_10200"] = "team"
    learnt = await cache_for(gateway, url, Clock()).learn(url)
    assert learnt is not None and dict(learnt.custom_fields) == {"story points": "customfield_10016"}


async def test_a_failed_read_keeps_what_was_known_and_waits(fake: Any) -> None:
    jira, gateway, url = fake
    clock = Clock()
    names = cache_for(gateway, url, clock)
    first = await names.learn(url)
    clock.now += timedelta(hours=2)
    jira.fail_next(1, 503, path="/rest/api/2/field")
    assert await names.learn(url) == first
    clock.now += timedelta(seconds=30)
    assert await names.learn(url, force=True) == first
    assert reads(jira) == (2, 1)  # not asked again within a minute of the failure
    clock.now += timedelta(seconds=31)
    assert await names.learn(url) == first
    assert reads(jira) == (3, 2)


async def test_without_a_service_account_nothing_is_read(fake: Any) -> None:
    jira, gateway, url = fake
    names = cache_for(gateway, url, Clock(), service=False)
    assert await names.learn(url, force=True) is None
    assert reads(jira) == (0, 0)


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = await Database.open(f"sqlite:///{tmp_path / 'bot.db'}")
    yield database
    await database.close()


async def test_the_index_learns_names_its_jql_needs_and_follows_them(fake: Any, db: Database) -> None:
    jira, gateway, url = fake
    jira.custom_fields = {}  # "Story Points" is not a field yet
    clock = Clock()
    subs = SubscriptionCache(db.subscriptions, db.kv, refresh_seconds=0)
    subs.names = cache_for(gateway, url, clock)
    plain = Subscription(
        id="plain", name="plain", channel_id="c1", instance_id=url,
        filters=SubscriptionFilters(events={"event_updated_status"}, jql="labels = ops"),
    )  # fmt: skip
    await db.subscriptions.upsert(plain, now=clock.now)
    await subs.changed()
    await subs.index()
    assert reads(jira) == (0, 0)  # no JQL needs names: Jira is not asked
    points = Subscription(
        id="points", name="points", channel_id="c2", instance_id=url,
        filters=SubscriptionFilters(events={"event_updated_status"}, jql='"Story Points" > 3'),
    )  # fmt: skip
    await db.subscriptions.upsert(points, now=clock.now)
    await subs.changed()
    ev = event()  # WEB-42 with customfield_10016 = 5
    index = await subs.index()
    assert reads(jira) == (1, 1)
    assert [s.name for s in index.match(ev, url)] == ["plain"]  # the name is still unknown
    # Jira gains the field; the hourly refresh brings it and the index is rebuilt with it.
    jira.custom_fields = {"customfield_10016": "Story Points"}
    clock.now += timedelta(minutes=30)
    assert [s.name for s in (await subs.index()).match(ev, url)] == ["plain"]
    clock.now += timedelta(minutes=31)
    assert [s.name for s in (await subs.index()).match(ev, url)] == ["plain", "points"]
    assert reads(jira) == (2, 2)
