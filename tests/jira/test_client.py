"""JiraGateway/JiraSession driving the real `jira` library over HTTP against FakeJira, served on
the test's own event loop (a blocking call on the loop would deadlock, so every passing call
also proves the library runs in the pool). Both flavours: Cloud and Server/Data Center."""

from __future__ import annotations

import asyncio
import base64
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp import ClientSession, web
from aiohttp.test_utils import TestServer
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from bot.jira.client import JiraGateway, JiraSession
from bot.jira.credentials import ApiToken, Credentials, OAuth1Token, OAuth2Token, PersonalAccessToken
from bot.jira.errors import JiraError, jira_error_detail, parse_retry_after
from bot.jira.rest_models import JiraUserCandidate, Transition
from tests.conftest import JIRA_REST_DIR, require_shared_fixtures
from tests.fakes import FakeJira

ServerFactory = Callable[[web.Application], Awaitable[TestServer]]


@dataclass
class World:
    """A populated fake: ENG open to all, SECRET only to alice, bob may browse but not edit ENG."""

    fake: FakeJira
    url: str
    alice: str
    bob: str
    carol: str
    creds: dict[str, Credentials]
    open_issue: str
    secret_issue: str
    classified_issue: str


def _credentials(fake: FakeJira, user_id: str, name: str) -> Credentials:
    if fake.is_cloud:
        return ApiToken(email=fake.users[user_id].email, token=f"{name}-api-token")
    token = f"{name}-pat-token"
    fake.add_token(token, user_id)
    return PersonalAccessToken(token)


def populate(fake: FakeJira, url: str) -> World:
    people = {}
    for name, display in (("alice", "Alice Archer"), ("bob", "Bob Baker"), ("carol", "Carol Cole")):
        people[name] = fake.add_user(
            display,
            email=f"{name}@example.com",
            name=name,
            password=f"{name}-api-token",
            groups=("jira-users", f"team-{name}"),
        )
    alice, bob, carol = people["alice"], people["bob"], people["carol"]
    fake.add_project("ENG", "Engineering", issue_types=("Task", "Bug"), editors={alice, carol})
    fake.add_project("SECRET", "Secret Plans", browse={alice})
    fake.set_security_level("Staff only", {alice})
    open_issue = fake.add_issue(
        "ENG",
        "Login page is slow",
        issue_type="Bug",
        reporter=alice,
        assignee=carol,
        priority="High",
        description="Steps:\n# open *login*\n# wait",
    )
    classified = fake.add_issue("ENG", "Salary review", reporter=alice, security="Staff only")
    secret = fake.add_issue("SECRET", "Moon base", reporter=alice)
    creds = {name: _credentials(fake, user_id, name) for name, user_id in people.items()}
    return World(fake, url, alice, bob, carol, creds, open_issue, secret, classified)


@pytest.fixture(params=["cloud", "server"])
def fake(request: pytest.FixtureRequest) -> FakeJira:
    return FakeJira(request.param)


@pytest.fixture
async def server(aiohttp_server: ServerFactory, fake: FakeJira) -> TestServer:
    return await aiohttp_server(fake.app())


@pytest.fixture
def world(fake: FakeJira, server: TestServer) -> World:
    return populate(fake, str(server.make_url("")).rstrip("/"))


@pytest.fixture
async def gateway() -> AsyncIterator[JiraGateway]:
    gw = JiraGateway(max_workers=4, timeout=3.0)
    yield gw
    await gw.close()


def session_for(gateway: JiraGateway, world: World, who: str = "alice") -> JiraSession:
    return gateway.session(world.url, world.creds[who], is_cloud=world.fake.is_cloud)


async def expect_error(awaitable: Awaitable[Any]) -> JiraError:
    with pytest.raises(JiraError) as caught:
        await awaitable
    return caught.value


# -- every method, both flavours ---------------------------------------------------------------


async def test_myself_identifies_the_user_per_flavour(world: World, gateway: JiraGateway) -> None:
    me = await session_for(gateway, world).myself()
    assert me.display_name == "Alice Archer"
    assert me.email == "alice@example.com"
    if world.fake.is_cloud:
        assert me.account_id == world.alice and not me.name and not me.key
    else:
        assert (me.name, me.account_id) == ("alice", "")
        assert me.key.startswith("JIRAUSER")
    assert me.identifier == world.alice


