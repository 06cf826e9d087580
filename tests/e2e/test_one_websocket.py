"""The running bot holds one websocket to Mattermost (bot/mattermost/websocket.py, with its
backoff), never the driver's own, and after a cut reconnects with one connection again."""

from __future__ import annotations

import asyncio

import pytest
from mattermostautodriver import AsyncTypedDriver

from tests.e2e.conftest import BotFactory


async def test_one_websocket_and_one_reconnect(make_bot: BotFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    opened: list[object] = []
    monkeypatch.setattr(AsyncTypedDriver, "init_websocket", lambda *a, **k: opened.append(a), raising=False)
    bot = await make_bot()
    fake = bot.fake
    await fake.wait_for_websocket(1, timeout=30)
    await asyncio.sleep(0.5)  # a second connection, were there one, would be open by now
    assert (fake.websocket_connects, fake.websocket_count) == (1, 1)
    assert await fake.drop_websockets() == 1
    await fake.wait_for_websocket(2, timeout=30)
    await asyncio.sleep(0.5)
    assert (fake.websocket_connects, fake.websocket_count) == (2, 1)
    assert opened == []  # the driver's websocket is never opened
