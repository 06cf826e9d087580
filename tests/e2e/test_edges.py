"""The whole application at its HTTP edges: hostile bodies, parameters, disconnects and log
lines, through the real endpoints (issue 14: findings 3, 5 and 6)."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import quote, urlencode

import aiohttp
import pytest
from aiohttp import web

from bot.accounts.connect import CONNECT_PATH
from bot.accounts.oauth1_server import CALLBACK_PATH as OAUTH1_CALLBACK_PATH
from bot.accounts.oauth_cloud import CALLBACK_PATH as CLOUD_CALLBACK_PATH
from bot.app import create_app
from bot.logs import TRACEBACK_PREFIX, RedactingFormatter
from bot.web.server import GuardedAppRunner
from tests.conftest import load_shared_webhook_bytes
from tests.e2e.conftest import SECRET, BotFactory, settings_for
from tests.fakes import FakeMattermost
from tests.gate.harness import WEB_TOKEN, gate_bot

COMMAND_TOKEN = "cmd-token-edges"
FIREHOSE = "/plugins/jira/api/v2/webhook"
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
FORGED = "2025-01-01 00:00:00,000 ERROR bot.app: FORGED"
DEEP = b"[" * 100_000 + b"]" * 100_000


def rendered(caplog: pytest.LogCaptureFixture) -> list[str]:
    """Every captured record as the text log shows it, one string per record."""
    formatter = RedactingFormatter(TEXT_FORMAT)
    return [formatter.format(r) for r in caplog.records]


def assert_no_forged_line(caplog: pytest.LogCaptureFixture) -> str:
    """All records rendered: no line of them pretends to be a record of its own."""
    text = "\n".join(rendered(caplog))
    records = len(caplog.records)
    for line in text.split("\n"):
        assert not line.startswith("2025-01-01"), f"forged log line: {line!r}"
    # Each record is one line, plus prefixed traceback lines.
    starts = [ln for ln in text.split("\n") if not ln.startswith(TRACEBACK_PREFIX)]
    assert len(starts) == records
    return text


async def test_hostile_issue_key_in_a_webhook_is_logged_escaped(
    make_bot: BotFactory, caplog: pytest.LogCaptureFixture
) -> None:
    bot = await make_bot()
    body = json.loads(load_shared_webhook_bytes("webhook-issue-created.json"))
    body["issue"]["key"] = f"TES-41\r\n{FORGED}"
    headers = {"X-Atlassian-Webhook-Identifier": "delivery-1"}
    with caplog.at_level(logging.INFO):
        for _ in range(2):  # the repeat is logged with its issue key
            r = await bot.post(FIREHOSE, json.dumps(body), headers=headers)
            assert r.status == 200
    text = assert_no_forged_line(caplog)
    assert "TES-41\\r\\n2025-01-01" in text  # logged, and shown escaped


async def test_hostile_user_id_on_a_click_is_logged_escaped(
    make_bot: BotFactory, caplog: pytest.LogCaptureFixture
) -> None:
    bot = await make_bot()
    click = {"user_id": f"u1\n{FORGED}", "post_id": "p1", "context": {"action": "x", "sig": "forged"}}
    with caplog.at_level(logging.INFO):
        r = await bot.client.post("/mattermost/actions", json=click)
        assert r.status == 403
    text = assert_no_forged_line(caplog)
    assert "u1\\n2025-01-01" in text


# -- parse failures are 400 on every endpoint ---------------------------------------------------


def deep_form(token: str) -> str:
    """A slash command form whose user_mentions field is a JSON array nested 100,000 deep."""
    return urlencode(
        {
            "token": token,
            "team_id": "t1",
            "channel_id": "c1",
            "user_id": "u1",
            "command": "/jira",
            "text": "help",
            "user_mentions": "[" * 100_000 + "]" * 100_000,
        }
    )


@pytest.mark.parametrize(
    ("path", "body", "content_type"),
    [
        ("/mattermost/actions", DEEP, "application/json"),
        ("/mattermost/dialogs", DEEP, "application/json"),
        # Valid JSON, but the signed state inside is nested 100,000 deep.
        (
            "/mattermost/dialogs",
            json.dumps(
                {"user_id": "u1", "callback_id": "c", "state": "[" * 100_000 + "]" * 100_000}
            ).encode(),
            "application/json",
        ),
        ("/mattermost/actions", b"[" * 200 + b"]" * 200, "application/json"),
        ("/mattermost/actions", b"\xff\xfe{", "application/json"),
        ("/mattermost/command", deep_form(COMMAND_TOKEN).encode(), "application/x-www-form-urlencoded"),
        (f"{FIREHOSE}?secret={quote(SECRET, safe='')}", DEEP, "application/json"),
        (
            f"/plugins/jira/webhook?secret={quote(SECRET, safe='')}&team=acme&channel=dev",
            DEEP,
            "application/json",
        ),
    ],
)
async def test_a_body_that_does_not_parse_is_400_without_a_traceback(
    make_bot: BotFactory, caplog: pytest.LogCaptureFixture, path: str, body: bytes, content_type: str
) -> None:
    bot = await make_bot(MATTERMOST_COMMAND_TOKENS=COMMAND_TOKEN)
    with caplog.at_level(logging.DEBUG):
        r = await bot.client.post(path, data=body, headers={"Content-Type": content_type})
        assert r.status == 400, await r.text()
    errors = [
        r for r in caplog.records if r.levelno >= logging.ERROR and r.name.startswith(("bot", "aiohttp"))
    ]
    assert errors == []
    assert not any(r.exc_info for r in caplog.records if r.name.startswith(("bot", "aiohttp")))


# -- repeated secrets ----------------------------------------------------------------------------


async def test_a_repeated_webhook_secret_is_refused(make_bot: BotFactory) -> None:
    bot = await make_bot()
    body = load_shared_webhook_bytes("webhook-issue-created.json")
    for query in ([("secret", SECRET), ("secret", "wrong")], [("secret", "wrong"), ("secret", SECRET)]):
        r = await bot.client.post(FIREHOSE, data=body, params=query)
        assert r.status == 400
        assert "more than once" in (await r.json())["reason"]
    r = await bot.client.post(FIREHOSE, data=body, params=[("secret", SECRET)])
    assert r.status == 200


async def test_a_repeated_command_token_is_refused(make_bot: BotFactory) -> None:
    bot = await make_bot(MATTERMOST_COMMAND_TOKENS=COMMAND_TOKEN)
    pairs = [("token", COMMAND_TOKEN), ("token", "wrong"), ("team_id", "t"), ("channel_id", "c")]
    pairs += [("user_id", "u"), ("command", "/jira"), ("text", "help")]
    r = await bot.client.post(
        "/mattermost/command",
        data=urlencode(pairs),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert r.status == 400


@pytest.mark.parametrize(
    ("path", "name"),
    [
        (CONNECT_PATH, "state"),
        (CLOUD_CALLBACK_PATH, "state"),
        (CLOUD_CALLBACK_PATH, "code"),
        (OAUTH1_CALLBACK_PATH, "oauth_token"),
        (OAUTH1_CALLBACK_PATH, "oauth_verifier"),
    ],
)
async def test_a_repeated_oauth_parameter_is_refused(make_bot: BotFactory, path: str, name: str) -> None:
    bot = await make_bot()
    r = await bot.client.get(path, params=[(name, "a"), (name, "b")], allow_redirects=False)
    assert r.status == 400
    assert "more than once" in await r.text()


# -- a client that disconnects mid-upload --------------------------------------------------------


@pytest.fixture
async def served(fake_mm: FakeMattermost, tmp_path: Path) -> AsyncIterator[tuple[str, int]]:
    """The application as `jira-chatops serve` runs it (GuardedAppRunner; unlike TestServer,
    handlers are not cancelled when the client goes away): its (host, port)."""
    runner = GuardedAppRunner(
        create_app(settings_for(fake_mm, tmp_path)),
        head_timeout=10,
        max_body_bytes=1_048_576,
        access_log=None,
    )
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    yield host, port
    await runner.cleanup()


async def test_a_client_gone_mid_upload_is_logged_at_debug_without_traceback(
    served: tuple[str, int], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG):
        for path in ("/mattermost/actions", f"{FIREHOSE}?secret={quote(SECRET, safe='')}"):
            _, writer = await asyncio.open_connection(*served)
            writer.write(
                f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                "Content-Length: 100000\r\n\r\n".encode()
                + b'{"user_id": "'
                + b"x" * 5000
            )
            await writer.drain()
            await asyncio.sleep(0.2)  # the handler is reading the body by now
            writer.transport.abort()  # a reset, as a client that crashed
        # The handlers see the disconnect; wait until both said so.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 20
        while sum("client disconnected" in r.getMessage() for r in caplog.records) < 2:
            assert loop.time() < deadline, [r.getMessage() for r in caplog.records]
            await asyncio.sleep(0.05)
    gone = [r for r in caplog.records if "client disconnected" in r.getMessage()]
    assert all(r.levelno == logging.DEBUG and r.exc_info is None for r in gone)
    noisy = [
        r for r in caplog.records if r.levelno >= logging.WARNING and r.name.startswith(("bot", "aiohttp"))
    ]
    assert noisy == []


@pytest.mark.parametrize("body", [DEEP, b"[" * 200 + b"]" * 200, b'{"project": "\xff"}'])
async def test_a_gate_api_body_that_does_not_parse_is_400(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, body: bytes
) -> None:
    async with gate_bot(tmp_path, run_poller=False) as bot, aiohttp.ClientSession() as http:
        headers = {
            "Authorization": f"Bearer {WEB_TOKEN}",
            "Idempotency-Key": "k",
            "Content-Type": "application/json",
        }
        with caplog.at_level(logging.INFO):
            async with http.post(f"{bot.url}/api/v1/gates", data=body, headers=headers) as r:
                assert r.status == 400
                assert (await r.json())["status"] == "error"
    assert not any(r.exc_info for r in caplog.records)


async def test_the_webhook_refuses_an_oversized_body_before_100_continue(served: tuple[str, int]) -> None:
    reader, writer = await asyncio.open_connection(*served)
    writer.write(
        f"POST {FIREHOSE}?secret={quote(SECRET, safe='')} HTTP/1.1\r\nHost: x\r\n"
        "Content-Type: application/json\r\nExpect: 100-continue\r\nContent-Length: 50000000\r\n\r\n".encode()
    )
    await writer.drain()
    received = b""
    while chunk := await asyncio.wait_for(reader.read(65536), 30):
        received += chunk
    writer.close()
    assert received.startswith(b"HTTP/1.1 413")
    assert b"100 Continue" not in received