async def test_issue_card(world: World, gateway: JiraGateway) -> None:
    card = await session_for(gateway, world).issue(world.open_issue)
    assert (card.key, card.summary, card.status) == ("ENG-1", "Login page is slow", "To Do")
    assert (card.issue_type, card.priority, card.project_key) == ("Bug", "High", "ENG")
    assert card.assignee_name == "Carol Cole" and card.assignee_id == world.carol
    assert card.reporter_name == "Alice Archer" and card.reporter_id == world.alice
    assert card.description == "Steps:\n# open *login*\n# wait"  # wiki markup, untouched
    assert card.browse_url == f"{world.url}/browse/ENG-1"
    assert card.id == world.fake.issue("ENG-1")["id"]
    assert card.security_level is None
    # Only the card's fields are asked for.
    fields = world.fake.requests_to("/rest/api/2/issue/ENG-1")[-1].query["fields"]
    assert set(fields.split(",")) >= {"summary", "status", "assignee", "security"}


async def test_issue_card_shows_the_security_level(world: World, gateway: JiraGateway) -> None:
    card = await session_for(gateway, world).issue(world.classified_issue)
    assert card.security_level == "Staff only"
    assert not (await session_for(gateway, world).issue(world.open_issue)).security_level


async def test_transitions_and_transition(world: World, gateway: JiraGateway) -> None:
    session = session_for(gateway, world)
    transitions = await session.transitions(world.open_issue)
    assert transitions == [
        Transition(id="11", name="Start Progress", to_status="In Progress"),
        Transition(id="31", name="Done", to_status="Done"),
    ]
    await session.transition(world.open_issue, "11")
    assert world.fake.issue(world.open_issue)["status"] == "In Progress"
    assert (await session.issue(world.open_issue)).status == "In Progress"


async def test_invalid_transition_is_a_bad_request(world: World, gateway: JiraGateway) -> None:
    error = await expect_error(session_for(gateway, world).transition(world.open_issue, "41"))
    assert error.kind == "bad_request" and error.status == 400
    assert "Transition id '41' is not valid" in error.detail
    assert world.fake.issue(world.open_issue)["status"] == "To Do"


async def test_assignable_users_use_the_flavours_parameter(world: World, gateway: JiraGateway) -> None:
    users = await session_for(gateway, world).assignable_users(world.open_issue, "al")
    assert [u.display_name for u in users] == ["Alice Archer"]
    request = world.fake.requests_to("/rest/api/2/user/assignable/search")[-1]
    if world.fake.is_cloud:
        assert request.query["query"] == "al" and "username" not in request.query
        assert users[0].account_id == world.alice and not users[0].name
    else:
        assert request.query["username"] == "al" and "query" not in request.query
        assert users[0].name == "alice" and not users[0].account_id
    assert request.query["issueKey"] == world.open_issue
    assert users[0].email == "alice@example.com"
    # Bob cannot edit ENG, so he is not assignable.
    assert await session_for(gateway, world).assignable_users(world.open_issue, "bob") == []


async def test_assign_and_unassign(world: World, gateway: JiraGateway) -> None:
    session = session_for(gateway, world)
    (alice,) = await session.assignable_users(world.open_issue, "Alice")
    await session.assign(world.open_issue, alice)
    assert world.fake.issue(world.open_issue)["assignee"] == world.alice
    put = world.fake.requests_to(f"/rest/api/2/issue/{world.open_issue}/assignee", "PUT")[-1]
    assert put.body == ({"accountId": world.alice} if world.fake.is_cloud else {"name": "alice"})
    assert put.status == 204

    await session.assign(world.open_issue, None)
    assert world.fake.issue(world.open_issue)["assignee"] is None
    assert not (await session.issue(world.open_issue)).is_assigned


async def test_assigning_someone_unassignable_is_a_bad_request(world: World, gateway: JiraGateway) -> None:
    bob = JiraUserCandidate(display_name="Bob Baker", account_id=world.bob if world.fake.is_cloud else "")
    if not world.fake.is_cloud:
        bob = JiraUserCandidate(display_name="Bob Baker", name=world.bob)
    error = await expect_error(session_for(gateway, world).assign(world.open_issue, bob))
    assert error.kind == "bad_request"
    assert error.detail == f"assignee: User '{world.bob}' cannot be assigned issues."


