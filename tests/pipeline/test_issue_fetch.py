"""Cloud's thin comment events read whole from Jira, and mentions read as names.

The bot runs whole (tests/commands/conftest.py): webhooks go in over HTTP, the fake Jira Cloud
answers the issue and user reads over HTTP, posts come out in the fake Mattermost. The fetcher's
single-flight and cache are also driven directly, against the fake Jira, with an injected clock.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from bot.__main__ import _stats
from bot.config import JiraInstanceSettings, ServiceAccount
from bot.instances import InstanceDirectory
from bot.jira.client import JiraGateway
from bot.jira.events import IssueEvent, normalise
from bot.jira.models import parse_webhook
from bot.pipeline.issue_fetch import ISSUE_FIELDS, IssueDropped, IssueFetcher, JiraUnavailable
from bot.render.markup import name_mentions
from bot.routing.model import FieldFilter, Subscription, SubscriptionFilters
from tests.commands.conftest import SERVICE_EMAIL, SERVICE_TOKEN, Harness
from tests.fakes import FakeJira

FIREHOSE = "/plugins/jira/api/v2/webhook"
COMMENT_KINDS = frozenset({"event_created_comment", "event_updated_comment", "event_deleted_comment"})


# -- helpers -------------------------------------------------------------------------------------


@pytest.fixture
def h(harness: Harness) -> Harness:
    return harness


def thin_comment(
    base_url: str,
    jira: FakeJira,
    key: str,
    author: str,
    body: str,
    *,
    event: str = "comment_created",
    comment_id: str = "100",
) -> dict[str, Any]:
    """A Cloud `comment_*` webhook as Jira Cloud sends it: a handful of issue fields, no
    security level, no labels, no components."""
    issue = jira.issue(key)
    user = {"accountId": author, "displayName": jira.users[author].display_name}
    return {
        "timestamp": 1764057600000,
        "webhookEvent": event,
        "comment": {
            "self": f"{base_url}/rest/api/2/issue/{issue['id']}/comment/{comment_id}",
            "id": comment_id,
            "author": user,
            "body": body,
            "updateAuthor": user,
            "created": "2026-01-01T00:00:00.000+0000",
            "updated": "2026-01-01T00:00:00.000+0000",
        },
        "issue": {
            "id": str(issue["id"]),
            "self": f"{base_url}/rest/api/2/issue/{issue['id']}",
            "key": key,
            "fields": {
                "summary": issue["summary"],
                "issuetype": {"id": "10002", "name": issue["issuetype"]},
                "project": {"id": "10000", "key": key.split("-")[0], "name": "Project"},
                "assignee": None,
                "priority": {"id": "3", "name": "Medium"},
                "status": {"id": "10000", "name": issue["status"]},
            },
        },
    }


async def send(h: Harness, payload: dict[str, Any]) -> None:
    async with h.http.post(
        h.bot_url + FIREHOSE, params={"secret": "webhook-secret"}, data=json.dumps(payload)
    ) as r:
        assert r.status == 200, await r.text()


async def wait_until(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:  # noqa: ASYNC109
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        await asyncio.sleep(0.02)


async def processed(h: Harness, timeout: float = 30.0) -> None:  # noqa: ASYNC109
    """Every stored webhook processed and every post delivered."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while await h.services.db.deliveries.backlog() > 0:
        if loop.time() > deadline:
            raise AssertionError("backlog did not drain")
        await asyncio.sleep(0.02)


async def subscribe(h: Harness, channel: str, *, fields: tuple[FieldFilter, ...] = ()) -> None:
    sub = Subscription(
        id=f"comments-{channel}",
        name="comments",
        channel_id=h.channels[channel],
        instance_id=h.cloud_url,
        filters=SubscriptionFilters(events=COMMENT_KINDS, projects=frozenset({"PROJ"}), fields=fields),
    )
    await h.services.db.subscriptions.upsert(sub, now=datetime.now(UTC))
    await h.services.subscriptions.changed()


def service_account_id(jira: FakeJira) -> str:
    return next(u.id for u in jira.users.values() if u.email == SERVICE_EMAIL)


def without_service_account(h: Harness) -> None:
    directory = h.services.instances
    directory._configured = tuple(  # the configured instances, as a config without one
        dataclasses.replace(i, service_account=None) for i in directory._configured
    )


