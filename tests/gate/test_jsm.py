"""The JSM client against the fake JSM, in both flavours: lookups, create, read, search, comment,
and how failures map to JiraError kinds."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import aiohttp
import pytest

from bot.breaker import BreakerPolicy, BreakerState
from bot.breakers import Breakers, jira_target
from bot.config import JiraInstanceSettings, JiraSettings
from bot.gate.jsm import JsmAuth, JsmClient, JsmClients, parse_jira_time
from bot.gate_rules.model import CrSource
from bot.jira.errors import JiraError
from tests.clocks import Clock
from tests.fakes.jsm import PLANNED_END_ID, PLANNED_START_ID, FakeJsm

SUMMARY = 'Octopus: Deploy "Web Site" version 1.2.3 to "Production"'


@dataclass
class Setup:
    fake: FakeJsm
    client: JsmClient
    desk_id: str
    type_id: str


def _instance(fake: FakeJsm) -> JiraInstanceSettings:
    if fake.flavour == "cloud":
        fake.add_api_token("svc@example.com", "api-token")
        account = {"email": "svc@example.com", "api_token": "api-token"}
    else:
        fake.add_pat("pat-secret")
        account = {"token": "pat-secret"}
    return JiraInstanceSettings.model_validate(
        {"url": fake.url, "type": fake.flavour, "alias": "itsm", "service_account": account}
    )


@pytest.fixture(params=["cloud", "server"])
async def setup(request: pytest.FixtureRequest) -> AsyncIterator[Setup]:
    fake = FakeJsm(request.param)
    await fake.start()
    fake.add_service_desk("HR")
    fake.add_service_desk("OTHER")
    desk_id = fake.add_service_desk("ITSM", "IT service management")
    fake.add_request_type(desk_id, "Get IT help")
    fake.add_request_type(desk_id, "Report a system problem")
    type_id = fake.add_request_type(desk_id, "Request a change")
    async with aiohttp.ClientSession() as http:
        client = JsmClient.for_instance(_instance(fake), http=http, time_zone=ZoneInfo("Europe/Berlin"))
        yield Setup(fake, client, desk_id, type_id)
    await fake.stop()


async def test_lookups_follow_pages_and_are_cached(setup: Setup) -> None:
    assert await setup.client.service_desk_id("itsm") == setup.desk_id
    assert await setup.client.request_type_id(setup.desk_id, "request a CHANGE") == setup.type_id
    calls = len(setup.fake.requests)
    assert await setup.client.service_desk_id("ITSM") == setup.desk_id
    assert await setup.client.request_type_id(setup.desk_id, "Request a change") == setup.type_id
    assert len(setup.fake.requests) == calls


async def test_create_then_read_with_planned_window(setup: Setup) -> None:
    created = await setup.client.create_request("ITSM", "Request a change", SUMMARY, "Deploying 1.2.3")
    assert created.source is CrSource.CREATED
    assert created.key.startswith("ITSM-")
    assert created.status == "Planning"
    assert created.url == f"{setup.fake.url}/browse/{created.key}"
    sent = setup.fake.creates()[-1].body
    assert sent == {
        "serviceDeskId": setup.desk_id,
        "requestTypeId": setup.type_id,
        "requestFieldValues": {"summary": SUMMARY, "description": "Deploying 1.2.3"},
    }

    setup.fake.set_status(created.key, "Implementing")
    setup.fake.set_planned(created.key, start="2024-05-01T10:00:00.000+0200", end="2024-05-03")
    read = await setup.client.get_issue(created.id)
    assert read is not None
    assert (read.id, read.key, read.status, read.summary) == (
        created.id,
        created.key,
        "Implementing",
        SUMMARY,
    )
    assert read.planned_start == datetime(2024, 5, 1, 8, 0, tzinfo=UTC)
    # A date-only end lasts the whole day in the configured zone (CEST, UTC+2).
    assert read.planned_end == datetime(2024, 5, 3, 21, 59, 59, 999999, tzinfo=UTC)
    # The planned fields were resolved by name to the datetime fields, not the same-named text one.
    asked = setup.fake.requests_to(f"/rest/api/2/issue/{created.id}", "GET")[-1].query["fields"]
    assert asked.split(",") == ["summary", "status", PLANNED_START_ID, PLANNED_END_ID]


async def test_missing_issue_is_none(setup: Setup) -> None:
    assert await setup.client.get_issue("ITSM-999") is None


async def test_search_is_fuzzy_so_candidates_include_near_misses(setup: Setup) -> None:
    fake = setup.fake
    exact = fake.add_issue("ITSM", SUMMARY)
    curly = fake.add_issue("ITSM", "Octopus: Deploy “Web Site” version 1.2.3 to “Production”")
    lower = fake.add_issue("ITSM", SUMMARY.lower(), status="Authorize")
    fake.add_issue("ITSM", SUMMARY, status="Completed")  # closed: not a candidate
    fake.add_issue("OTHER", SUMMARY)  # another project
    fake.add_issue("ITSM", 'Octopus: Deploy "Web Site" version 1.2.4 to "Production"')

    found = await setup.client.search_open_by_summary("ITSM", SUMMARY)

    # Three pages of two at most: the client followed them.
    assert {c.key for c in found} == {exact.key, curly.key, lower.key}
    assert [c.summary == SUMMARY for c in found].count(True) == 1
    search_path = "/rest/api/3/search/jql" if fake.flavour == "cloud" else "/rest/api/2/search"
    jql = fake.requests_to(search_path, "POST")[-1].body["jql"]
    assert jql.startswith(
        'project = "ITSM" AND summary ~ "\\"Octopus Deploy Web Site version 1.2.3 to Production\\""'
    )
    assert "statusCategory != Done" in jql


async def test_comment_is_recorded(setup: Setup) -> None:
    issue = setup.fake.add_issue("ITSM", SUMMARY)
    await setup.client.add_comment(issue.id, "Deployment of 1.2.3 started")
    await setup.client.add_comment(issue.id, "Told the requester", public=True)
    assert setup.fake.comments[issue.key] == ["Deployment of 1.2.3 started", "Told the requester"]
    # Internal unless asked: through the service desk's comment resource, which alone sets it.
    assert setup.fake.comments_public[issue.key] == [False, True]
    [first, _] = setup.fake.requests_to("/rest/servicedeskapi/request/", "POST")
    assert first.body == {"body": "Deployment of 1.2.3 started", "public": False}


@pytest.mark.parametrize(
    ("status", "kind", "retry_after"),
    [(503, "unavailable", 7.0), (429, "rate_limited", 3.0), (401, "auth", None), (403, "forbidden", None)],
)
async def test_failures_map_to_jira_errors(
    setup: Setup, status: int, kind: str, retry_after: float | None
) -> None:
    setup.fake.fail_next(status, retry_after=retry_after)
    with pytest.raises(JiraError) as caught:
        await setup.client.get_issue("ITSM-1")
    assert (caught.value.kind, caught.value.status, caught.value.retry_after) == (kind, status, retry_after)


async def test_wrong_credentials_are_auth_errors(setup: Setup) -> None:
    auth = (
        JsmAuth(email="svc@example.com", api_token="wrong")
        if setup.fake.flavour == "cloud"
        else JsmAuth(pat="no")
    )
    async with aiohttp.ClientSession() as http:
        client = JsmClient(setup.fake.url, auth, is_cloud=setup.fake.flavour == "cloud", http=http)
        with pytest.raises(JiraError) as caught:
            await client.service_desk_id("ITSM")
    assert caught.value.kind == "auth"


async def test_unreachable_jira_is_unavailable() -> None:
    client = JsmClient("http://127.0.0.1:9", JsmAuth(pat="x"), is_cloud=False, timeout=2)
    try:
        with pytest.raises(JiraError) as caught:
            await client.get_issue("ITSM-1")
    finally:
        await client.close()
    assert caught.value.kind == "unavailable"


async def test_check_reports_the_first_problem(setup: Setup) -> None:
    good = await setup.client.check("ITSM", "Request a change")
    assert good.ok and good.service_desk_id == setup.desk_id and good.request_type_id == setup.type_id
    assert len(good.steps) == 3

    no_desk = await setup.client.check("NOPE", "Request a change")
    assert not no_desk.ok and "NOPE" in no_desk.problem and no_desk.steps == ()

    no_type = await setup.client.check("ITSM", "Emergency change")
    assert not no_type.ok and "Emergency change" in no_type.problem and "Request a change" in no_type.problem
    assert len(no_type.steps) == 1


async def test_check_names_missing_planned_fields(setup: Setup) -> None:
    async with aiohttp.ClientSession() as http:
        client = JsmClient.for_instance(
            _instance(setup.fake),
            http=http,
            planned_start_field="Start window",
            planned_end_field=PLANNED_END_ID,
        )
        result = await client.check("ITSM", "Request a change")
    assert not result.ok and "`Start window`" in result.problem


def test_instance_without_service_account_is_refused() -> None:
    inst = JiraInstanceSettings(url="https://jira.example.com", type="server")
    with pytest.raises(ValueError, match="service_account"):
        JsmClient.for_instance(inst)


@pytest.mark.parametrize(
    ("value", "end", "expected"),
    [
        ("2024-05-01T10:00:00.000+0200", False, datetime(2024, 5, 1, 8, tzinfo=UTC)),
        ("2024-05-01T10:00:00Z", False, datetime(2024, 5, 1, 10, tzinfo=UTC)),
        ("2024-01-15", False, datetime(2024, 1, 14, 23, tzinfo=UTC)),  # CET midnight
        ("2024-01-15", True, datetime(2024, 1, 15, 22, 59, 59, 999999, tzinfo=UTC)),
        ("2024-05-01T10:00:00", False, datetime(2024, 5, 1, 8, tzinfo=UTC)),  # no offset: the zone's
        ("", False, None),
        (None, False, None),
        ("soon", False, None),
    ],
)
def test_parse_jira_time(value: str | None, end: bool, expected: datetime | None) -> None:
    assert parse_jira_time(value, ZoneInfo("Europe/Berlin"), end_of_day=end) == expected


async def test_clients_are_made_per_instance_and_reused() -> None:
    jira = JiraSettings.model_validate(
        {
            "instances": [
                {
                    "url": "https://itsm.example.com",
                    "type": "server",
                    "alias": "itsm",
                    "service_account": {"token": "t"},
                },
                {"url": "https://eu.example.com", "type": "cloud", "alias": "eu"},
            ]
        }
    )
    clients = JsmClients(jira, planned_start_field="customfield_1")
    try:
        first = clients("itsm")
        assert clients("https://itsm.example.com/") is first
        assert (first.base_url, first.is_cloud, first.planned_start_field) == (
            "https://itsm.example.com",
            False,
            "customfield_1",
        )
        with pytest.raises(KeyError):
            clients("nowhere")
        with pytest.raises(KeyError):
            clients(None)  # two instances: the gate must name one
        with pytest.raises(ValueError, match="service_account"):
            clients("eu")
    finally:
        await clients.close()


async def test_the_only_instance_is_the_default() -> None:
    jira = JiraSettings.model_validate(
        {
            "instances": [
                {"url": "https://itsm.example.com", "type": "server", "service_account": {"token": "t"}}
            ]
        }
    )
    clients = JsmClients(jira)
    assert clients(None).base_url == "https://itsm.example.com"
    await clients.close()


async def test_the_sites_breaker_opens_on_an_outage_fails_at_once_and_closes_on_the_probe(
    setup: Setup,
) -> None:
    """Status reads and CR comments go through the Jira site's breaker (the one bot.jira.client
    uses for the site): 503s open it, then calls fail at once without a request until the open
    time passes; one probe goes, and its success closes the breaker."""
    clock = Clock()
    breakers = Breakers(clock=clock, policy=BreakerPolicy(failure_threshold=2))
    breaker = breakers.get(jira_target(setup.fake.url + "/"))
    setup.client.breaker = breaker
    issue = setup.fake.add_issue("ITSM", SUMMARY)
    await setup.client.get_issue(issue.id)  # fields resolved: one request per call from here

    setup.fake.fail_next(503, times=2)
    for _ in range(2):
        with pytest.raises(JiraError):
            await setup.client.get_issue(issue.id)
    assert breaker.state is BreakerState.OPEN
    sent = len(setup.fake.requests)
    with pytest.raises(JiraError) as caught:
        await setup.client.add_comment(issue.id, "Deployment started")
    # Failed at once, saying when to come back, and without a request.
    assert caught.value.kind == "rate_limited" and caught.value.retry_after
    assert len(setup.fake.requests) == sent and setup.fake.comments.get(issue.key) is None

    clock.advance(caught.value.retry_after + 0.01)
    assert breaker.state is BreakerState.HALF_OPEN
    await setup.client.add_comment(issue.id, "Deployment started")
    assert breaker.state is BreakerState.CLOSED
    assert setup.fake.comments[issue.key] == ["Deployment started"]


async def test_a_refusal_is_not_an_outage(setup: Setup) -> None:
    """Jira answering 403 or 404 is up: the breaker stays closed and its count of failures in a
    row starts again."""
    breakers = Breakers(clock=lambda: datetime.now(UTC), policy=BreakerPolicy(failure_threshold=2))
    breaker = breakers.get(jira_target(setup.fake.url))
    setup.client.breaker = breaker
    setup.fake.fail_next(503)
    with pytest.raises(JiraError):
        await setup.client.get_issue("ITSM-1")
    setup.fake.fail_next(403)
    with pytest.raises(JiraError):
        await setup.client.get_issue("ITSM-1")
    setup.fake.fail_next(503)
    with pytest.raises(JiraError):
        await setup.client.get_issue("ITSM-1")
    assert await setup.client.get_issue("ITSM-404") is None
    assert breaker.state is BreakerState.CLOSED


async def test_clients_use_the_breaker_of_their_instances_site() -> None:
    jira = JiraSettings.model_validate(
        {
            "instances": [
                {
                    "url": "https://itsm.example.com/",
                    "type": "server",
                    "alias": "itsm",
                    "service_account": {"token": "t"},
                }
            ]
        }
    )
    breakers = Breakers(clock=lambda: datetime.now(UTC))
    clients = JsmClients(jira, breakers=breakers)
    try:
        expected = breakers.get("jira:https://itsm.example.com")
        assert clients("itsm").breaker is expected
        assert clients.breaker("itsm") is expected and clients.breaker(None) is expected
        assert clients.breaker("elsewhere") is None
        assert JsmClients(jira).breaker("itsm") is None
    finally:
        await clients.close()