async def test_projects_are_those_the_user_can_browse(world: World, gateway: JiraGateway) -> None:
    alice_sees = await session_for(gateway, world).projects()
    assert [(p.key, p.name) for p in alice_sees] == [("ENG", "Engineering"), ("SECRET", "Secret Plans")]
    assert all(p.id.isdigit() for p in alice_sees)
    carol_sees = await session_for(gateway, world, "carol").projects()
    assert [p.key for p in carol_sees] == ["ENG"]


async def test_create_meta_uses_the_per_project_endpoints(world: World, gateway: JiraGateway) -> None:
    meta = await session_for(gateway, world).create_meta("ENG")
    assert [t.name for t in meta.issue_types] == ["Task", "Bug"]
    bug = meta.issue_type("bug")
    assert bug is not None and bug.id == world.fake.issue_type_ids["Bug"]
    summary = bug.field("summary")
    assert summary is not None and summary.required and summary.schema_type == "string"
    priority = bug.field("priority")
    assert priority is not None and priority.has_default_value and not priority.required
    assert priority.allowed_values is not None
    assert [v.name for v in priority.allowed_values][:2] == ["Highest", "High"]
    labels = bug.field("labels")
    assert labels is not None and (labels.schema_type, labels.schema_items) == ("array", "string")
    assert {f.id for f in bug.required_fields} == {"summary", "issuetype", "project", "reporter"}
    paths = {r.rest_path for r in world.fake.requests}
    type_id = world.fake.issue_type_ids["Task"]
    assert {
        "/rest/api/2/issue/createmeta/ENG/issuetypes",
        f"/rest/api/2/issue/createmeta/ENG/issuetypes/{type_id}",
    } <= paths
    assert "/rest/api/2/issue/createmeta" not in paths


async def test_create_meta_for_chosen_issue_types_only(world: World, gateway: JiraGateway) -> None:
    bug_id = world.fake.issue_type_ids["Bug"]
    meta = await session_for(gateway, world).create_meta("ENG", [bug_id])
    assert [t.id for t in meta.issue_types] == [bug_id]
    field_requests = [
        r
        for r in world.fake.requests
        if r.rest_path.startswith("/rest/api/2/issue/createmeta/ENG/issuetypes/")
    ]
    assert len(field_requests) == 1


async def test_create_meta_of_a_hidden_project_is_not_found(world: World, gateway: JiraGateway) -> None:
    error = await expect_error(session_for(gateway, world, "carol").create_meta("SECRET"))
    assert error.kind == "not_found"
    legacy = world.fake.requests_to("/rest/api/2/issue/createmeta")
    # On Server a 404 may mean Jira 8, so the old endpoint is asked; Cloud never needs it.
    assert len(legacy) == (0 if world.fake.is_cloud else 1)


async def test_create_issue(world: World, gateway: JiraGateway) -> None:
    session = session_for(gateway, world)
    task_id = world.fake.issue_type_ids["Task"]
    created = await session.create_issue(
        {
            "project": {"key": "ENG"},
            "issuetype": {"id": task_id},
            "summary": "Add dark mode",
            "description": "As a user I want *dark* mode",
            "priority": {"name": "Low"},
            "labels": ["ui"],
        }
    )
    assert created.key == "ENG-3"
    assert created.browse_url == f"{world.url}/browse/ENG-3"
    stored = world.fake.issue("ENG-3")
    assert (stored["id"], stored["summary"], stored["priority"]) == (created.id, "Add dark mode", "Low")
    assert stored["reporter"] == world.alice and stored["labels"] == ["ui"]


async def test_create_issue_without_a_summary_explains_jiras_error(
    world: World, gateway: JiraGateway
) -> None:
    task_id = world.fake.issue_type_ids["Task"]
    error = await expect_error(
        session_for(gateway, world).create_issue({"project": {"key": "ENG"}, "issuetype": {"id": task_id}})
    )
    assert error.kind == "bad_request" and error.status == 400
    assert error.detail == "summary: You must specify a summary of the issue."
    assert (
        error.user_message() == "Jira refused the request: summary: You must specify a summary of the issue."
    )