def issue_reads(jira: FakeJira, issue_id: str) -> list[Any]:
    return jira.requests_to(f"/rest/api/2/issue/{issue_id}", "GET")


def dropped(h: Harness, reason: str) -> float:
    value = h.services.metrics.registry.get_sample_value(
        "jira_chatops_events_dropped_total", {"reason": reason}
    )
    return value or 0.0


def comment_posts(h: Harness, channel: str, key: str) -> list[dict[str, Any]]:
    return [p for p in h.mm.posts_in(h.channels[channel]) if key in json.dumps(p)]


async def project(h: Harness, **issue: Any) -> tuple[str, str, str]:
    """Alice (connected to Mattermost as alice), Bob, and an issue of PROJ; returns their ids
    and the issue key."""
    alice = h.cloud.add_user("Alice Liddell", email="alice@example.com")
    bob = h.cloud.add_user("Bob Builder", email="bob@example.com")
    h.cloud.add_project("PROJ", "Project")
    key = h.cloud.add_issue("PROJ", "Printer on fire", reporter=bob, **issue)
    return alice, bob, key


# -- credentials ---------------------------------------------------------------------------------


async def test_the_service_account_reads_a_thin_comment_event_which_is_then_posted(h: Harness) -> None:
    alice, _, key = await project(h)
    await subscribe(h, "dev")
    issue_id = h.cloud.issue(key)["id"]
    await send(h, thin_comment(h.cloud_url, h.cloud, key, alice, "Is it still burning?"))
    await wait_until(lambda: bool(comment_posts(h, "dev", key)), "the comment posted")
    [read] = issue_reads(h.cloud, issue_id)
    assert read.user == service_account_id(h.cloud) and not read.gateway
    assert read.query["fields"] == ISSUE_FIELDS
    assert "Is it still burning?" in json.dumps(comment_posts(h, "dev", key))


async def test_without_a_service_account_the_comment_authors_connected_account_reads(h: Harness) -> None:
    without_service_account(h)
    alice, _, key = await project(h)
    carol = h.cloud.add_user("Carol Danvers")  # nothing to do with the issue, yet may see it
    await h.connect_cloud("alice", alice)
    await h.connect_cloud("bob", carol)
    await subscribe(h, "dev")
    issue_id = h.cloud.issue(key)["id"]
    await send(h, thin_comment(h.cloud_url, h.cloud, key, alice, "Fetched as Alice"))
    await wait_until(lambda: bool(comment_posts(h, "dev", key)), "the comment posted")
    [read] = issue_reads(h.cloud, issue_id)
    assert read.user == alice and read.gateway  # her OAuth 2.0 token, through the API gateway
    assert not [r for r in h.cloud.requests if r.user == carol]


async def test_another_connected_users_account_is_never_used(h: Harness) -> None:
    without_service_account(h)
    alice, _, key = await project(h)
    carol = h.cloud.add_user("Carol Danvers")  # may see the issue; Alice, the author, never connected
    await h.connect_cloud("bob", carol)
    await subscribe(h, "dev")
    await send(h, thin_comment(h.cloud_url, h.cloud, key, alice, "Nobody may read this for me"))
    await processed(h)
    assert comment_posts(h, "dev", key) == []
    assert not [r for r in h.cloud.requests if r.user == carol]
    assert issue_reads(h.cloud, h.cloud.issue(key)["id"]) == []


async def test_the_remembered_security_level_still_serves_when_nothing_may_read_the_issue(
    h: Harness,
) -> None:
    without_service_account(h)
    alice, _, key = await project(h)
    await subscribe(h, "dev")
    complete = thin_comment(h.cloud_url, h.cloud, key, alice, "first, complete")
    complete.update(webhookEvent="jira:issue_updated", issue_event_type_name="issue_commented")
    await send(h, complete)
    await wait_until(lambda: len(comment_posts(h, "dev", key)) == 1, "the complete event posted")
    await send(h, thin_comment(h.cloud_url, h.cloud, key, alice, "then thin", comment_id="101"))
    await wait_until(lambda: len(comment_posts(h, "dev", key)) == 2, "the thin event posted")


# -- security ------------------------------------------------------------------------------------


