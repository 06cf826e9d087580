"""MattermostClient over real HTTP against FakeMattermost, the fake's own contract, and ConsoleSink."""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from bot.mattermost.client import MattermostClient
from bot.mattermost.console import ConsoleSink
from bot.mattermost.models import DeliveryError, OutgoingPost, PostSink, is_valid_id
from tests.fakes import FakeMattermost

TOKEN = "tok-4f1d2c9e8b7a6-secret"
ServerFactory = Callable[..., Awaitable[TestServer]]
ClientFactory = Callable[..., Awaitable[MattermostClient]]


@pytest.fixture
def fake() -> FakeMattermost:
    return FakeMattermost(token=TOKEN)


@pytest.fixture
def channel_id(fake: FakeMattermost) -> str:
    return fake.add_channel("eng", "jira-updates")


@pytest.fixture
async def server(aiohttp_server: ServerFactory, fake: FakeMattermost) -> TestServer:
    return await aiohttp_server(fake.app())


@pytest.fixture
async def make_client(server: TestServer) -> AsyncIterator[ClientFactory]:
    clients: list[MattermostClient] = []

    async def make(**options: Any) -> MattermostClient:
        options.setdefault("timeout", 2.0)
        options.setdefault("retry_max_sleep", 2.0)
        client = MattermostClient(str(server.make_url("")), options.pop("token", TOKEN), **options)
        await client.start()
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.close()


@pytest.fixture
async def client(make_client: ClientFactory) -> MattermostClient:
    return await make_client()


def post_to(channel_id: str, message: str = "PROJ-1 was created", **kw: Any) -> OutgoingPost:
    return OutgoingPost(channel_id=channel_id, message=message, **kw)


# -- start and identity ----------------------------------------------------------------------------


async def test_start_learns_the_bot_user(client: MattermostClient, fake: FakeMattermost) -> None:
    as_sink: PostSink = client  # type-checked: the client is a PostSink
    assert await as_sink.ping() is True
    assert client.bot_user_id == fake.bot_user_id
    assert client.bot_username == "jira"
    assert client.login_error is None


async def test_start_tolerates_mattermost_down_and_ping_logs_in_later(
    make_client: ClientFactory, fake: FakeMattermost
) -> None:
    fake.fail_next(1, 503, path="/api/v4/users/me")
    client = await make_client(max_retries=0)
    assert client.bot_user_id == ""
    assert "503" in (client.login_error or "")

    assert await client.ping() is True
    assert client.bot_user_id == fake.bot_user_id
    assert client.login_error is None


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://127.0.0.1:8065", "http://127.0.0.1:8065"),
        ("https://chat.example.com/", "https://chat.example.com:443"),
        ("chat.example.com", "https://chat.example.com:443"),
        ("https://example.com/mattermost/", "https://example.com:443/mattermost"),
        ("http://[::1]:8065/api/v4", "http://[::1]:8065"),
    ],
)
def test_base_url_forms(url: str, expected: str) -> None:
    assert MattermostClient(url, TOKEN).base_url == expected


@pytest.mark.parametrize("url", ["ftp://chat.example.com", "https://"])
def test_unusable_url_is_rejected(url: str) -> None:
    with pytest.raises(ValueError):
        MattermostClient(url, TOKEN)


async def test_site_under_a_path(
    aiohttp_server: ServerFactory, fake: FakeMattermost, channel_id: str
) -> None:
    site = web.Application()
    site.add_subapp("/mattermost/", fake.app())
    server = await aiohttp_server(site)
    client = MattermostClient(str(server.make_url("/mattermost/")), TOKEN, timeout=2.0)
    await client.start()
    try:
        assert client.bot_user_id == fake.bot_user_id
        assert await client.ping() is True
        post_id = await client.create_post(post_to(channel_id))
        assert fake.posts[0]["id"] == post_id
    finally:
        await client.close()


# -- creating posts --------------------------------------------------------------------------------


