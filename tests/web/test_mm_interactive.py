"""Button clicks, menu choices and dialog submissions with signed contexts, end to end: the bot
posts a card and opens dialogs through MattermostClient on the fake Mattermost, the fake builds
the clicks and submissions as Mattermost sends them, the bot's endpoints check and dispatch them.
Also the client's user, role, dialog and direct-message calls."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from bot.mattermost.client import MattermostClient
from bot.mattermost.models import DeliveryError, OutgoingPost
from bot.mattermost.payloads import (
    ActionFactory,
    ActionRequest,
    ActionResponse,
    Attachment,
    CommandResponse,
    Dialog,
    DialogElement,
    DialogOption,
    DialogResponse,
    DialogSubmission,
    OpenDialogRequest,
    PostUpdate,
    attachments_props,
)
from bot.security.signing import ContextSigner, MemoryNonces, derive_key
from bot.store.db import Database
from bot.store.nonces import StoreNonces
from bot.web.mm_interactive import (
    EXPIRED_ACTION_TEXT,
    EXPIRED_DIALOG_TEXT,
    FAILED_DIALOG_TEXT,
    FAILED_TEXT,
    FORGED_TEXT,
    REPLAYED_ACTION_TEXT,
    REPLAYED_DIALOG_TEXT,
    InteractiveHandler,
)
from tests.fakes import FakeMattermost

TOKEN = "bot-token-0f3a"
START = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now


class Service:
    """Answers clicks and submissions the way each test needs; records what reached it."""

    def __init__(self) -> None:
        self.actions: list[ActionRequest] = []
        self.dialogs: list[DialogSubmission] = []
        self.action_answer: ActionResponse | Exception = ActionResponse(
            update=PostUpdate(message="PROJ-1 assigned to you", props={})
        )
        self.dialog_answer: DialogResponse | Exception | None = None
        # When set, submissions wait for it: two of them are then in the service at once.
        self.dialog_gate: asyncio.Event | None = None

    async def handle_action(self, request: ActionRequest) -> ActionResponse:
        self.actions.append(request)
        if isinstance(self.action_answer, Exception):
            raise self.action_answer
        return self.action_answer

    async def handle_dialog(self, submission: DialogSubmission) -> DialogResponse | None:
        self.dialogs.append(submission)
        if self.dialog_gate is not None:
            await self.dialog_gate.wait()
        if isinstance(self.dialog_answer, Exception):
            raise self.dialog_answer
        return self.dialog_answer


class World:
    def __init__(
        self,
        fake: FakeMattermost,
        client: MattermostClient,
        bot: TestClient,
        clock: Clock,
        signer: ContextSigner,
    ) -> None:
        self.fake = fake
        self.client = client
        self.bot = bot
        self.clock = clock
        self.signer = signer
        self.actions = ActionFactory(signer, str(bot.make_url("/mattermost/actions")), clock=clock)
        self.dialog_url = str(bot.make_url("/mattermost/dialogs"))
        self.alice = fake.add_user("alice", first_name="Alice", email="alice@example.com")
        self.channel = fake.add_channel("eng", "jira-updates", members=[self.alice, fake.bot_user_id])

    async def post_card(self, *actions: Any) -> dict[str, Any]:
        card = Attachment(title="PROJ-1: Fix login", text="Status: To Do", actions=list(actions))
        post_id = await self.client.create_post(
            OutgoingPost(channel_id=self.channel, message="", props=attachments_props([card]))
        )
        post = self.fake.get_post(post_id)
        assert post is not None
        return post

    async def click(
        self, post: dict[str, Any], name: str, *, user_id: str | None = None, selected: str | None = None
    ) -> tuple[int, str, dict[str, Any]]:
        action = self.fake.find_action(post["props"], name)
        url, body = self.fake.action_request(
            user_id or self.alice,
            action,
            channel_id=self.channel,
            post_id=post["id"],
            selected_option=selected,
        )
        return await self.send(url, body)

    async def send(self, url: str, body: dict[str, Any]) -> tuple[int, str, dict[str, Any]]:
        path = url[len(str(self.bot.make_url(""))) :]
        response = await self.bot.post(path, json=body)
        return response.status, response.headers["Content-Type"], await response.json()


@pytest.fixture
def fake() -> FakeMattermost:
    return FakeMattermost(token=TOKEN)


@pytest.fixture
def service() -> Service:
    return Service()


@pytest.fixture
async def world(
    aiohttp_server: Callable[..., Awaitable[TestServer]],
    aiohttp_client: Callable[..., Awaitable[TestClient]],
    fake: FakeMattermost,
    service: Service,
) -> AsyncIterator[World]:
    mm_server = await aiohttp_server(fake.app())
    client = MattermostClient(str(mm_server.make_url("")), TOKEN, timeout=2.0, retry_max_sleep=0.1)
    await client.start()
    clock = Clock()
    signer = ContextSigner(derive_key(b"s" * 32, "interactive-context"))
    handler = InteractiveHandler(service, signer, remember=MemoryNonces(clock), clock=clock)
    app = web.Application()
    app.add_routes(handler.routes())
    bot = await aiohttp_client(app)
    yield World(fake, client, bot, clock, signer)
    await client.close()


# -- buttons and menus ----------------------------------------------------------------------------


async def test_a_signed_button_click_reaches_the_service_with_the_verified_context(
    world: World, service: Service
) -> None:
    post = await world.post_card(
        world.actions.button("Assign to me", {"action": "assign_me", "issue": "PROJ-1"}, style="primary")
    )
    status, content_type, body = await world.click(post, "Assign to me")

    assert (status, content_type) == (200, "application/json")
    assert body == {"update": {"message": "PROJ-1 assigned to you", "props": {}}}
    [click] = service.actions
    assert click.context == {"action": "assign_me", "issue": "PROJ-1"}
    assert click.user_id == world.alice and click.user_name == "alice"
    assert click.post_id == post["id"] and click.channel_name == "jira-updates" and click.team_domain == "eng"
    assert click.type == "button" and click.trigger_id and click.selected_option is None


async def test_a_menu_choice_arrives_as_selected_option(world: World, service: Service) -> None:
    service.action_answer = ActionResponse.ephemeral("PROJ-1 moved to In Progress")
    menu = world.actions.menu(
        "Transition", {"action": "transition", "issue": "PROJ-1"}, [("In Progress", "21"), ("Done", "31")]
    )
    post = await world.post_card(menu)
    status, _, body = await world.click(post, "Transition", selected="21")
    assert status == 200 and body == {"ephemeral_text": "PROJ-1 moved to In Progress"}
    [click] = service.actions
    assert click.selected_option == "21"
    assert click.context == {"action": "transition", "issue": "PROJ-1", "selected_option": "21"}


async def test_a_tampered_context_is_refused_with_403(world: World, service: Service) -> None:
    post = await world.post_card(
        world.actions.button("Assign to me", {"action": "assign_me", "issue": "PROJ-1"})
    )
    action = world.fake.find_action(post["props"], "Assign to me")
    url, body = world.fake.action_request(world.alice, action, channel_id=world.channel, post_id=post["id"])
    body["context"]["issue"] = "SECRET-9"
    status, content_type, answer = await world.send(url, body)
    assert (status, content_type) == (403, "application/json")
    assert answer == {"ephemeral_text": FORGED_TEXT}
    assert service.actions == []


async def test_an_unsigned_context_is_refused(world: World, service: Service) -> None:
    forged = {
        "name": "Assign",
        "type": "button",
        "integration": {"url": world.actions.url, "context": {"a": 1}},
    }
    url, body = world.fake.action_request(world.alice, forged, channel_id=world.channel)
    status, _, answer = await world.send(url, body)
    assert status == 403 and answer["ephemeral_text"] == FORGED_TEXT
    assert service.actions == []


async def test_an_expired_button_says_so_and_does_nothing(world: World, service: Service) -> None:
    post = await world.post_card(world.actions.button("Share", {"action": "share"}, ttl_seconds=60))
    world.clock.now = START + timedelta(seconds=61)
    status, _, answer = await world.click(post, "Share")
    assert status == 200 and answer == {"ephemeral_text": EXPIRED_ACTION_TEXT}
    assert service.actions == []


async def test_a_single_use_choice_is_refused_when_replayed(world: World, service: Service) -> None:
    post = await world.post_card(
        world.actions.button("Ann Lee", {"action": "assign", "account": "ann"}, once=True),
        world.actions.button("Share", {"action": "share"}),
    )
    assert (await world.click(post, "Ann Lee"))[0] == 200
    status, _, answer = await world.click(post, "Ann Lee")
    assert status == 200 and answer == {"ephemeral_text": REPLAYED_ACTION_TEXT}
    # A reusable button on the same card keeps working.
    assert (await world.click(post, "Share"))[0] == 200
    assert (await world.click(post, "Share"))[0] == 200
    assert [a.context["action"] for a in service.actions] == ["assign", "share", "share"]


async def test_a_button_bound_to_one_user_refuses_others(world: World, service: Service) -> None:
    bob = world.fake.add_user("bob")
    post = await world.post_card(world.actions.button("Pick", {"action": "pick"}, user_id=world.alice))
    status, _, _ = await world.click(post, "Pick", user_id=bob)
    assert status == 403 and service.actions == []
    assert (await world.click(post, "Pick"))[0] == 200


async def test_a_failing_action_gets_a_short_ephemeral_error(world: World, service: Service) -> None:
    service.action_answer = RuntimeError("token=abc123 leaked")
    post = await world.post_card(world.actions.button("Share", {"action": "share"}))
    action = world.fake.find_action(post["props"], "Share")
    _, body = world.fake.action_request(world.alice, action, channel_id=world.channel, post_id=post["id"])
    response = await world.bot.post("/mattermost/actions", json=body)
    raw = await response.text()
    assert response.status == 200 and await response.json() == {"ephemeral_text": FAILED_TEXT}
    assert "abc123" not in raw and "Traceback" not in raw


@pytest.mark.parametrize("path", ["/mattermost/actions", "/mattermost/dialogs"])
@pytest.mark.parametrize("junk", [b"{", b"[1, 2]", b'{"context": {}}'], ids=["bad json", "array", "no user"])
async def test_junk_gets_400(world: World, service: Service, path: str, junk: bytes) -> None:
    response = await world.bot.post(path, data=junk, headers={"Content-Type": "application/json"})
    assert response.status == 400 and response.headers["Content-Type"] == "application/json"
    assert service.actions == [] and service.dialogs == []


# -- dialogs --------------------------------------------------------------------------------------


def create_dialog(state: str) -> Dialog:
    return Dialog(
        callback_id="create_issue",
        title="Create Jira issue in a rather long project name",
        submit_label="Create",
        notify_on_cancel=True,
        state=state,
        elements=[
            DialogElement(display_name="Summary", name="summary", type="text", default="Login fails"),
            DialogElement(
                display_name="Issue type",
                name="issuetype",
                type="select",
                default="10001",
                options=[DialogOption(text="Bug", value="10001"), DialogOption(text="Task", value="10002")],
            ),
            DialogElement(display_name="Description", name="description", type="textarea", optional=True),
            DialogElement(display_name="Assignee", name="assignee", type="select", data_source="users"),
        ],
    )


async def open_create_dialog(world: World, **sign: Any) -> dict[str, Any]:
    state = world.signer.dumps(
        {"action": "create", "project": "PROJ"},
        ttl_seconds=sign.pop("ttl_seconds", 900),
        now=world.clock(),
        once=sign.pop("once", True),
        **sign,
    )
    trigger_id = world.fake.issue_trigger_id(world.alice)
    await world.client.open_dialog(trigger_id, world.dialog_url, create_dialog(state).to_dict())
    opened = world.fake.dialogs[-1]
    assert opened["user_id"] == world.alice and opened["url"] == world.dialog_url
    return opened


async def test_a_dialog_submission_with_signed_state(world: World, service: Service) -> None:
    opened = await open_create_dialog(world, user_id=world.alice)
    # Shortened to Mattermost's 24 bytes ("…" takes three of them).
    assert opened["dialog"]["title"] == "Create Jira issue in…"
    assert len(opened["dialog"]["title"].encode()) <= 24
    service.dialog_answer = DialogResponse(errors={"summary": "Summary is required"})
    url, body = world.fake.dialog_submission(
        opened, {"summary": "", "issuetype": "10001", "assignee": world.alice}, channel_id=world.channel
    )
    status, content_type, answer = await world.send(url, body)
    assert (status, content_type) == (200, "application/json")
    assert answer == {"errors": {"summary": "Summary is required"}}

    service.dialog_answer = None
    url, body = world.fake.dialog_submission(opened, {"summary": "Login fails", "issuetype": "10001"})
    status, _, answer = await world.send(url, body)
    assert status == 200 and answer == {}
    first, second = service.dialogs
    assert first.context == second.context == {"action": "create", "project": "PROJ"}
    assert first.callback_id == "create_issue" and first.submission["assignee"] == world.alice
    assert second.submission == {"summary": "Login fails", "issuetype": "10001"}


async def test_forged_expired_and_foreign_dialog_states_are_refused(world: World, service: Service) -> None:
    opened = await open_create_dialog(world, user_id=world.alice, ttl_seconds=60)
    url, body = world.fake.dialog_submission(opened, {"summary": "x"})

    tampered = dict(body, state=body["state"].replace("PROJ", "HR"))
    assert (await world.send(url, tampered))[::2] == (403, {"error": FORGED_TEXT})
    assert (await world.send(url, dict(body, state="")))[0] == 403
    bob = world.fake.add_user("bob")
    assert (await world.send(url, dict(body, user_id=bob)))[0] == 403
    # A context smuggled into the body is not taken for the verified one.
    smuggled = dict(body, state="", context={"action": "create", "project": "HR"})
    assert (await world.send(url, smuggled))[0] == 403

    world.clock.now = START + timedelta(seconds=60)
    assert (await world.send(url, body))[::2] == (200, {"error": EXPIRED_DIALOG_TEXT})
    assert service.dialogs == []


async def test_a_cancelled_dialog_is_verified_and_reported(world: World, service: Service) -> None:
    opened = await open_create_dialog(world)
    service.dialog_answer = DialogResponse(error="ignored by Mattermost")
    url, body = world.fake.dialog_submission(opened, {}, cancelled=True)
    assert body["submission"] is None
    status, _, answer = await world.send(url, body)
    assert status == 200 and answer == {}
    [cancel] = service.dialogs
    assert cancel.cancelled and cancel.submission == {} and cancel.context["project"] == "PROJ"


async def test_a_failing_dialog_handler_gets_a_general_error(world: World, service: Service) -> None:
    opened = await open_create_dialog(world)
    service.dialog_answer = ValueError("boom")
    url, body = world.fake.dialog_submission(opened, {"summary": "x"})
    assert (await world.send(url, body))[::2] == (200, {"error": FAILED_DIALOG_TEXT})
    # What the failed handler did is unknown, so the form is not acted on again.
    service.dialog_answer = None
    assert (await world.send(url, body))[::2] == (200, {"error": REPLAYED_DIALOG_TEXT})
    assert len(service.dialogs) == 1


# -- single use -----------------------------------------------------------------------------------


async def test_a_dialog_sent_again_after_it_acted_is_refused(world: World, service: Service) -> None:
    opened = await open_create_dialog(world, user_id=world.alice)
    url, body = world.fake.dialog_submission(opened, {"summary": "Login fails", "issuetype": "10001"})
    assert (await world.send(url, body))[::2] == (200, {})
    for _ in range(3):
        assert (await world.send(url, body))[::2] == (200, {"error": REPLAYED_DIALOG_TEXT})
    assert len(service.dialogs) == 1


async def test_an_error_answer_gives_the_form_back_for_a_correction(world: World, service: Service) -> None:
    opened = await open_create_dialog(world, user_id=world.alice)
    service.dialog_answer = DialogResponse(error="Jira refused the issue: no such priority.")
    url, body = world.fake.dialog_submission(opened, {"summary": "Login fails"})
    assert (await world.send(url, body))[::2] == (200, {"error": "Jira refused the issue: no such priority."})
    service.dialog_answer = None
    assert (await world.send(url, body))[::2] == (200, {})
    # Once it acted, the form is used up.
    assert (await world.send(url, body))[::2] == (200, {"error": REPLAYED_DIALOG_TEXT})
    assert len(service.dialogs) == 2


async def test_a_dialog_state_that_is_not_single_use_is_refused(world: World, service: Service) -> None:
    opened = await open_create_dialog(world, user_id=world.alice, once=False)
    url, body = world.fake.dialog_submission(opened, {"summary": "x"})
    assert (await world.send(url, body))[::2] == (200, {"error": EXPIRED_DIALOG_TEXT})
    # Tampering is still told apart from age.
    tampered = dict(body, state=body["state"].replace("PROJ", "HR"))
    assert (await world.send(url, tampered))[::2] == (403, {"error": FORGED_TEXT})
    assert service.dialogs == []


async def test_two_racing_submissions_of_one_form_act_once(world: World, service: Service) -> None:
    opened = await open_create_dialog(world, user_id=world.alice)
    url, body = world.fake.dialog_submission(opened, {"summary": "Login fails"})
    service.dialog_gate = asyncio.Event()
    first = asyncio.ensure_future(world.send(url, body))
    second = asyncio.ensure_future(world.send(url, body))
    # One of them is held in the service; the other is refused without reaching it.
    done, _ = await asyncio.wait([first, second], timeout=30, return_when=asyncio.FIRST_COMPLETED)
    assert [t.result()[::2] for t in done] == [(200, {"error": REPLAYED_DIALOG_TEXT})]
    service.dialog_gate.set()
    answers = sorted([(await first)[2], (await second)[2]], key=len)
    assert answers == [{}, {"error": REPLAYED_DIALOG_TEXT}]
    assert len(service.dialogs) == 1


async def test_replicas_sharing_the_store_agree_on_one_submission(
    aiohttp_client: Callable[..., Awaitable[TestClient]], world: World, tmp_path: Any
) -> None:
    """Two bots (replicas) over one database: the same form sent to both acts on one only."""
    db = await Database.open(f"sqlite:///{tmp_path / 'shared.db'}")
    services = [Service(), Service()]
    replicas = []
    for service in services:
        handler = InteractiveHandler(
            service, world.signer, remember=StoreNonces(db.kv, world.clock), clock=world.clock
        )
        app = web.Application()
        app.add_routes(handler.routes())
        replicas.append(await aiohttp_client(app))
    try:
        opened = await open_create_dialog(world, user_id=world.alice)
        _, body = world.fake.dialog_submission(opened, {"summary": "Login fails"})
        answers = await asyncio.gather(
            *(replica.post("/mattermost/dialogs", json=body) for replica in replicas)
        )
        texts = sorted([await a.json() for a in answers], key=len)
        assert texts == [{}, {"error": REPLAYED_DIALOG_TEXT}]
        assert sum(len(s.dialogs) for s in services) == 1
    finally:
        await db.close()


# -- MattermostClient additions against the fake --------------------------------------------------


async def test_open_dialog_needs_a_live_trigger_id_and_a_valid_dialog(world: World) -> None:
    dialog = create_dialog("s").to_dict()
    with pytest.raises(DeliveryError) as unknown:
        await world.client.open_dialog("not-issued", world.dialog_url, dialog)
    assert unknown.value.status == 400 and not unknown.value.retryable

    trigger_id = world.fake.issue_trigger_id(world.alice)
    broken = dict(dialog, elements=[*dialog["elements"], dialog["elements"][0]])
    with pytest.raises(DeliveryError, match="Invalid dialog"):
        await world.client.open_dialog(trigger_id, world.dialog_url, broken)

    world.fake.trigger_ttl = 0.0
    stale = world.fake.issue_trigger_id(world.alice)
    with pytest.raises(DeliveryError, match="expired"):
        await world.client.open_dialog(stale, world.dialog_url, dialog)

    request = OpenDialogRequest(trigger_id=trigger_id, url=world.dialog_url, dialog=create_dialog("s"))
    await world.client.open_dialog(request.trigger_id, request.url, request.dialog.to_dict())
    assert world.fake.dialogs[-1]["dialog"]["elements"][1]["options"][0] == {"text": "Bug", "value": "10001"}


async def test_system_admin_role_is_asked_of_mattermost(world: World) -> None:
    admin = world.fake.add_user("root", roles="system_user system_admin")
    assert await world.client.is_system_admin(admin) is True
    assert await world.client.is_system_admin(world.alice) is False
    assert (await world.client.get_user(world.alice))["email"] == "alice@example.com"
    with pytest.raises(DeliveryError) as missing:
        await world.client.get_user("q" * 26)
    assert missing.value.status == 404


async def test_user_by_username(world: World) -> None:
    assert (await world.client.get_user_by_username("@Alice"))["id"] == world.alice  # type: ignore[index]
    assert await world.client.get_user_by_username("nobody") is None
    assert await world.client.get_user_by_username("@") is None


async def test_channel_and_team_memberships_carry_the_admin_roles(world: World) -> None:
    fake, client = world.fake, world.client
    chief = fake.add_user("chief")
    fake.add_member(world.channel, chief, admin=True)
    team_id = fake.add_team_member("eng", chief, admin=True)
    fake.add_team_member("eng", world.alice)

    channel = await client.get_channel(world.channel)
    assert channel["type"] == "O" and channel["team_id"] == team_id
    chief_in_channel = await client.get_channel_member(world.channel, chief)
    alice_in_channel = await client.get_channel_member(world.channel, world.alice)
    assert chief_in_channel is not None and "channel_admin" in chief_in_channel["roles"].split()
    assert alice_in_channel is not None and alice_in_channel["roles"] == "channel_user"
    assert await client.get_channel_member(world.channel, fake.add_user("outsider")) is None

    chief_in_team = await client.get_team_member(team_id, chief)
    assert chief_in_team is not None and "team_admin" in chief_in_team["roles"].split()
    assert (await client.get_team_member(team_id, world.alice))["roles"] == "team_user"  # type: ignore[index]
    assert await client.get_team_member(team_id, fake.add_user("visitor")) is None


async def test_a_private_channel_the_bot_is_not_in_cannot_be_inspected(world: World) -> None:
    secret = world.fake.add_channel("eng", "secret", private=True, members=[world.alice])
    with pytest.raises(DeliveryError) as refused:
        await world.client.get_channel_member(secret, world.alice)
    assert refused.value.status == 403


async def test_direct_messages_from_the_bot(world: World) -> None:
    post_id = await world.client.send_direct_message(world.alice, "Your Jira token expired; reconnect.")
    again = await world.client.send_direct_message(world.alice, "Second note")
    dm = await world.client.direct_channel(world.alice)
    assert world.fake.channels[dm]["type"] == "D"
    assert [p["message"] for p in world.fake.posts_in(dm)] == [
        "Your Jira token expired; reconnect.",
        "Second note",
    ]
    assert world.fake.get_post(post_id)["user_id"] == world.fake.bot_user_id  # type: ignore[index]
    assert again != post_id
    # The channel id is remembered: one direct-channel request for three uses.
    assert len(world.fake.requests_to("/api/v4/channels/direct", "POST")) == 1


async def test_ephemeral_posts_need_the_bot_to_be_system_admin(
    aiohttp_server: Callable[..., Awaitable[TestServer]],
) -> None:
    fake = FakeMattermost(token=TOKEN, bot_roles="system_user system_admin")
    alice = fake.add_user("alice")
    channel = fake.add_channel("eng", "jira-updates")
    server = await aiohttp_server(fake.app())
    async with MattermostClient(str(server.make_url("")), TOKEN, timeout=2.0) as client:
        post_id = await client.send_ephemeral(alice, channel, "only you", props={"k": "v"})
    [shown] = fake.ephemeral_posts
    assert shown["user_id"] == alice and shown["post"]["id"] == post_id
    assert shown["post"]["message"] == "only you" and shown["post"]["props"] == {"k": "v"}


async def test_ephemeral_posts_by_an_ordinary_bot_are_refused(world: World) -> None:
    with pytest.raises(DeliveryError) as refused:
        await world.client.send_ephemeral(world.alice, world.channel, "only you")
    assert refused.value.status == 403


def test_command_response_json_shape() -> None:
    nested = CommandResponse.ephemeral("first", extra_responses=[CommandResponse.in_channel("second")])
    assert nested.to_dict() == {
        "response_type": "ephemeral",
        "text": "first",
        "extra_responses": [{"response_type": "in_channel", "text": "second"}],
    }
    assert CommandResponse(skip_slack_parsing=True).to_dict() == {
        "response_type": "ephemeral",
        "text": "",
        "skip_slack_parsing": True,
    }