async def test_a_restricted_issue_is_read_then_posted_only_where_its_level_is_allowed(h: Harness) -> None:
    alice = h.cloud.add_user("Alice Liddell", email="alice@example.com")
    h.cloud.add_project("PROJ", "Project")
    h.cloud.set_security_level("Staff", [service_account_id(h.cloud), alice])
    key = h.cloud.add_issue("PROJ", "Salary review", security="Staff")
    await subscribe(h, "dev", fields=(FieldFilter(key="security", values=("Staff",)),))
    await subscribe(h, "ops")  # no security filter: issues with a level never reach it
    await send(h, thin_comment(h.cloud_url, h.cloud, key, alice, "Confidential remark"))
    await wait_until(lambda: bool(comment_posts(h, "dev", key)), "posted where Staff is allowed")
    await processed(h)
    assert comment_posts(h, "ops", key) == []
    assert "Confidential remark" not in json.dumps(h.mm.posts_in(h.channels["ops"]))


async def test_fields_the_thin_event_lacks_are_filtered_on_after_the_read(h: Harness) -> None:
    alice, _, key = await project(h, labels=["printers"])
    other = h.cloud.add_issue("PROJ", "Coffee machine", labels=["kitchen"])
    await subscribe(h, "dev", fields=(FieldFilter(key="labels", values=("printers",)),))
    await send(h, thin_comment(h.cloud_url, h.cloud, other, alice, "Kitchen only"))
    await send(h, thin_comment(h.cloud_url, h.cloud, key, alice, "Printers only", comment_id="101"))
    await wait_until(lambda: bool(comment_posts(h, "dev", key)), "the labelled issue's comment posted")
    await processed(h)
    assert comment_posts(h, "dev", other) == []


# -- drops ---------------------------------------------------------------------------------------


async def test_a_deleted_issue_drops_the_event_counted_by_reason(
    h: Harness, capsys: pytest.CaptureFixture[str]
) -> None:
    alice, _, key = await project(h)
    await subscribe(h, "dev")
    payload = thin_comment(h.cloud_url, h.cloud, key, alice, "Too late")
    del h.cloud.issues[key]  # deleted in Jira after the comment
    await send(h, payload)
    await wait_until(lambda: dropped(h, "issue_not_found") == 1, "the drop counted")
    await processed(h)
    assert comment_posts(h, "dev", key) == []
    assert await _stats(h.services.settings) == 0
    out = capsys.readouterr().out
    assert '"issue_not_found": 1' in out


async def test_a_403_drops_the_event_as_no_permission(h: Harness, capsys: pytest.CaptureFixture[str]) -> None:
    alice, _, key = await project(h)
    await subscribe(h, "dev")
    h.cloud.fail_next(1, 403, path=f"/rest/api/2/issue/{h.cloud.issue(key)['id']}")
    await send(h, thin_comment(h.cloud_url, h.cloud, key, alice, "Forbidden"))
    await wait_until(lambda: dropped(h, "no_permission") == 1, "the drop counted")
    await processed(h)
    assert comment_posts(h, "dev", key) == []
    await _stats(h.services.settings)
    assert '"no_permission": 1' in capsys.readouterr().out


# -- Jira busy or down ---------------------------------------------------------------------------


@pytest.mark.parametrize("status", [429, 503, 500])
async def test_the_event_waits_while_jira_is_busy_and_is_posted_after(h: Harness, status: int) -> None:
    """Slow (up to 8 s): three failed reads wait out the processor's backoff (1 s base, doubling,
    jittered) before the fourth succeeds."""
    alice, _, key = await project(h)
    await subscribe(h, "dev")
    issue_id = h.cloud.issue(key)["id"]
    h.cloud.fail_next(3, status, path=f"/rest/api/2/issue/{issue_id}")
    await send(h, thin_comment(h.cloud_url, h.cloud, key, alice, "Patience"))
    await wait_until(lambda: bool(comment_posts(h, "dev", key)), "posted after Jira recovered")
    statuses = [r.status for r in issue_reads(h.cloud, issue_id)]
    assert statuses == [status, status, status, 200]
    assert dropped(h, "issue_not_found") == 0