async def test_create_post_and_reply(client: MattermostClient, fake: FakeMattermost, channel_id: str) -> None:
    attachment = {"pretext": "Alice created PROJ-1", "fields": [{"title": "Priority", "value": "High"}]}
    root_id = await client.create_post(post_to(channel_id, props={"attachments": (attachment,)}))
    reply_id = await client.create_post(post_to(channel_id, "a comment", root_id=root_id))

    assert [p["id"] for p in fake.posts_in(channel_id)] == [root_id, reply_id]
    root, reply = fake.posts
    assert root["props"]["attachments"] == [attachment]
    assert root["props"]["from_bot"] == "true"
    assert root["user_id"] == fake.bot_user_id
    assert (reply["message"], reply["root_id"]) == ("a comment", root_id)
    assert root["reply_count"] == 1
    assert is_valid_id(root_id) and root_id != reply_id


async def test_same_pending_post_id_creates_one_post(
    client: MattermostClient, fake: FakeMattermost, channel_id: str
) -> None:
    post = post_to(channel_id, pending_post_id="delivery-42")
    first = await client.create_post(post)
    again = await client.create_post(post)
    other = await client.create_post(post_to(channel_id, pending_post_id="delivery-43"))

    assert again == first
    assert other != first
    assert [p["id"] for p in fake.posts] == [first, other]


async def test_pending_post_id_is_forgotten_after_the_ttl(
    client: MattermostClient, fake: FakeMattermost, channel_id: str
) -> None:
    fake.pending_post_ttl = 0.05
    post = post_to(channel_id, pending_post_id="delivery-7")
    first = await client.create_post(post)
    await asyncio.sleep(0.1)
    assert await client.create_post(post) != first
    assert len(fake.posts) == 2


async def test_timed_out_post_is_not_duplicated_by_the_retry(
    make_client: ClientFactory, fake: FakeMattermost, channel_id: str
) -> None:
    client = await make_client(timeout=0.2)
    fake.set_latency(0.5, path="/api/v4/posts")
    post = post_to(channel_id, pending_post_id="delivery-9")

    with pytest.raises(DeliveryError) as caught:
        await client.create_post(post)
    assert caught.value.retryable is True
    # The slow server still saves the post after the client gave up.
    (saved,) = await fake.wait_for_posts(1, timeout=2.0)

    fake.set_latency(0.0, path="/api/v4/posts")
    assert await client.create_post(post) == saved["id"]
    assert len(fake.posts) == 1


async def test_repeat_while_the_first_is_saving_is_retryable(
    client: MattermostClient, fake: FakeMattermost, channel_id: str
) -> None:
    fake.set_latency(0.3, path="/api/v4/posts")
    post = post_to(channel_id, pending_post_id="delivery-11")
    first, second = await asyncio.gather(
        client.create_post(post), client.create_post(post), return_exceptions=True
    )
    outcomes = sorted([first, second], key=lambda r: isinstance(r, DeliveryError))
    assert isinstance(outcomes[0], str)
    error = outcomes[1]
    assert isinstance(error, DeliveryError)
    assert (error.status, error.retryable) == (500, True)
    assert len(fake.posts) == 1


async def test_update_post_patches_message_and_props(
    client: MattermostClient, fake: FakeMattermost, channel_id: str
) -> None:
    post_id = await client.create_post(post_to(channel_id, "old", props={"k": "v"}))
    await client.update_post(post_id, "new", {"k": "w"})
    post = fake.get_post(post_id)
    assert post is not None
    assert (post["message"], post["props"]) == ("new", {"k": "w"})
    assert post["edit_at"] > 0

    await client.update_post(post_id, props={"k": "x"})
    assert (post["message"], post["props"]) == ("new", {"k": "x"})


# -- failures --------------------------------------------------------------------------------------


async def test_short_rate_limit_is_retried_by_the_driver(
    client: MattermostClient, fake: FakeMattermost, channel_id: str
) -> None:
    fake.fail_next(1, 429, retry_after=1, path="/api/v4/posts")
    post_id = await client.create_post(post_to(channel_id))
    assert [r.status for r in fake.requests_to("/api/v4/posts", "POST")] == [429, 201]
    assert fake.posts[0]["id"] == post_id


