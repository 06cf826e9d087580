"""Subscriptions' JQL checked by Jira (`filters.jql_check: jira`).

The checker is driven directly against the fake Jira (Cloud: POST /rest/api/3/search/jql; Server:
POST /rest/api/2/search) with an injected clock; the whole bot (tests/commands/conftest.py), on
both flavours, shows the check happening while a stored webhook is processed (after the webhook
was acknowledged), retried when Jira is busy.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from bot.config import JiraInstanceSettings, ServiceAccount
from bot.instances import InstanceDirectory
from bot.jira.client import JiraGateway
from bot.jira.events import IssueEvent, normalise
from bot.jira.models import parse_webhook
from bot.pipeline.issue_fetch import JiraUnavailable
from bot.pipeline.jql_check import JqlChecker
from bot.routing.model import Subscription, SubscriptionFilters
from tests.commands.conftest import SERVICE_EMAIL, SERVICE_TOKEN, Harness
from tests.fakes import FakeJira
from tests.pipeline.test_issue_fetch import processed, send, wait_until

REMOTE = "labels = printers AND sprint in openSprints()"
PAT = "service-pat"


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


class _NoKv:
    """The checker only looks configured instances up: no storage needed."""


def issue_webhook(
    base_url: str, jira: FakeJira, key: str, *, updated: str = "2026-01-01T10:00:00.000+0000"
) -> dict[str, Any]:
    """A complete `jira:issue_updated` webhook (a status change) about an issue of the fake."""
    issue = jira.issue(key)
    return {
        "timestamp": 1764057600000,
        "webhookEvent": "jira:issue_updated",
        "issue_event_type_name": "issue_generic",
        "issue": {
            "id": str(issue["id"]),
            "key": key,
            "self": f"{base_url}/rest/api/2/issue/{issue['id']}",
            "fields": {
                "summary": issue["summary"],
                "issuetype": {"id": "10002", "name": issue["issuetype"]},
                "project": {"id": "10000", "key": key.split("-")[0], "name": "Project"},
                "status": {"id": "3", "name": "In Progress"},
                "priority": {"id": "3", "name": "Medium"},
                "labels": issue["labels"],
                "security": None,
                "updated": updated,
            },
        },
        "changelog": {"items": [{"field": "status", "fromString": "To Do", "toString": "In Progress"}]},
    }


def event_of(payload: dict[str, Any]) -> IssueEvent:
    event = normalise(parse_webhook(json.dumps(payload).encode()))
    assert event is not None and not event.issue.fields_partial
    return event


@pytest.fixture(params=["cloud", "server"])
async def fake(request: pytest.FixtureRequest) -> Any:
    jira = FakeJira(request.param)
    if jira.is_cloud:
        jira.add_user("Jira Service Account", email=SERVICE_EMAIL, password=SERVICE_TOKEN)
    else:
        jira.add_token(PAT, jira.add_user("Jira Service Account", name="svc"))
    jira.add_project("PROJ", "Project")
    jira.add_issue("PROJ", "Printer on fire", labels=["printers"])
    jira.add_issue("PROJ", "Printer out of paper", labels=["printers"])
    jira.jql_answers[REMOTE] = {"PROJ-1"}
    server = TestServer(jira.app())
    await server.start_server()
    gateway = JiraGateway(max_workers=8, timeout=10.0)
    url = str(server.make_url("")).rstrip("/")
    yield jira, gateway, url
    await gateway.close()
    await server.close()


def checker_for(
    gateway: JiraGateway, url: str, jira: FakeJira, clock: Clock, *, service: bool = True
) -> JqlChecker:
    account = (
        ServiceAccount(email=SERVICE_EMAIL, api_token=SERVICE_TOKEN)  # type: ignore[arg-type]
        if jira.is_cloud
        else ServiceAccount(token=PAT)  # type: ignore[arg-type]
    )
    instance = JiraInstanceSettings(url=url, type=jira.flavour, service_account=account if service else None)
    directory = InstanceDirectory([instance], _NoKv())  # type: ignore[arg-type]
    return JqlChecker(gateway=gateway, instances=directory, clock=clock, cache_seconds=60)


def searches(jira: FakeJira) -> list[Any]:
    path = "/rest/api/3/search/jql" if jira.is_cloud else "/rest/api/2/search"
    return jira.requests_to(path, "POST")


async def test_jira_answers_per_issue_with_the_service_account(fake: Any) -> None:
    jira, gateway, url = fake
    checker = checker_for(gateway, url, jira, Clock())
    one = event_of(issue_webhook(url, jira, "PROJ-1"))
    two = event_of(issue_webhook(url, jira, "PROJ-2"))
    assert await checker.answers([REMOTE], one, url) == {REMOTE: True}
    assert await checker.answers([REMOTE], two, url) == {REMOTE: False}
    first, second = searches(jira)
    assert first.body["jql"] == f"({REMOTE}) AND issue = {jira.issue('PROJ-1')['id']}"
    assert first.status == 200 and first.user == next(
        u.id for u in jira.users.values() if u.display_name == "Jira Service Account"
    )
    assert second.body["jql"].endswith(f"issue = {jira.issue('PROJ-2')['id']}")
    # The search shape Jira documents: Cloud pages by nextPageToken, Server by startAt.
    assert ("startAt" in first.body) is (not jira.is_cloud)


async def test_an_answer_serves_until_the_issue_changes_or_the_cache_time_ends(fake: Any) -> None:
    jira, gateway, url = fake
    clock = Clock()
    checker = checker_for(gateway, url, jira, clock)
    event = event_of(issue_webhook(url, jira, "PROJ-1"))
    assert await checker.answers([REMOTE], event, url) == {REMOTE: True}
    clock.now += timedelta(seconds=59)
    assert await checker.answers([REMOTE], event, url) == {REMOTE: True}
    assert len(searches(jira)) == 1
    # The issue was updated: asked again, and Jira's new answer is taken.
    jira.jql_answers[REMOTE] = set()
    changed = event_of(issue_webhook(url, jira, "PROJ-1", updated="2026-01-01T10:05:00.000+0000"))
    assert await checker.answers([REMOTE], changed, url) == {REMOTE: False}
    assert len(searches(jira)) == 2
    clock.now += timedelta(seconds=2)  # the first answer has expired
    assert await checker.answers([REMOTE], event, url) == {REMOTE: False}
    assert len(searches(jira)) == 3


async def test_concurrent_events_of_one_issue_share_one_search(fake: Any) -> None:
    jira, gateway, url = fake
    jira.latency = 0.3  # the search is still under way when the other events ask
    checker = checker_for(gateway, url, jira, Clock())
    event = event_of(issue_webhook(url, jira, "PROJ-1"))
    found = await asyncio.gather(*(checker.answers([REMOTE], event, url) for _ in range(10)))
    assert found == [{REMOTE: True}] * 10
    assert len(searches(jira)) == 1


@pytest.mark.parametrize("status", [429, 503, 502])
async def test_a_busy_jira_makes_the_event_wait_and_is_not_cached(fake: Any, status: int) -> None:
    jira, gateway, url = fake
    checker = checker_for(gateway, url, jira, Clock())
    event = event_of(issue_webhook(url, jira, "PROJ-1"))
    jira.fail_next(1, status, retry_after=30)  # longer than the client's own short retry
    with pytest.raises(JiraUnavailable) as raised:
        await checker.answers([REMOTE], event, url)
    if status != 502:
        assert raised.value.retry_after == 30
    # Jira is back: asked again (the failure was not cached as an answer).
    assert await checker.answers([REMOTE], event, url) == {REMOTE: True}
    assert [r.status for r in searches(jira)] == [status, 200]


async def test_a_search_that_times_out_makes_the_event_wait(fake: Any) -> None:
    jira, _, url = fake
    slow = JiraGateway(max_workers=2, timeout=0.2)
    try:
        checker = checker_for(slow, url, jira, Clock())
        event = event_of(issue_webhook(url, jira, "PROJ-1"))
        jira.latency = 1.0
        with pytest.raises(JiraUnavailable):
            await checker.answers([REMOTE], event, url)
        jira.latency = 0.0
        assert await checker.answers([REMOTE], event, url) == {REMOTE: True}  # not cached as no
    finally:
        await slow.close()


@pytest.mark.parametrize("status", [400, 403, 404])
async def test_a_refusal_is_a_logged_no_match(
    fake: Any, status: int, caplog: pytest.LogCaptureFixture
) -> None:
    jira, gateway, url = fake
    checker = checker_for(gateway, url, jira, Clock())
    event = event_of(issue_webhook(url, jira, "PROJ-1"))
    jira.fail_next(1, status)
    with caplog.at_level(logging.WARNING, "bot.pipeline.jql_check"):
        assert await checker.answers([REMOTE], event, url) == {REMOTE: False}
    assert "Jira refused the JQL check" in caplog.text
    assert len(searches(jira)) == 1


async def test_jql_jira_refuses_is_a_no_match(fake: Any) -> None:
    jira, gateway, url = fake
    checker = checker_for(gateway, url, jira, Clock())
    event = event_of(issue_webhook(url, jira, "PROJ-1"))
    unknown = "watcher = nobody-the-fake-knows"  # neither canned nor in the fake's subset: 400
    assert await checker.answers([unknown, REMOTE], event, url) == {unknown: False, REMOTE: True}
    assert sorted(r.status for r in searches(jira)) == [200, 400]


async def test_without_a_service_account_nothing_is_asked(
    fake: Any, caplog: pytest.LogCaptureFixture
) -> None:
    jira, gateway, url = fake
    checker = checker_for(gateway, url, jira, Clock(), service=False)
    event = event_of(issue_webhook(url, jira, "PROJ-1"))
    with caplog.at_level(logging.WARNING, "bot.pipeline.jql_check"):
        assert await checker.answers([REMOTE], event, url) == {REMOTE: False}
    assert "has no service account" in caplog.text
    assert searches(jira) == []


# -- the whole bot --------------------------------------------------------------------------------
# Through the real intake, inbox and processor, against the fake Jira over HTTP, on both flavours:
# Cloud (the harness's service account: e-mail and API token) and Server/Data Center (a personal
# access token).

SEARCH = {"cloud": "/rest/api/3/search/jql", "server": "/rest/api/2/search"}


@dataclass(frozen=True)
class Site:
    flavour: str
    jira: FakeJira
    url: str
    search: str


def site(h: Harness, flavour: str) -> Site:
    if flavour == "cloud":
        return Site(flavour, h.cloud, h.cloud_url, SEARCH[flavour])
    return Site(flavour, h.server, h.server_url, SEARCH[flavour])


async def subscribe_remote(h: Harness, channel: str, at: Site, jql: str = REMOTE) -> None:
    sub = Subscription(
        id=f"remote-{channel}",
        name="printers in open sprints",
        channel_id=h.channels[channel],
        instance_id=at.url,
        filters=SubscriptionFilters(events={"event_updated_status"}, jql=jql, jql_check="jira"),
    )
    await h.services.db.subscriptions.upsert(sub, now=datetime.now(UTC))
    await h.services.subscriptions.changed()


def posts_about(h: Harness, channel: str, key: str) -> list[dict[str, Any]]:
    return [p for p in h.mm.posts_in(h.channels[channel]) if key in json.dumps(p)]


def bot_searches(at: Site) -> list[Any]:
    return at.jira.requests_to(at.search, "POST")


def service_user(at: Site) -> str:
    return next(u.id for u in at.jira.users.values() if u.display_name == "Jira Service Account")


both_flavours = pytest.mark.parametrize(
    ("flavour", "server_service_account"), [("cloud", False), ("server", True)]
)


@both_flavours
async def test_the_bot_posts_what_jira_says_matches(
    harness: Harness, flavour: str, server_service_account: bool
) -> None:
    h, at = harness, site(harness, flavour)
    at.jira.add_project("PROJ", "Project")
    yes = at.jira.add_issue("PROJ", "Printer on fire", labels=["printers"])
    no = at.jira.add_issue("PROJ", "Printer out of paper", labels=["printers"])
    local_no = at.jira.add_issue("PROJ", "Coffee machine", labels=["kitchen"])
    at.jira.jql_answers[REMOTE] = {yes}
    await subscribe_remote(h, "dev", at)
    for key in (no, local_no, yes):
        await send(h, issue_webhook(at.url, at.jira, key))
    await wait_until(lambda: bool(posts_about(h, "dev", yes)), "the issue Jira matched posted")
    await processed(h)
    assert posts_about(h, "dev", no) == [] and posts_about(h, "dev", local_no) == []
    # The local clause (`labels = printers`) said no for the kitchen issue: Jira was not asked.
    asked = bot_searches(at)
    assert sorted(r.body["jql"] for r in asked) == sorted(
        f"({REMOTE}) AND issue = {at.jira.issue(k)['id']}" for k in (yes, no)
    )
    # Asked with the service account, never with a user's credentials.
    assert {r.user for r in asked} == {service_user(at)}


async def test_jira_is_asked_the_query_without_its_order_by(harness: Harness) -> None:
    h, at = harness, site(harness, "cloud")
    at.jira.add_project("PROJ", "Project")
    key = at.jira.add_issue("PROJ", "Printer on fire", labels=["printers"])
    at.jira.jql_answers[REMOTE] = {key}
    await subscribe_remote(h, "dev", at, jql=f"{REMOTE} ORDER BY created DESC")
    await send(h, issue_webhook(at.url, at.jira, key))
    await wait_until(lambda: bool(posts_about(h, "dev", key)), "posted as Jira answered")
    [asked] = bot_searches(at)
    assert (asked.body["jql"], asked.status) == (f"({REMOTE}) AND issue = {at.jira.issue(key)['id']}", 200)


@pytest.mark.parametrize(
    ("flavour", "server_service_account", "status"), [("cloud", False, 429), ("server", True, 503)]
)
async def test_the_event_waits_while_jira_is_busy_then_posts(
    harness: Harness, flavour: str, server_service_account: bool, status: int
) -> None:
    h, at = harness, site(harness, flavour)
    at.jira.add_project("PROJ", "Project")
    key = at.jira.add_issue("PROJ", "Printer on fire", labels=["printers"])
    at.jira.jql_answers[REMOTE] = {key}
    await subscribe_remote(h, "dev", at)
    at.jira.fail_next(3, status, path=at.search)
    await send(h, issue_webhook(at.url, at.jira, key))
    await wait_until(lambda: bool(posts_about(h, "dev", key)), "posted once Jira answers", timeout=60)
    await processed(h)
    assert len(posts_about(h, "dev", key)) == 1  # not dropped, and posted once
    statuses = [r.status for r in bot_searches(at)]
    assert statuses[-1] == 200 and statuses.count(status) == 3
    item = await h.services.db.inbox.get(1)
    assert item is not None and item.attempts > 1  # given back and claimed again


async def test_the_webhook_is_acknowledged_before_jira_is_asked(harness: Harness) -> None:
    h, at = harness, site(harness, "cloud")
    at.jira.add_project("PROJ", "Project")
    key = at.jira.add_issue("PROJ", "Printer on fire", labels=["printers"])
    at.jira.jql_answers[REMOTE] = {key}
    await subscribe_remote(h, "dev", at)
    gate = at.jira.hold(at.search)  # Jira takes its time answering the search
    try:
        # Acknowledged while no search can finish: the intake does not ask Jira.
        await asyncio.wait_for(send(h, issue_webhook(at.url, at.jira, key)), timeout=20)
        assert bot_searches(at) == []
        # The processor asks afterwards, and posts nothing until Jira has answered.
        await wait_until(lambda: at.jira.held == 1, "the stored webhook's search under way")
        assert posts_about(h, "dev", key) == []
    finally:
        gate.set()
    await wait_until(lambda: bool(posts_about(h, "dev", key)), "posted once Jira answered")
    assert [r.status for r in bot_searches(at)] == [200]