async def test_add_comment(world: World, gateway: JiraGateway) -> None:
    comment_id = await session_for(gateway, world).add_comment(world.open_issue, "Looking into it [~bob]")
    (comment,) = world.fake.comments[world.open_issue]
    assert comment["id"] == comment_id and comment["body"] == "Looking into it [~bob]"
    author = comment["author"]
    assert (author.get("accountId") or author.get("name")) == world.alice


async def test_search_uses_each_flavours_endpoint(world: World, gateway: JiraGateway) -> None:
    for n in range(5):
        world.fake.add_issue("ENG", f"Chore {n}", reporter=world.alice)
    world.fake.max_results_cap = 2  # forces several pages
    found = await session_for(gateway, world).search(
        "project = ENG ORDER BY created DESC",
        ["summary", "status"],
        max_results=5,
    )
    assert len(found) == 5
    assert all(set(issue["fields"]) == {"summary", "status"} for issue in found)
    assert found[0]["key"] == "ENG-1"
    paths = [r.rest_path for r in world.fake.requests]
    if world.fake.is_cloud:
        pages = world.fake.requests_to("/rest/api/3/search/jql", "POST")
        assert len(pages) == 3
        assert "nextPageToken" not in pages[0].body and pages[1].body["nextPageToken"]
        assert pages[0].body["fields"] == ["summary", "status"]
        assert "/rest/api/2/search" not in paths
    else:
        pages = world.fake.requests_to("/rest/api/2/search", "POST")
        assert [p.body["startAt"] for p in pages] == [0, 2, 4]
        assert not any("/search/jql" in p for p in paths)


async def test_search_hides_what_the_user_cannot_see(world: World, gateway: JiraGateway) -> None:
    carol = await session_for(gateway, world, "carol").search("assignee = currentUser() OR reporter = alice")
    assert [i["key"] for i in carol] == [world.open_issue]
    alice = await session_for(gateway, world).search("reporter = currentUser()")
    assert {i["key"] for i in alice} == {world.open_issue, world.classified_issue, world.secret_issue}


async def test_search_understands_the_usual_jql(world: World, gateway: JiraGateway) -> None:
    world.fake.add_issue("ENG", "Tidy labels", reporter=world.bob, status="Done", labels=("cleanup",))
    session = session_for(gateway, world)

    async def keys(jql: str) -> list[str]:
        return sorted(i["key"] for i in await session.search(jql))

    assert await keys("project = ENG AND assignee is EMPTY") == ["ENG-2", "ENG-3"]
    assert await keys("project = ENG AND assignee IS NOT EMPTY") == ["ENG-1"]
    assert await keys("status not in ('To Do') ") == ["ENG-3"]
    assert await keys('labels = cleanup OR key = "SECRET-1"') == ["ENG-3", "SECRET-1"]
    assert await keys("issuetype != Task AND priority = High") == ["ENG-1"]


async def test_search_with_invalid_jql_is_a_bad_request(world: World, gateway: JiraGateway) -> None:
    error = await expect_error(session_for(gateway, world).search("colour = red"))
    assert error.kind == "bad_request"
    assert "Field 'colour' does not exist" in error.user_message()


async def test_user_groups(world: World, gateway: JiraGateway) -> None:
    assert await session_for(gateway, world, "bob").user_groups() == ["jira-users", "team-bob"]
    assert world.fake.requests_to("/rest/api/2/myself")[-1].query["expand"] == "groups"


async def test_server_info(world: World, gateway: JiraGateway) -> None:
    info = await session_for(gateway, world).server_info()
    assert info["deploymentType"] == ("Cloud" if world.fake.is_cloud else "Server")
    assert info["version"] == world.fake.version


# -- errors ------------------------------------------------------------------------------------


async def test_unknown_credentials_ask_to_reconnect(world: World, gateway: JiraGateway) -> None:
    stale: Credentials = (
        ApiToken(email="alice@example.com", token="tok-9f8e7d-stale")
        if world.fake.is_cloud
        else PersonalAccessToken("tok-9f8e7d-stale")
    )
    error = await expect_error(gateway.session(world.url, stale, is_cloud=world.fake.is_cloud).myself())
    assert (error.kind, error.status) == ("auth", 401)
    assert "/jira connect" in error.user_message()
    assert "tok-9f8e7d-stale" not in str(error) + error.user_message()


