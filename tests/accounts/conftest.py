"""Account fixtures: a migrated database on each backend (the storage tests' fixtures), a fake
Atlassian authorization server, and the bot's OAuth routes served over HTTP with a browser."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer, unused_port

from bot.accounts.crypto import TokenCipher
from bot.accounts.oauth_cloud import CloudOAuth
from bot.accounts.service import AccountService
from bot.accounts.store import ConnectionStore
from bot.config import Settings
from bot.store.db import Database
from bot.web.oauth import OAuthHandler
from tests.fakes.atlassian_auth import AtlassianAccount, FakeAtlassianAuth, FakeVerify, Site
from tests.store.conftest import T0, backend, db  # noqa: F401  (fixtures used by these tests)

CLOUD_URL = "https://acme.atlassian.net"
CLOUD_ID = "1324a887-45db-1bf4-1e99-ef0ff456d421"
SERVER_URL = "https://jira.example.com"
CLIENT_ID = "client-id-acme"
CLIENT_SECRET = "client-secret-acme"
ALICE = AtlassianAccount("5b10ac8d82e05b22cc7d4ef5", "Alice Liddell", "alice@example.com")


class Clock:
    def __init__(self, start: datetime = T0) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


def make_settings(public_url: str, auth_url: str, **extra_instances: dict[str, object]) -> Settings:
    instances: list[dict[str, object]] = [
        {
            "url": CLOUD_URL,
            "type": "cloud",
            "alias": "acme",
            "oauth": {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET},
        },
        {"url": SERVER_URL, "type": "server", "alias": "onprem"},
        *extra_instances.values(),
    ]
    return Settings.model_validate(
        {
            "server": {"public_url": public_url},
            "jira": {"instances": instances, "atlassian_auth_url": auth_url, "atlassian_api_url": auth_url},
        }
    )


@dataclass
class Harness:
    db: Database
    auth: FakeAtlassianAuth
    store: ConnectionStore
    service: AccountService
    cloud: CloudOAuth  # the service's own client, for tests that talk to the fake directly
    verify: FakeVerify
    clock: Clock
    bot_url: str
    settings: Settings
    browsers: list[aiohttp.ClientSession]

    def browser(self) -> aiohttp.ClientSession:
        """A browser of its own (own cookie jar); cookies for 127.0.0.1 need the unsafe jar."""
        session = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        self.browsers.append(session)
        return session


@pytest.fixture
def cipher() -> TokenCipher:
    return TokenCipher(os.urandom(32))


@pytest.fixture
async def fake_auth() -> AsyncIterator[FakeAtlassianAuth]:
    fake = FakeAtlassianAuth(
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        sites=[Site(CLOUD_ID, CLOUD_URL, "Acme")],
        account=ALICE,
    )
    await fake.start()
    yield fake
    await fake.close()


async def start_harness(
    database: Database, fake: FakeAtlassianAuth, cipher: TokenCipher, **extra_instances: dict[str, object]
) -> tuple[Harness, TestServer]:
    port = unused_port()
    bot_url = f"http://127.0.0.1:{port}"
    settings = make_settings(bot_url, fake.url, **extra_instances)
    fake.redirect_uris = {bot_url + "/oauth/jira/callback"}
    clock = Clock()
    verify = FakeVerify(auth=fake)
    store = ConnectionStore(database.engine, cipher)
    cloud = CloudOAuth.from_settings(settings)
    service = AccountService(
        jira=settings.jira,
        public_url=bot_url,
        store=store,
        kv=database.kv,
        cipher=cipher,
        verify=verify,
        cloud=cloud,
    )
    app = web.Application()
    app.add_routes(OAuthHandler(service, clock=clock).routes())
    server = TestServer(app, host="127.0.0.1", port=port)
    await server.start_server()
    harness = Harness(database, fake, store, service, cloud, verify, clock, bot_url, settings, [])
    return harness, server


@pytest.fixture
async def harness(db: Database, fake_auth: FakeAtlassianAuth, cipher: TokenCipher) -> AsyncIterator[Harness]:  # noqa: F811
    h, server = await start_harness(db, fake_auth, cipher)
    yield h
    for browser in h.browsers:
        await browser.close()
    await h.service.close()
    await server.close()
