"""A slow command's answer goes to its response_url only on Mattermost's own origin: anyone who
can reach the command endpoint picks that URL, and the bot must not post wherever they say."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator

import pytest

from bot.mattermost.payloads import CommandResponse, SlashCommandRequest
from bot.web.mm_command import WORKING_TEXT
from tests.commands.conftest import COMMAND_TOKEN, Harness
from tests.fakes import FakeMattermost


@pytest.fixture
async def elsewhere() -> AsyncIterator[FakeMattermost]:
    """Another server (another port, so another origin) that would gladly take the answer."""
    other = FakeMattermost()
    await other.start()
    yield other
    await other.stop()


def slow_commands(harness: Harness, monkeypatch: pytest.MonkeyPatch) -> asyncio.Event:
    """Commands wait for the returned event, so they finish after the first answer."""
    service = harness.services.commands
    assert service is not None
    release = asyncio.Event()
    run = service.handle

    async def slow(request: SlashCommandRequest) -> CommandResponse:
        await release.wait()
        return await run(request)

    monkeypatch.setattr(service, "handle", slow)
    return release


async def send(harness: Harness, response_base: str) -> dict[str, str]:
    form = harness.mm.slash_form(
        harness.user("alice"), harness.channels["dev"], "help", COMMAND_TOKEN, base_url=response_base
    )
    async with harness.http.post(
        harness.bot_url + "/mattermost/command", data=form.body, headers=form.headers
    ) as r:
        assert r.status == 200
        answer: dict[str, str] = await r.json()
    return answer


async def test_an_answer_is_not_posted_to_another_host(
    harness: Harness,
    elsewhere: FakeMattermost,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="bot.web.mm_command")
    release = slow_commands(harness, monkeypatch)
    assert (await send(harness, elsewhere.url))["text"] == WORKING_TEXT  # answered inline only
    assert "response_url on host '127.0.0.1' refused" in caplog.text
    release.set()
    # The late answer is dropped: wait until the bot says so (or, wrongly, posts it).
    deadline = time.monotonic() + 30
    while "finished late but came without a response_url" not in caplog.text and not elsewhere.requests:
        assert time.monotonic() < deadline, "the late answer was neither dropped nor posted"
        await asyncio.sleep(0.02)
    assert elsewhere.requests == []
    assert harness.mm.command_responses == []


async def test_an_answer_is_posted_to_mattermosts_own_origin(
    harness: Harness, elsewhere: FakeMattermost, monkeypatch: pytest.MonkeyPatch
) -> None:
    release = slow_commands(harness, monkeypatch)
    assert (await send(harness, harness.mm.url))["text"] == WORKING_TEXT
    release.set()
    [received] = await harness.mm.wait_for_command_responses(1, timeout=30)
    assert "/jira" in received["response"]["text"]  # the help text
    assert elsewhere.requests == []
