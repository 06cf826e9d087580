"""POST /mattermost/command: token check, Mattermost's form, the 2-second answer, response_url."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from bot.mattermost.payloads import Attachment, CommandResponse, SlashCommandRequest
from bot.web import mm_command
from bot.web.mm_command import FAILED_TEXT, WORKING_TEXT, SlashCommandHandler
from tests.fakes import FakeMattermost

TOKEN = "cmd-token-7c1e9a0b5d"
OTHER_TOKEN = "cmd-token-second-42"
Behaviour = Callable[[SlashCommandRequest], Awaitable[CommandResponse]]


class Service:
    """A command service whose behaviour each test chooses; records what it was asked."""

    def __init__(self, behaviour: Behaviour | None = None) -> None:
        self.requests: list[SlashCommandRequest] = []
        self.finished = 0
        self._behaviour = behaviour or self._echo

    @staticmethod
    async def _echo(request: SlashCommandRequest) -> CommandResponse:
        return CommandResponse.ephemeral(f"you said: {request.text}")

    async def handle(self, request: SlashCommandRequest) -> CommandResponse:
        self.requests.append(request)
        response = await self._behaviour(request)
        self.finished += 1
        return response


@pytest.fixture
def fake() -> FakeMattermost:
    return FakeMattermost()


@pytest.fixture
def ids(fake: FakeMattermost) -> dict[str, str]:
    alice = fake.add_user("alice")
    bob = fake.add_user("bob.smith")
    channel = fake.add_channel("eng", "jira-updates")
    fake.add_channel("eng", "town-square")
    return {"alice": alice, "bob": bob, "channel": channel}


@pytest.fixture
async def mm(aiohttp_server: Callable[..., Awaitable[TestServer]], fake: FakeMattermost) -> str:
    server = await aiohttp_server(fake.app())
    return str(server.make_url("")).rstrip("/")


BotFactory = Callable[..., Awaitable[tuple[TestClient, SlashCommandHandler]]]


@pytest.fixture
def bot(aiohttp_client: Callable[..., Awaitable[TestClient]]) -> BotFactory:
    async def make(service: Service, **options: Any) -> tuple[TestClient, SlashCommandHandler]:
        options.setdefault("tokens", [TOKEN, OTHER_TOKEN])
        options.setdefault("timeout", 0.3)
        handler = SlashCommandHandler(service, **options)
        app = web.Application()
        app.add_routes(handler.routes())
        return await aiohttp_client(app), handler

    return make


async def post_form(
    client: TestClient, body: str, headers: dict[str, str]
) -> tuple[int, str, dict[str, Any]]:
    response = await client.post("/mattermost/command", data=body.encode(), headers=headers)
    return response.status, response.headers["Content-Type"], await response.json()


# -- authentication -------------------------------------------------------------------------------


async def test_token_in_the_form_field_and_the_parsed_request(
    bot: BotFactory, fake: FakeMattermost, ids: dict[str, str], mm: str
) -> None:
    service = Service()
    client, _ = await bot(service)
    form = fake.slash_form(
        ids["alice"], ids["channel"], "assign PROJ-1 @bob.smith see ~town-square", TOKEN, base_url=mm
    )
    headers = {k: v for k, v in form.headers.items() if k != "Authorization"}
    status, content_type, body = await post_form(client, form.body, headers)

    assert (status, content_type) == (200, "application/json")
    assert body == {
        "response_type": "ephemeral",
        "text": "you said: assign PROJ-1 @bob.smith see ~town-square",
    }
    [request] = service.requests
    assert request.user_id == ids["alice"] and request.user_name == "alice"
    assert request.channel_id == ids["channel"] and request.channel_name == "jira-updates"
    assert request.team_domain == "eng" and request.team_id == fake.channels[ids["channel"]]["team_id"]
    assert request.command == "/jira"
    assert request.trigger_id == form.trigger_id and request.response_url == form.response_url
    assert request.mentioned_users == {"bob.smith": ids["bob"]}
    assert list(request.mentioned_channels) == ["town-square"]


async def test_token_in_the_authorization_header_only(
    bot: BotFactory, fake: FakeMattermost, ids: dict[str, str], mm: str
) -> None:
    service = Service()
    client, _ = await bot(service)
    form = fake.slash_form(ids["alice"], ids["channel"], "me", OTHER_TOKEN, base_url=mm)
    body = "&".join(p for p in form.body.split("&") if not p.startswith("token="))
    status, _, answer = await post_form(client, body, form.headers)
    assert status == 200 and answer["text"] == "you said: me"


@pytest.mark.parametrize(
    ("field", "header"),
    [("wrong", None), (None, "Token wrong"), (None, None), ("", "Bearer " + TOKEN), (TOKEN[:-1], None)],
    ids=["wrong field", "wrong header", "none", "other scheme", "prefix of a token"],
)
async def test_wrong_or_missing_tokens_get_401(
    bot: BotFactory,
    fake: FakeMattermost,
    ids: dict[str, str],
    mm: str,
    field: str | None,
    header: str | None,
) -> None:
    service = Service()
    client, _ = await bot(service)
    form = fake.slash_form(ids["alice"], ids["channel"], "me", field or "", base_url=mm)
    body = form.body if field is not None else "&".join(p for p in form.body.split("&") if "token=" not in p)
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    if header is not None:
        headers["Authorization"] = header
    status, content_type, answer = await post_form(client, body, headers)
    assert (status, content_type) == (401, "application/json")
    assert answer["response_type"] == "ephemeral"
    assert service.requests == []


async def test_no_configured_token_refuses_everything(
    bot: BotFactory, fake: FakeMattermost, ids: dict[str, str], mm: str
) -> None:
    service = Service()
    client, _ = await bot(service, tokens=[])
    form = fake.slash_form(ids["alice"], ids["channel"], "me", "", base_url=mm)
    status, _, _ = await post_form(client, form.body, form.headers)
    assert status == 401 and service.requests == []


async def test_every_configured_token_is_compared_in_constant_time(
    bot: BotFactory, fake: FakeMattermost, ids: dict[str, str], mm: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    compared: list[tuple[bytes, bytes]] = []
    real = mm_command.hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(mm_command.hmac, "compare_digest", spy)
    client, _ = await bot(Service())
    form = fake.slash_form(ids["alice"], ids["channel"], "me", TOKEN, base_url=mm)
    status, _, _ = await post_form(client, form.body, form.headers)
    assert status == 200
    # The field and the header are each compared with both tokens, although the first matched.
    assert sorted(compared) == sorted(
        [(TOKEN.encode(), TOKEN.encode()), (TOKEN.encode(), OTHER_TOKEN.encode())] * 2
    )


@pytest.mark.parametrize(
    ("body", "text"),
    [
        (
            b"token=" + TOKEN.encode() + b"&text=no+ids&channel_id=c",
            "The command request is not valid: missing team_id, user_id, command.",
        ),
        (
            b"token="
            + TOKEN.encode()
            + b"&user_id=u&channel_id=c&team_id=t&command=%2Fjira&response_url=file%3A%2F%2Fx",
            "The command request is not valid: not valid: response_url.",
        ),
        (
            b"token=" + TOKEN.encode() + b"&\xff\xfe",
            "The command request is not valid: the body is not UTF-8 form data.",
        ),
    ],
    ids=["missing fields", "response_url not http", "not utf-8"],
)
async def test_junk_with_a_good_token_gets_400_naming_the_fields(
    bot: BotFactory, body: bytes, text: str
) -> None:
    service = Service()
    client, _ = await bot(service)
    response = await client.post(
        "/mattermost/command",
        data=body,
        headers={"Content-Type": "application/x-www-form-urlencoded", "Authorization": f"Token {TOKEN}"},
    )
    assert response.status == 400 and response.headers["Content-Type"] == "application/json"
    answer = await response.json()
    assert answer["response_type"] == "ephemeral"
    assert answer["text"] == text
    assert service.requests == []


# -- answers --------------------------------------------------------------------------------------


async def test_in_channel_answers_and_attachments_are_kept(
    bot: BotFactory, fake: FakeMattermost, ids: dict[str, str], mm: str
) -> None:
    async def share(request: SlashCommandRequest) -> CommandResponse:
        card = Attachment(title="PROJ-1: Fix login", title_link="https://jira.example.com/browse/PROJ-1")
        return CommandResponse.in_channel("shared", attachments=[card])

    client, _ = await bot(Service(share))
    form = fake.slash_form(ids["alice"], ids["channel"], "view PROJ-1", TOKEN, base_url=mm)
    status, content_type, answer = await post_form(client, form.body, form.headers)
    assert (status, content_type) == (200, "application/json")
    assert answer == {
        "response_type": "in_channel",
        "text": "shared",
        "attachments": [
            {"title": "PROJ-1: Fix login", "title_link": "https://jira.example.com/browse/PROJ-1"}
        ],
    }


async def test_a_failing_command_gets_a_short_ephemeral_error_without_a_trace(
    bot: BotFactory, fake: FakeMattermost, ids: dict[str, str], mm: str, caplog: pytest.LogCaptureFixture
) -> None:
    async def explode(request: SlashCommandRequest) -> CommandResponse:
        raise RuntimeError("jira password=hunter2 at line 42")

    client, _ = await bot(Service(explode))
    form = fake.slash_form(ids["alice"], ids["channel"], "view PROJ-1", TOKEN, base_url=mm)
    response = await client.post("/mattermost/command", data=form.body, headers=form.headers)
    raw = await response.text()
    assert response.status == 200 and response.headers["Content-Type"] == "application/json"
    assert await response.json() == {"response_type": "ephemeral", "text": FAILED_TEXT}
    assert "Traceback" not in raw and "hunter2" not in raw and "RuntimeError" not in raw
    assert "slash command /jira" in caplog.text  # the operator still learns about it


async def test_a_slow_command_is_answered_at_once_and_finished_through_response_url(
    bot: BotFactory, fake: FakeMattermost, ids: dict[str, str], mm: str
) -> None:
    release = asyncio.Event()

    async def slow_jira(request: SlashCommandRequest) -> CommandResponse:
        await release.wait()
        return CommandResponse.in_channel("PROJ-1 moved to Done")

    service = Service(slow_jira)
    client, handler = await bot(service, timeout=1.5)  # the production default
    form = fake.slash_form(ids["alice"], ids["channel"], "transition PROJ-1 done", TOKEN, base_url=mm)

    started = time.monotonic()
    status, content_type, answer = await post_form(client, form.body, form.headers)
    elapsed = time.monotonic() - started
    assert (status, content_type) == (200, "application/json")
    assert answer == {"response_type": "ephemeral", "text": WORKING_TEXT}
    assert 1.4 <= elapsed < 2.0
    assert service.finished == 0 and handler.pending == 1

    release.set()
    [received] = await fake.wait_for_command_responses(1, timeout=2.0)
    assert received["content_type"] == "application/json"
    assert received["response"] == {"response_type": "in_channel", "text": "PROJ-1 moved to Done"}
    assert received["hook_id"] == form.response_url.rsplit("/", 1)[1]
    # The fake turned the in-channel answer into a post by the user, as Mattermost does.
    [post] = fake.posts_in(ids["channel"])
    assert post["message"] == "PROJ-1 moved to Done" and post["user_id"] == ids["alice"]
    await handler.close()
    assert handler.pending == 0


async def test_a_command_failing_after_the_first_answer_reports_through_response_url(
    bot: BotFactory, fake: FakeMattermost, ids: dict[str, str], mm: str
) -> None:
    async def slow_failure(request: SlashCommandRequest) -> CommandResponse:
        await asyncio.sleep(0.5)
        raise TimeoutError("Jira did not answer")

    client, handler = await bot(Service(slow_failure), timeout=0.1)
    form = fake.slash_form(ids["alice"], ids["channel"], "view PROJ-1", TOKEN, base_url=mm)
    _, _, answer = await post_form(client, form.body, form.headers)
    assert answer["text"] == WORKING_TEXT
    [received] = await fake.wait_for_command_responses(1, timeout=2.0)
    assert received["response"] == {"response_type": "ephemeral", "text": FAILED_TEXT}
    [shown] = fake.ephemeral_posts
    assert shown["user_id"] == ids["alice"] and shown["post"]["message"] == FAILED_TEXT
    await handler.close()


async def test_response_url_post_is_retried_once_after_a_server_error(
    bot: BotFactory, fake: FakeMattermost, ids: dict[str, str], mm: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(mm_command, "RESPONSE_URL_RETRY_PAUSE", 0.01)

    async def slow(request: SlashCommandRequest) -> CommandResponse:
        await asyncio.sleep(0.2)
        return CommandResponse.ephemeral("done")

    fake.fail_next(1, 503, path="/hooks/commands/")
    client, handler = await bot(Service(slow), timeout=0.05)
    form = fake.slash_form(ids["alice"], ids["channel"], "me", TOKEN, base_url=mm)
    await post_form(client, form.body, form.headers)
    [received] = await fake.wait_for_command_responses(1, timeout=2.0)
    assert received["response"]["text"] == "done"
    assert [r.status for r in fake.requests if r.path.startswith("/hooks/")] == [503, 200]
    await handler.close()


async def test_post_to_response_url_reports_a_refusal(
    bot: BotFactory, fake: FakeMattermost, ids: dict[str, str], mm: str
) -> None:
    _, handler = await bot(Service())
    url = fake.new_response_url(mm, user_id=ids["alice"], channel_id=ids["channel"])
    for _ in range(5):  # Mattermost accepts five answers per command
        assert await handler.post_to_response_url(url, CommandResponse.ephemeral("x")) is True
    assert await handler.post_to_response_url(url, CommandResponse.ephemeral("x")) is False
    assert await handler.post_to_response_url(mm + "/hooks/commands/unknown", CommandResponse()) is False


async def test_close_cancels_answers_still_running_after_the_grace_period(
    bot: BotFactory, fake: FakeMattermost, ids: dict[str, str], mm: str
) -> None:
    async def never(request: SlashCommandRequest) -> CommandResponse:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    client, handler = await bot(Service(never), timeout=0.05)
    form = fake.slash_form(ids["alice"], ids["channel"], "me", TOKEN, base_url=mm)
    await post_form(client, form.body, form.headers)
    assert handler.pending == 1
    await handler.close(grace_seconds=0.05)
    assert handler.pending == 0
    assert fake.command_responses == []