async def test_long_rate_limit_goes_back_to_the_queue(
    client: MattermostClient, fake: FakeMattermost, channel_id: str
) -> None:
    fake.fail_next(1, 429, retry_after=30, path="/api/v4/posts")
    with pytest.raises(DeliveryError) as caught:
        await client.create_post(post_to(channel_id))
    error = caught.value
    assert (error.retryable, error.status) == (True, 429)
    assert error.retry_after == pytest.approx(30)
    assert fake.posts == []


@pytest.mark.parametrize(("status", "body"), [(503, None), (500, None), (502, "<html>Bad Gateway</html>")])
async def test_server_errors_are_retryable(
    client: MattermostClient, fake: FakeMattermost, channel_id: str, status: int, body: str | None
) -> None:
    fake.fail_next(1, status, path="/api/v4/posts", body=body)
    with pytest.raises(DeliveryError) as caught:
        await client.create_post(post_to(channel_id))
    assert (caught.value.retryable, caught.value.status) == (True, status)
    # A POST may have been processed, so the driver does not resend it: the queue decides.
    assert len(fake.requests_to("/api/v4/posts", "POST")) == 1


@pytest.mark.parametrize("status", [400, 404, 413, 501])
async def test_client_errors_are_final(
    client: MattermostClient, fake: FakeMattermost, channel_id: str, status: int
) -> None:
    fake.fail_next(1, status, path="/api/v4/posts")
    with pytest.raises(DeliveryError) as caught:
        await client.create_post(post_to(channel_id))
    assert (caught.value.retryable, caught.value.status) == (False, status)


async def test_reply_to_unknown_root_is_a_final_400(client: MattermostClient, channel_id: str) -> None:
    with pytest.raises(DeliveryError) as caught:
        await client.create_post(post_to(channel_id, root_id="x" * 26))
    assert (caught.value.retryable, caught.value.status) == (False, 400)
    assert "api.post.create_post.root_id.app_error" in str(caught.value)


async def test_private_channel_without_membership_is_a_logged_403(
    client: MattermostClient, fake: FakeMattermost, caplog: pytest.LogCaptureFixture
) -> None:
    private = fake.add_channel("eng", "secret", private=True)
    with (
        caplog.at_level(logging.ERROR, logger="bot.mattermost.client"),
        pytest.raises(DeliveryError) as caught,
    ):
        await client.create_post(post_to(private))
    assert (caught.value.retryable, caught.value.status) == (False, 403)
    assert any("403" in r.getMessage() for r in caplog.records if r.name == "bot.mattermost.client")

    fake.add_member(private, fake.bot_user_id)
    assert await client.create_post(post_to(private))


async def test_archived_channel_is_a_final_400(
    client: MattermostClient, fake: FakeMattermost, channel_id: str
) -> None:
    fake.archive_channel(channel_id)
    with pytest.raises(DeliveryError) as caught:
        await client.create_post(post_to(channel_id))
    assert (caught.value.retryable, caught.value.status) == (False, 400)


async def test_unreachable_mattermost_is_retryable(
    client: MattermostClient, server: TestServer, channel_id: str
) -> None:
    await server.close()
    with pytest.raises(DeliveryError) as caught:
        await client.create_post(post_to(channel_id))
    assert caught.value.retryable is True
    assert caught.value.status == 0


async def test_calls_before_start_are_a_programming_error(channel_id: str) -> None:
    client = MattermostClient("http://127.0.0.1:1", TOKEN)
    with pytest.raises(RuntimeError):
        await client.create_post(post_to(channel_id))
    assert await client.ping() is False


# -- channels --------------------------------------------------------------------------------------