async def test_no_edit_permission_is_forbidden(world: World, gateway: JiraGateway) -> None:
    error = await expect_error(session_for(gateway, world, "bob").assign(world.open_issue, None))
    assert (error.kind, error.status) == ("forbidden", 403)
    assert error.detail == "You do not have permission to assign issues."
    assert "administrator" in error.user_message()


async def test_issues_the_user_cannot_see_are_not_found(world: World, gateway: JiraGateway) -> None:
    carol = session_for(gateway, world, "carol")
    for key in (world.secret_issue, world.classified_issue, "ENG-999"):
        error = await expect_error(carol.issue(key))
        assert (error.kind, error.status) == ("not_found", 404)
        assert error.detail == "Issue does not exist or you do not have permission to see it."
        assert "issue key" in error.user_message()


async def test_a_short_retry_after_is_honoured_once(world: World, gateway: JiraGateway) -> None:
    world.fake.fail_next(1, 429, retry_after=0)
    assert (await session_for(gateway, world).myself()).display_name == "Alice Archer"
    assert [r.status for r in world.fake.requests_to("/rest/api/2/myself")] == [429, 200]

    world.fake.fail_next(1, 503, retry_after=0)
    assert (await session_for(gateway, world).issue(world.open_issue)).key == world.open_issue


async def test_rate_limit_gives_up_after_one_retry(world: World, gateway: JiraGateway) -> None:
    world.fake.fail_next(2, 429, retry_after=0)
    error = await expect_error(session_for(gateway, world).myself())
    assert (error.kind, error.status, error.retry_after) == ("rate_limited", 429, 0)
    assert len(world.fake.requests_to("/rest/api/2/myself")) == 2


async def test_a_long_retry_after_is_reported_not_waited_for(world: World, gateway: JiraGateway) -> None:
    world.fake.fail_next(1, 429, retry_after=30)
    error = await expect_error(session_for(gateway, world).transitions(world.open_issue))
    assert (error.kind, error.retry_after) == ("rate_limited", 30)
    assert error.user_message() == "Jira is receiving too many requests. Try again in 30 s."
    assert len(world.fake.requests) == 1  # neither the library nor the gateway retried


async def test_server_errors_are_unavailable(world: World, gateway: JiraGateway) -> None:
    world.fake.fail_next(1, 500)
    error = await expect_error(session_for(gateway, world).projects())
    assert (error.kind, error.status) == ("unavailable", 500)
    assert error.user_message() == "Jira is not reachable right now. Try again later."
    world.fake.fail_next(1, 503)  # no Retry-After: not retried
    assert (await expect_error(session_for(gateway, world).projects())).kind == "unavailable"
    assert len(world.fake.requests) == 2


async def test_a_slow_jira_times_out(world: World) -> None:
    world.fake.latency = 0.6
    gateway = JiraGateway(max_workers=2, timeout=0.2)
    try:
        error = await expect_error(session_for(gateway, world).myself())
    finally:
        await gateway.close()
    assert error.kind == "timeout" and error.status is None
    assert error.user_message() == "Jira did not answer in time. Try again later."


async def test_an_unreachable_jira_is_unavailable(gateway: JiraGateway) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens there
    session = gateway.session(f"http://127.0.0.1:{port}", PersonalAccessToken("t"), is_cloud=False)
    error = await expect_error(session.myself())
    assert error.kind == "unavailable"


# -- createmeta on Jira 8 ----------------------------------------------------------------------


async def test_create_meta_falls_back_to_the_old_endpoint_on_jira_8(
    aiohttp_server: ServerFactory, gateway: JiraGateway
) -> None:
    fake = FakeJira("server", version="8.13.0")
    server = await aiohttp_server(fake.app())
    world = populate(fake, str(server.make_url("")).rstrip("/"))
    session = session_for(gateway, world)

    meta = await session.create_meta("ENG")
    assert [t.name for t in meta.issue_types] == ["Task", "Bug"]
    assert meta.project_id == fake.projects["ENG"].id
    summary = meta.issue_types[0].field("summary")
    assert summary is not None and summary.required
    legacy = fake.requests_to("/rest/api/2/issue/createmeta", "GET")
    assert legacy[0].query == {"projectKeys": "ENG", "expand": "projects.issuetypes.fields"}

    # Learned once: the next call goes straight to the old endpoint.
    before = len(fake.requests)
    await session.create_meta("ENG")
    assert [r.rest_path for r in fake.requests[before:]] == ["/rest/api/2/issue/createmeta"]
    error = await expect_error(session_for(gateway, world, "bob").create_meta("ENG"))
    assert error.kind == "not_found"  # bob cannot create in ENG: Jira 8 answers no project


