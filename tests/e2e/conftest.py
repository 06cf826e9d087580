"""The whole bot against a fake Mattermost over real HTTP."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient, TestServer

from bot.app import SERVICES, Services, create_app
from bot.config import Settings, load_settings
from bot.store.db import Database, make_engine
from tests.fakes import FakeMattermost

PG_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
SECRET = "s3cr3t/with+chars"
CLOUD = "https://mmtest.atlassian.net"  # another instance
SERVER = "https://some-instance-test.atlassian.net"  # the shared payloads' instance


def skip_or_fail(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(reason + " (required under CI)")
    pytest.skip(reason)


@pytest.fixture
async def fake_mm() -> AsyncIterator[FakeMattermost]:
    fake = FakeMattermost()
    fake.add_channel("acme", "dev")
    fake.add_channel("acme", "ops")
    await fake.start()
    yield fake
    await fake.stop()


@dataclass
class Bot:
    client: TestClient
    services: Services
    fake: FakeMattermost

    async def post(
        self,
        path: str,
        body: bytes | str,
        *,
        secret: str | None = SECRET,
        headers: dict[str, str] | None = None,
        **params: str,
    ) -> Any:
        query = dict(params)
        if secret is not None:
            query["secret"] = secret
        data = body.encode() if isinstance(body, str) else body
        return await self.client.post(path, data=data, params=query, headers=headers or {})

    async def drain(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109
        """Wait until every stored webhook is processed and every post delivered or dead."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while await self.services.db.deliveries.backlog() > 0:
            if loop.time() > deadline:
                raise AssertionError("backlog did not drain")
            await asyncio.sleep(0.02)


def settings_for(fake: FakeMattermost, tmp_path: Path, **overrides: Any) -> Settings:
    env = {
        "DATA_DIR": str(tmp_path),
        "MATTERMOST_URL": fake.url,
        "MATTERMOST_BOT_TOKEN": fake.token,
        "JIRA_WEBHOOK_SECRET": SECRET,
        "JIRA_CHATOPS__DELIVERY__BACKOFF_BASE_SECONDS": "0.02",
        "JIRA_CHATOPS__DELIVERY__BACKOFF_MAX_SECONDS": "0.2",
        "JIRA_CHATOPS__DELIVERY__POLL_INTERVAL_SECONDS": "0.05",
    }
    env.update({k: str(v) for k, v in overrides.items()})
    return load_settings(None, env)


BotFactory = Callable[..., Awaitable[Bot]]


@pytest.fixture
async def make_bot(fake_mm: FakeMattermost, tmp_path: Path) -> AsyncIterator[BotFactory]:
    clients: list[TestClient] = []

    async def factory(config: Settings | None = None, database: Database | None = None, **env: Any) -> Bot:
        settings = config or settings_for(fake_mm, tmp_path, **env)
        app = create_app(settings, database=database)
        client = TestClient(TestServer(app))
        await client.start_server()
        clients.append(client)
        return Bot(client, app[SERVICES], fake_mm)

    yield factory
    for c in clients:
        await c.close()


@pytest.fixture(params=["sqlite", "postgresql"])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A fresh, empty database on each backend (PostgreSQL: a database of its own)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'db' / 'bot.db'}"
        return
    name = f"e2e_{uuid.uuid4().hex[:12]}"
    try:
        admin = await asyncpg.connect(PG_URL.replace("postgresql://", "postgres://"), timeout=3)
    except (OSError, asyncpg.PostgresError, TimeoutError) as e:
        skip_or_fail(f"PostgreSQL not reachable at {PG_URL}: {e!r}")
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield PG_URL.rsplit("/", 1)[0] + "/" + name
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def open_database(url: str) -> Database:
    return Database(make_engine(url))