async def test_the_event_waits_while_jira_times_out_and_is_posted_after(h: Harness) -> None:
    alice, _, key = await project(h)
    await subscribe(h, "dev")
    issue_id = h.cloud.issue(key)["id"]
    gateway = h.services.commands.deps.jira  # type: ignore[union-attr]
    gateway.timeout = 0.3
    h.cloud.latency = 1.0
    await send(h, thin_comment(h.cloud_url, h.cloud, key, alice, "Slowly"))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while "Jira unavailable" not in (((item := await h.services.db.inbox.get(1)) and item.outcome) or ""):
        assert loop.time() < deadline, "the webhook was not given back after a read that took too long"
        await asyncio.sleep(0.05)
    assert item is not None and item.status == "pending"
    assert comment_posts(h, "dev", key) == []
    h.cloud.latency = 0.0
    await wait_until(lambda: bool(comment_posts(h, "dev", key)), "posted once Jira answers in time")
    assert issue_reads(h.cloud, issue_id)[-1].status == 200


# -- cheap ---------------------------------------------------------------------------------------


async def test_a_burst_of_comments_on_one_issue_costs_one_read(h: Harness) -> None:
    alice, _, key = await project(h)
    await subscribe(h, "dev")
    issue_id = h.cloud.issue(key)["id"]
    for n in range(5):
        await send(h, thin_comment(h.cloud_url, h.cloud, key, alice, f"comment {n}", comment_id=str(200 + n)))
    await wait_until(lambda: len(comment_posts(h, "dev", key)) == 5, "five comments posted")
    assert len(issue_reads(h.cloud, issue_id)) == 1


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


class _NoKv:
    """The fetcher only looks configured instances up: no storage needed."""


@pytest.fixture
async def fake_cloud() -> Any:
    jira = FakeJira("cloud")
    jira.add_user("Jira Service Account", email=SERVICE_EMAIL, password=SERVICE_TOKEN)
    alice = jira.add_user("Alice Liddell")
    jira.add_project("PROJ", "Project")
    jira.add_issue("PROJ", "Printer on fire", reporter=alice)
    server = TestServer(jira.app())
    await server.start_server()
    gateway = JiraGateway(max_workers=8, timeout=10.0)
    url = str(server.make_url("")).rstrip("/")
    yield jira, gateway, url
    await gateway.close()
    await server.close()


def fetcher_for(gateway: JiraGateway, url: str, clock: Clock) -> IssueFetcher:
    instance = JiraInstanceSettings(
        url=url,
        type="cloud",
        service_account=ServiceAccount(email=SERVICE_EMAIL, api_token=SERVICE_TOKEN),  # type: ignore[arg-type]
    )
    directory = InstanceDirectory([instance], _NoKv())  # type: ignore[arg-type]
    return IssueFetcher(gateway=gateway, instances=directory, accounts=None, clock=clock, cache_seconds=60)


def thin_event(url: str, jira: FakeJira, key: str = "PROJ-1") -> IssueEvent:
    author = next(iter(jira.users))
    event = normalise(parse_webhook(json.dumps(thin_comment(url, jira, key, author, "hi")).encode()))
    assert event is not None and event.issue.fields_partial
    return event


async def test_concurrent_events_of_one_issue_share_one_read(fake_cloud: Any) -> None:
    jira, gateway, url = fake_cloud
    jira.latency = 0.3  # the read is still under way when the other events ask
    fetcher = fetcher_for(gateway, url, Clock())
    event = thin_event(url, jira)
    completed = await asyncio.gather(*(fetcher.complete(event, url) for _ in range(10)))
    assert len(issue_reads(jira, jira.issue("PROJ-1")["id"])) == 1
    assert all(not e.issue.fields_partial and e.issue.reporter is not None for e in completed)


async def test_a_read_serves_for_the_cache_time_then_is_done_again(fake_cloud: Any) -> None:
    jira, gateway, url = fake_cloud
    clock = Clock()
    fetcher = fetcher_for(gateway, url, clock)
    event = thin_event(url, jira)
    issue_id = jira.issue("PROJ-1")["id"]
    await fetcher.complete(event, url)
    clock.now += timedelta(seconds=59)
    await fetcher.complete(event, url)
    assert len(issue_reads(jira, issue_id)) == 1
    jira.issue("PROJ-1")["status"] = "Done"
    clock.now += timedelta(seconds=2)
    again = await fetcher.complete(event, url)
    assert len(issue_reads(jira, issue_id)) == 2
    assert again.issue.status is not None and again.issue.status.name == "Done"


