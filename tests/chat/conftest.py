"""The whole bot (tests/commands' Harness) plus its websocket listener, fast: short backoff,
frequent watermark saves, the bot a member of the `dev` and `ops` channels."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from bot.chat.listener import ChatListener, build_chat_listener
from tests.commands.conftest import (  # noqa: F401  (the fixtures, re-exported)
    Harness,
    allow_private_instance_urls,
    harness,
)

FAST = {
    "workers": 2,
    "persist_interval_seconds": 0.05,
    "stop_grace_seconds": 1.0,
    "websocket_options": {
        "backoff_base_seconds": 0.02,
        "backoff_max_seconds": 0.1,
        "heartbeat_seconds": 5.0,
        "hello_timeout_seconds": 2.0,
    },
}


def new_listener(h: Harness, **overrides: Any) -> ChatListener:
    assert h.services.commands is not None
    # The harness's app runs without a listener of its own; these tests start theirs.
    settings = h.services.settings
    settings = settings.model_copy(update={"chat": settings.chat.model_copy(update={"listen": True})})
    listener = build_chat_listener(settings, h.services.commands, **{**FAST, **overrides})
    assert listener is not None
    return listener


@pytest.fixture
async def chat(harness: Harness) -> AsyncIterator[ChatListener]:  # noqa: F811
    for channel in harness.channels.values():
        harness.mm.add_member(channel, harness.mm.bot_user_id)
    listener = new_listener(harness)
    await listener.start()
    await harness.mm.wait_for_websocket()
    try:
        yield listener
    finally:
        await listener.stop()


async def eventually(check: Callable[[], Any], timeout: float = 3.0) -> Any:  # noqa: ASYNC109
    """Wait until `check()` is truthy; returns its value. Fails the test on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(0.01)


async def processed(listener: ChatListener, n: int) -> None:
    """Wait until the listener is done with `n` posts in all."""
    await eventually(lambda: listener.processed >= n)