async def test_resolve_channel_hit_is_cached(
    client: MattermostClient, fake: FakeMattermost, channel_id: str
) -> None:
    lookup = "/api/v4/teams/name/eng/channels/name/jira-updates"
    assert await client.resolve_channel("eng", "jira-updates") == channel_id
    assert await client.resolve_channel("ENG", " Jira-Updates ") == channel_id
    assert len(fake.requests_to(lookup)) == 1


async def test_resolve_channel_miss(
    make_client: ClientFactory, fake: FakeMattermost, channel_id: str
) -> None:
    fake.add_channel("eng", "hidden", private=True)
    client = await make_client(channel_miss_ttl=60.0)
    assert await client.resolve_channel("eng", "nope") is None
    assert await client.resolve_channel("eng", "nope") is None
    assert await client.resolve_channel("no-team", "jira-updates") is None
    assert await client.resolve_channel("eng", "hidden") is None
    assert await client.resolve_channel("", "jira-updates") is None
    assert len(fake.requests_to("/api/v4/teams/name/eng/channels/name/nope")) == 1

    # With no memory for misses, a channel created later is found on the next lookup.
    fresh = await make_client(channel_miss_ttl=0.0)
    assert await fresh.resolve_channel("eng", "later") is None
    later = fake.add_channel("eng", "later")
    assert await fresh.resolve_channel("eng", "later") == later


async def test_resolve_channel_reports_an_unreachable_server(
    make_client: ClientFactory, fake: FakeMattermost
) -> None:
    client = await make_client(max_retries=0)
    fake.fail_next(1, 503)
    with pytest.raises(DeliveryError) as caught:
        await client.resolve_channel("eng", "jira-updates")
    assert (caught.value.retryable, caught.value.status) == (True, 503)


async def test_channel_exists(client: MattermostClient, fake: FakeMattermost, channel_id: str) -> None:
    private = fake.add_channel("eng", "secret", private=True)
    archived = fake.add_channel("eng", "old")
    fake.archive_channel(archived)

    assert await client.channel_exists(channel_id) is True
    assert await client.channel_exists("q" * 26) is False
    assert await client.channel_exists("not-an-id") is False
    assert await client.channel_exists(archived) is False
    # Not readable by the bot, but there: subscriptions to it must not be dropped.
    assert await client.channel_exists(private) is True


# -- ping ------------------------------------------------------------------------------------------


async def test_ping_up_then_down(client: MattermostClient, fake: FakeMattermost, server: TestServer) -> None:
    assert await client.ping() is True
    fake.fail_next(1, 503, path="/api/v4/system/ping")
    assert await client.ping() is False
    assert await client.ping() is True
    await server.close()
    assert await client.ping() is False


# -- secrets ---------------------------------------------------------------------------------------