async def test_create_meta_from_real_metadata(aiohttp_server: ServerFactory, gateway: JiraGateway) -> None:
    require_shared_fixtures()
    for flavour in ("cloud", "server"):
        fake = FakeJira(flavour)
        payload = json.loads(
            (JIRA_REST_DIR / f"{flavour}-get-create-issue-metadata-for-project.json").read_text()
        )
        (project_key,) = fake.load_createmeta(payload)
        user = fake.add_user("Dana Diaz", email="dana@example.com", name="dana", password="dana-token")
        server = await aiohttp_server(fake.app())
        creds: Credentials = ApiToken("dana@example.com", "dana-token")
        if flavour == "server":
            fake.add_token("dana-pat", user)
            creds = PersonalAccessToken("dana-pat")
        meta = await gateway.session(str(server.make_url("")), creds, is_cloud=fake.is_cloud).create_meta(
            project_key
        )
        expected = payload["projects"][0]["issuetypes"]
        assert [t.name for t in meta.issue_types] == [t["name"] for t in expected]
        for got, raw in zip(meta.issue_types, expected, strict=True):
            assert {f.id for f in got.fields} == set(raw["fields"])
            assert {f.id for f in got.required_fields} == {
                k for k, v in raw["fields"].items() if v["required"]
            }
        if flavour == "cloud":
            task = meta.issue_types[0]
            select = task.field("customfield_10068")
            assert select is not None and select.is_custom and select.name == "MJK - Checkbox"
            assert (select.schema_type, select.schema_items) == ("array", "option")
            assert select.allowed_values is not None
            assert [(v.id, v.name) for v in select.allowed_values] == [("10033", "1"), ("10034", "2")]
            description = task.field("description")
            assert description is not None and description.required


# -- OAuth ---------------------------------------------------------------------------------------


async def test_oauth2_goes_through_the_api_gateway(
    aiohttp_server: ServerFactory, gateway: JiraGateway
) -> None:
    fake = FakeJira("cloud", cloud_id="c0ffee00-1234-5678-9abc-def012345678")
    server = await aiohttp_server(fake.app())
    site = "https://example.atlassian.net"  # the site; requests must not go there
    alice = fake.add_user("Alice Archer", email="alice@example.com")
    fake.add_project("ENG")
    key = fake.add_issue("ENG", "Via the gateway", reporter=alice)
    fake.add_token("oauth-access-token", alice)
    token = OAuth2Token("oauth-access-token", fake.cloud_id, api_url=str(server.make_url("")).rstrip("/"))

    session = gateway.session(site, token, is_cloud=True)
    assert (await session.myself()).account_id == alice
    card = await session.issue(key)
    assert card.browse_url == f"{site}/browse/{key}"
    found = await session.search("project = ENG", ["summary"])
    assert [i["key"] for i in found] == [key]
    assert all(r.gateway for r in fake.requests)
    assert fake.requests[-1].path == f"/ex/jira/{fake.cloud_id}/rest/api/3/search/jql"

    # The token is no good on the site itself, nor for another cloud id.
    direct = gateway.session(
        str(server.make_url("")), PersonalAccessToken("oauth-access-token"), is_cloud=True
    )
    assert (await expect_error(direct.myself())).kind == "auth"
    other = OAuth2Token("oauth-access-token", "another-cloud", api_url=token.api_url)
    assert (await expect_error(gateway.session(site, other, is_cloud=True).myself())).kind == "not_found"


