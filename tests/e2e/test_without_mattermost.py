"""The bot without `mattermost.url`: slash commands, buttons and dialogs still serve (a slash
command's answer is its HTTP response); what needs a Mattermost server says so in a sentence."""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from aiohttp.test_utils import TestClient, TestServer

from bot.app import SERVICES, create_app, describe_features
from bot.config import load_settings
from bot.mattermost.console import ConsoleSink
from bot.mattermost.offline import OfflineMattermost
from bot.wiring import command_tokens

TOKEN = "local-command-token"


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[TestClient]:
    (tmp_path / "config.yaml").write_text(
        "jira:\n  instances:\n    - {url: 'https://jira.corp.example', type: server, alias: corp}\n"
    )
    settings = load_settings(
        tmp_path / "config.yaml", {"DATA_DIR": str(tmp_path), "MATTERMOST_COMMAND_TOKENS": TOKEN}
    )
    app = create_app(settings, sink=ConsoleSink(io.StringIO()))
    async with TestClient(TestServer(app)) as c:
        yield c


async def command(client: TestClient, text: str) -> dict[str, Any]:
    # The fields Mattermost's server sends (App.ExecuteCommand; see tests/fakes/mattermost).
    form = {
        "token": TOKEN,
        "team_id": "t",
        "channel_id": "c",
        "user_id": "u",
        "command": "/jira",
        "text": text,
    }
    async with client.post(
        "/mattermost/command",
        data=urlencode(form),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    ) as r:
        assert r.status == 200
        return dict(await r.json())


async def test_commands_answer_and_what_needs_mattermost_says_so(client: TestClient) -> None:
    services = client.app[SERVICES]  # type: ignore[index]
    assert services.commands is not None
    assert isinstance(services.commands.deps.mattermost, OfflineMattermost)

    assert "/jira [issue] view" in (await command(client, "help"))["text"]
    # A Server instance without an application link connects through a dialog.
    connect = (await command(client, "connect corp"))["text"]
    assert connect.startswith("This command opens a dialog, which needs a Mattermost server")
    assert "`mattermost.url` (MATTERMOST_URL)" in connect
    # Admin commands need Mattermost to know who is an admin.
    admin = (await command(client, "instance list"))["text"]
    assert admin.startswith("Knowing who is a Mattermost system admin needs a Mattermost server")


async def test_buttons_and_dialogs_are_served(client: TestClient) -> None:
    for path in ("/mattermost/actions", "/mattermost/dialogs"):
        async with client.post(path, data=json.dumps({"user_id": "u", "context": {}})) as r:
            assert r.status != 404, path


async def test_a_configured_mattermost_without_command_tokens_refuses_commands(tmp_path: Path) -> None:
    settings = load_settings(
        None, {"DATA_DIR": str(tmp_path), "MATTERMOST_URL": "http://mm.invalid", "MATTERMOST_BOT_TOKEN": "x"}
    )
    lines = describe_features(settings)
    assert any(line.startswith("slash commands: off, every request refused") for line in lines)
    assert command_tokens(settings) == []
    assert not (tmp_path / "command-token").exists()