async def test_token_never_reaches_the_logs(
    make_client: ClientFactory, fake: FakeMattermost, channel_id: str, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = "tok-wrong-77c1e0aa-secret"
    with caplog.at_level(logging.DEBUG):
        good = await make_client()
        await good.create_post(post_to(channel_id))
        await good.resolve_channel("eng", "missing")
        fake.fail_next(1, 429, retry_after=60)
        with pytest.raises(DeliveryError):
            await good.create_post(post_to(channel_id))

        bad = await make_client(token=wrong)
        assert bad.bot_user_id == ""
        with pytest.raises(DeliveryError) as caught:
            await bad.create_post(post_to(channel_id))
    assert (caught.value.status, caught.value.retryable) == (401, False)
    # The server echoes a rejected token in detailed_error; none of it may be logged or kept.
    assert "api.context.session_expired.app_error" in str(caught.value)
    assert caplog.records
    for text in (caplog.text, str(caught.value), repr(good), repr(bad), bad.login_error or ""):
        assert TOKEN not in text
        assert wrong not in text
    assert any("401" in r.getMessage() for r in caplog.records if r.name == "bot.mattermost.client")


# -- the fake's contract ---------------------------------------------------------------------------


@pytest.fixture
async def http(aiohttp_client: Callable[..., Awaitable[TestClient]], fake: FakeMattermost) -> TestClient:
    return await aiohttp_client(fake.app(), headers={"Authorization": f"Bearer {TOKEN}"})


async def test_fake_json_and_error_shape(http: TestClient) -> None:
    ok = await http.get("/api/v4/users/me")
    assert ok.headers["Content-Type"] == "application/json"

    missing = await http.get("/api/v4/users/" + "q" * 26)
    assert missing.status == 404
    assert missing.headers["Content-Type"] == "application/json"
    body = await missing.json()
    assert set(body) == {"id", "message", "detailed_error", "request_id", "status_code"}
    assert (body["id"], body["status_code"]) == ("app.user.missing_account.const", 404)

    anonymous = await http.get("/api/v4/users/me", headers={"Authorization": ""})
    assert anonymous.status == 401
    assert (await http.get("/api/v4/no/such/route")).status == 404


async def test_fake_rate_limit_headers(http: TestClient, fake: FakeMattermost) -> None:
    fake.fail_next(1, 429, retry_after=2.5)
    limited = await http.get("/api/v4/users/me")
    assert limited.status == 429
    assert await limited.text() == "limit exceeded\n"
    assert limited.headers["Retry-After"] == "3"
    assert limited.headers["X-RateLimit-Reset"] == "3"
    assert limited.headers["X-RateLimit-Remaining"] == "0"
    assert (await http.get("/api/v4/users/me")).status == 200


async def test_fake_fail_for_expires(http: TestClient, fake: FakeMattermost) -> None:
    fake.fail_for(0.1, 502, method="GET")
    assert (await http.get("/api/v4/system/ping")).status == 502
    await asyncio.sleep(0.15)
    assert (await http.get("/api/v4/system/ping")).status == 200


async def test_fake_users_and_direct_channels(http: TestClient, fake: FakeMattermost) -> None:
    alice = fake.add_user("alice", first_name="Alice")
    by_name = await (await http.get("/api/v4/users/username/alice")).json()
    assert by_name["id"] == alice
    listed = await (await http.post("/api/v4/users/ids", json=[alice, "q" * 26])).json()
    assert [u["username"] for u in listed] == ["alice"]

    created = await http.post("/api/v4/channels/direct", json=[fake.bot_user_id, alice])
    again = await http.post("/api/v4/channels/direct", json=[alice, fake.bot_user_id])
    assert created.status == again.status == 201
    dm = await created.json()
    assert dm["type"] == "D" and dm["id"] == (await again.json())["id"]

    sent = await http.post("/api/v4/posts", json={"channel_id": dm["id"], "message": "hi"})
    assert sent.status == 201
    got = await http.get(f"/api/v4/posts/{(await sent.json())['id']}")
    assert (await got.json())["message"] == "hi"


async def test_fake_ephemeral_posts_need_system_admin(
    aiohttp_client: Callable[..., Awaitable[TestClient]], fake: FakeMattermost, channel_id: str
) -> None:
    fake.add_user("admin", roles="system_user system_admin", token="admin-token")
    app_client = await aiohttp_client(fake.app())
    body = {"user_id": fake.bot_user_id, "post": {"channel_id": channel_id, "message": "only you"}}

    as_bot = await app_client.post(
        "/api/v4/posts/ephemeral", json=body, headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert as_bot.status == 403
    as_admin = await app_client.post(
        "/api/v4/posts/ephemeral", json=body, headers={"Authorization": "Bearer admin-token"}
    )
    assert as_admin.status == 201
    assert fake.ephemeral_posts[0]["post"]["message"] == "only you"
    assert fake.posts == []


async def test_fake_post_validation(http: TestClient, fake: FakeMattermost, channel_id: str) -> None:
    bad_json = await http.post("/api/v4/posts", data=b"{", headers={"Content-Type": "application/json"})
    assert (await bad_json.json())["id"] == "api.context.invalid_body_param.app_error"
    unknown_channel = await http.post("/api/v4/posts", json={"channel_id": "q" * 26, "message": "x"})
    assert unknown_channel.status == 403
    too_long = await http.post("/api/v4/posts", json={"channel_id": channel_id, "message": "x" * 16384})
    assert too_long.status == 400
    update_missing = await http.put(f"/api/v4/posts/{'q' * 26}/patch", json={"message": "x"})
    assert update_missing.status == 403
    assert fake.posts == []


async def test_fake_wait_for_posts_times_out_with_a_clear_message(fake: FakeMattermost) -> None:
    with pytest.raises(AssertionError, match="expected 1 Mattermost posts"):
        await fake.wait_for_posts(1, timeout=0.05)


async def test_fake_served_standalone(fake: FakeMattermost, channel_id: str) -> None:
    url = await fake.start()
    client = MattermostClient(url, TOKEN, timeout=2.0)
    try:
        await client.start()
        waiter = asyncio.create_task(fake.wait_for_posts(2, timeout=2.0))
        await client.create_post(post_to(channel_id, "one"))
        await client.create_post(post_to(channel_id, "two"))
        assert [p["message"] for p in await waiter] == ["one", "two"]
    finally:
        await client.close()
        await fake.stop()


# -- console sink ----------------------------------------------------------------------------------


async def test_console_sink_prints_readable_posts() -> None:
    out = io.StringIO()
    sink = ConsoleSink(out)
    as_sink: PostSink = sink  # type-checked: the console is a PostSink
    channel = await as_sink.resolve_channel("eng", "jira-updates")
    assert channel is not None and is_valid_id(channel)
    props = {
        "attachments": [
            {
                "pretext": "Alice created PROJ-1",
                "title": "PROJ-1: Login fails",
                "title_link": "https://jira.example.com/browse/PROJ-1",
                "text": "Steps:\n1. open",
                "fields": [{"title": "Priority", "value": "High", "short": True}],
            }
        ]
    }
    root = await sink.create_post(OutgoingPost(channel_id=channel, message="", props=props))
    reply = await sink.create_post(OutgoingPost(channel_id=channel, message="a comment", root_id=root))
    await sink.update_post(root, "edited")

    text = out.getvalue()
    assert is_valid_id(root) and is_valid_id(reply) and root != reply
    assert f"post {root} to ~eng/jira-updates ({channel})" in text
    assert f"reply to {root}" in text
    for expected in (
        "Alice created PROJ-1",
        "  | PROJ-1: Login fails <https://jira.example.com/browse/PROJ-1>",
        "  | Steps:",
        "  | 1. open",
        "  | Priority: High",
        "a comment",
        f"edit of post {root} in ~eng/jira-updates",
        "edited",
    ):
        assert expected in text
    assert await sink.ping() is True
    assert await sink.channel_exists(channel) is True


async def test_console_sink_channel_ids_are_stable() -> None:
    first, second = ConsoleSink(io.StringIO()), ConsoleSink(io.StringIO())
    a = await first.resolve_channel("eng", "jira")
    assert a == await second.resolve_channel("ENG", "jira")
    assert a != await first.resolve_channel("eng", "other")
    assert await first.resolve_channel("eng", "") is None


async def test_console_sink_defaults_to_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    sink = ConsoleSink()
    await sink.create_post(OutgoingPost(channel_id="c" * 26, message="hello", props={"k": 1}))
    await sink.close()
    printed = capsys.readouterr().out
    assert "hello" in printed
    assert "props: k=1" in printed


async def test_the_drivers_error_lines_give_way_to_the_bots_own(
    client: MattermostClient, channel_id: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    with pytest.raises(DeliveryError):
        await client.create_post(post_to(channel_id, root_id="x" * 26))
    # Not the driver's bare "…root_id…" line at ERROR, but one that says what the bot was doing.
    assert not [r for r in caplog.records if r.name.startswith("mattermostautodriver")]
    [line] = [r for r in caplog.records if r.name == "bot.mattermost.client"]
    assert line.levelno == logging.INFO
    assert line.getMessage().startswith(f"Mattermost answered 400 for post to channel {channel_id}: ")