async def test_failed_reads_are_not_cached(fake_cloud: Any) -> None:
    jira, gateway, url = fake_cloud
    fetcher = fetcher_for(gateway, url, Clock())
    event = thin_event(url, jira)
    jira.fail_next(1, 502)
    with pytest.raises(JiraUnavailable):
        await fetcher.complete(event, url)
    completed = await fetcher.complete(event, url)
    assert not completed.issue.fields_partial


async def test_an_instance_url_over_plain_http_is_read(fake_cloud: Any) -> None:
    jira, gateway, url = fake_cloud
    assert url.startswith("http://")
    fetcher = fetcher_for(gateway, url, Clock())
    completed = await fetcher.complete(thin_event(url, jira), url)
    assert completed.issue.project.name == "PROJ" and completed.issue.security_level is None


async def test_an_instance_that_is_not_configured_has_no_credentials(fake_cloud: Any) -> None:
    jira, gateway, url = fake_cloud
    fetcher = fetcher_for(gateway, url, Clock())
    with pytest.raises(IssueDropped) as raised:
        await fetcher.complete(thin_event(url, jira), "https://elsewhere.example")
    assert raised.value.reason == "no_credentials"
    assert jira.requests == []


# -- mentions ------------------------------------------------------------------------------------


async def test_mentions_read_as_the_person(h: Harness) -> None:
    alice, bob, key = await project(h)
    carol = h.cloud.add_user("Carol Danvers")
    await h.connect_cloud("alice", alice)
    await subscribe(h, "dev")
    unknown = "557058:00000000-dead-beef-0000-000000000000"
    body = f"[~accountid:{alice}], [~accountid:{bob}], [~accountid:{carol}] and [~accountid:{unknown}]"
    await send(h, thin_comment(h.cloud_url, h.cloud, key, bob, body))
    await wait_until(lambda: bool(comment_posts(h, "dev", key)), "the comment posted")
    [post] = comment_posts(h, "dev", key)
    text = post["props"]["attachments"][0]["text"]
    assert "@alice" in text  # connected: a Mattermost mention
    assert "Bob Builder" in text  # named by the payload (the comment's author)
    assert "Carol Danvers" in text and carol not in text  # read with the service account
    assert unknown in text  # no such user: the bare name, never a generic word
    # The lookups run concurrently: one each, in any order.
    looked_up = sorted(r.query["accountId"] for r in h.cloud.requests_to("/rest/api/2/user"))
    assert looked_up == sorted([carol, unknown])


async def test_a_failing_user_lookup_falls_back_to_the_name(h: Harness) -> None:
    _, bob, key = await project(h)
    carol = h.cloud.add_user("Carol Danvers")
    await subscribe(h, "dev")
    h.cloud.fail_next(5, 500, path="/rest/api/2/user")
    await send(h, thin_comment(h.cloud_url, h.cloud, key, bob, f"ask [~accountid:{carol}]"))
    await wait_until(lambda: bool(comment_posts(h, "dev", key)), "the comment posted")
    [post] = comment_posts(h, "dev", key)
    text = post["props"]["attachments"][0]["text"]
    assert f"ask {carol}" in text and "@" not in text


async def test_user_lookups_are_cached(fake_cloud: Any) -> None:
    jira, gateway, url = fake_cloud
    carol = jira.add_user("Carol Danvers")
    fetcher = fetcher_for(gateway, url, Clock())
    assert await fetcher.display_names(url, [carol, "nobody"]) == {carol: "Carol Danvers"}
    assert await fetcher.display_names(url, [carol, "nobody"]) == {carol: "Carol Danvers"}
    assert len(jira.requests_to("/rest/api/2/user")) == 2


def test_names_are_given_to_bare_mentions_only() -> None:
    names = {"abc": "Carol [Captain] Danvers|x", "bob": "Bob"}
    text = "[~accountid:abc] [~bob] [Robert|~bob] [~carl]"
    assert name_mentions(text, names) == (
        "[Carol  Captain  Danvers x|~accountid:abc] [Bob|~bob] [Robert|~bob] [~carl]"
    )