def _rsa_pair() -> tuple[str, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private, public


async def test_oauth1_signs_with_rsa_sha1(aiohttp_server: ServerFactory, gateway: JiraGateway) -> None:
    fake = FakeJira("server")
    server = await aiohttp_server(fake.app())
    private, public = _rsa_pair()
    fake.add_oauth1_consumer("jira-chatops", public)
    erin = fake.add_user("Erin Eve", email="erin@example.com", name="erin")
    fake.add_oauth1_token("access-1", erin)
    fake.add_project("OPS")
    key = fake.add_issue("OPS", "Rotate certificates", reporter=erin)
    url = str(server.make_url(""))

    session = gateway.session(
        url, OAuth1Token("jira-chatops", private, "access-1", "secret-1"), is_cloud=False
    )
    assert (await session.myself()).name == "erin"
    # Query parameters are part of the signature too.
    assert (await session.issue(key)).summary == "Rotate certificates"
    assert await session.user_groups() == []

    other_private, _ = _rsa_pair()
    forged = gateway.session(url, OAuth1Token("jira-chatops", other_private, "access-1", "s"), is_cloud=False)
    assert (await expect_error(forged.myself())).kind == "auth"


# -- the pool --------------------------------------------------------------------------------------


async def test_concurrency_is_bounded_by_the_pool(world: World) -> None:
    world.fake.latency = 0.1
    gateway = JiraGateway(max_workers=2, timeout=3.0)
    try:
        session = session_for(gateway, world)
        results = await asyncio.gather(*(session.myself() for _ in range(6)))
    finally:
        await gateway.close()
    assert {r.display_name for r in results} == {"Alice Archer"}
    assert world.fake.max_in_flight == 2
    assert len(world.fake.requests) == 6


async def test_sessions_share_one_client_per_site_and_credentials(world: World) -> None:
    gateway = JiraGateway(max_workers=1, timeout=1.0, cache_size=2)
    try:
        first = session_for(gateway, world)
        again = session_for(gateway, world)
        assert first._connection is again._connection
        session_for(gateway, world, "bob")
        session_for(gateway, world, "carol")  # evicts alice's, the least recently used
        assert session_for(gateway, world)._connection is not first._connection
    finally:
        await gateway.close()


async def test_a_closed_gateway_refuses_calls(world: World) -> None:
    gateway = JiraGateway(max_workers=1, timeout=1.0)
    session = session_for(gateway, world)
    await gateway.close()
    error = await expect_error(session.myself())
    assert error.kind == "unavailable"
    assert world.fake.requests == []


# -- the fake's own contract -----------------------------------------------------------------------


async def test_cloud_has_removed_the_old_search(aiohttp_server: ServerFactory) -> None:
    fake = FakeJira("cloud")
    server = await aiohttp_server(fake.app())
    fake.add_user("Alice Archer", email="alice@example.com", password="tok")
    async with ClientSession() as http:
        async with http.get(
            server.make_url("/rest/api/2/search"),
            params={"jql": "project = ENG"},
            headers={"Authorization": "Basic " + base64.b64encode(b"alice@example.com:tok").decode()},
        ) as response:
            assert response.status == 410
            assert response.headers["Content-Type"] == "application/json"
            body = await response.json()
        async with http.get(server.make_url("/rest/api/2/myself")) as anonymous:
            assert anonymous.status == 401
            assert set(await anonymous.json()) == {"errorMessages", "errors"}
    assert "/rest/api/3/search/jql" in jira_error_detail(body)


# -- JiraError -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("auth", "/jira connect"),
        ("forbidden", "administrator"),
        ("not_found", "issue key"),
        ("rate_limited", "Try again in a minute"),
        ("unavailable", "Try again later"),
        ("timeout", "did not answer in time"),
        ("bad_request", "Check what you entered"),
    ],
)
def test_every_error_kind_says_what_to_do(kind: Any, expected: str) -> None:
    message = JiraError(kind).user_message()
    assert expected in message and "\n" not in message


def test_error_details_are_one_short_line() -> None:
    error = JiraError("bad_request", status=400, detail="line one\nline two " + "x" * 500)
    assert "\n" not in error.detail and len(error.detail) <= 300
    assert error.detail.startswith("line one line two")
    assert jira_error_detail({"errorMessages": ["A"], "errors": {"summary": "B"}}) == "A; summary: B"
    assert jira_error_detail({"message": "gateway says no"}) == "gateway says no"
    assert jira_error_detail("not json") == ""


def test_retry_after_in_seconds_or_as_a_date() -> None:
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
