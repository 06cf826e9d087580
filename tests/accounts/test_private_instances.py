"""No token goes to a private address: an instance installed from chat is checked again when a
user connects (DNS rebinding), and the Jira client checks the address it actually connected to."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from bot.accounts.crypto import TokenCipher
from bot.accounts.models import AccountError, JiraIdentity, TokenRejected
from bot.accounts.service import AccountService
from bot.accounts.store import ConnectionStore
from bot.config import JiraInstanceSettings, Settings
from bot.instances import InstanceDirectory
from bot.jira.client import JiraError, JiraGateway
from bot.jira.credentials import Credentials, PersonalAccessToken
from bot.security.urls import UrlPolicy
from bot.store.db import Database
from tests.store.conftest import T0

PUBLIC = "93.184.216.34"
INSTALLED = "http://jira.rebind.example"


@dataclass
class FakeJira:
    """Answers GET /rest/api/2/myself to one token; records every request it gets."""

    token: str = "pat-secret-1"
    seen: list[tuple[str, str]] = field(default_factory=list)

    def app(self) -> web.Application:
        async def myself(request: web.Request) -> web.Response:
            self.seen.append((request.path, request.headers.get("Authorization", "")))
            if request.headers.get("Authorization") != f"Bearer {self.token}":
                return web.json_response({"errorMessages": ["no"]}, status=401)
            return web.json_response({"name": "alice", "displayName": "Alice", "emailAddress": "a@x.example"})

        app = web.Application()
        app.router.add_get("/rest/api/2/myself", myself)
        return app


@pytest.fixture
async def jira() -> AsyncIterator[tuple[FakeJira, str]]:
    fake = FakeJira()
    server = TestServer(fake.app(), host="127.0.0.1")
    await server.start_server()
    yield fake, str(server.make_url("")).rstrip("/")
    await server.close()


class Rebinding:
    """A DNS that answers a public address first, then 127.0.0.1 (the rebinding attack)."""

    def __init__(self, *answers: str) -> None:
        self.answers = list(answers)
        self.asked = 0

    async def __call__(self, host: str, port: int) -> list[str]:
        answer = self.answers[min(self.asked, len(self.answers) - 1)]
        self.asked += 1
        return [answer]


async def service_with(
    db: Database, resolve: Rebinding, fake_url: str, configured: tuple[JiraInstanceSettings, ...] = ()
) -> tuple[AccountService, InstanceDirectory]:
    directory = InstanceDirectory(configured, db.kv, check_url=UrlPolicy(resolve=resolve).check)
    await directory.load(T0)
    cipher = TokenCipher(os.urandom(32))

    async def verify(base_url: str, credentials: Credentials) -> JiraIdentity:
        # What the connection does once the instance's name leads to the fake: send the token.
        assert isinstance(credentials, PersonalAccessToken)
        headers = {"Authorization": f"Bearer {credentials.token}"}
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"{fake_url}/rest/api/2/myself", headers=headers) as r,
        ):
            if r.status == 401:
                raise TokenRejected("401")
            data = await r.json()
        return JiraIdentity(name=data["name"], display_name=data["displayName"])

    settings = Settings.model_validate({"server": {"public_url": "http://bot.example"}})
    service = AccountService(
        jira=settings.jira,
        public_url="http://bot.example",
        store=ConnectionStore(db.engine, cipher),
        kv=db.kv,
        cipher=cipher,
        verify=verify,
        instances=directory,
    )
    return service, directory


async def test_a_name_that_rebinds_to_loopback_gets_no_token(
    db: Database, jira: tuple[FakeJira, str]
) -> None:
    fake, url = jira
    dns = Rebinding(PUBLIC, "127.0.0.1")
    service, directory = await service_with(db, dns, url)
    await directory.install(INSTALLED, "server", "rebind")  # the name was public then

    with pytest.raises(AccountError, match="Nothing was sent there") as refused:
        await service.connect_with_token("alice-mm", "rebind", fake.token, now=T0)
    assert "127.0.0.1" in str(refused.value)
    assert dns.asked == 2  # asked again at connect time
    assert fake.seen == []  # the token never left
    assert await service.connection("alice-mm", "rebind") is None


async def test_a_name_that_stays_public_connects(db: Database, jira: tuple[FakeJira, str]) -> None:
    # The same path with an honest DNS reaches the fake: the test above would see a sent token.
    fake, url = jira
    service, directory = await service_with(db, Rebinding(PUBLIC), url)
    await directory.install(INSTALLED, "server", "rebind")
    conn = await service.connect_with_token("alice-mm", "rebind", fake.token, now=T0)
    assert conn.identity.name == "alice"
    assert fake.seen == [("/rest/api/2/myself", f"Bearer {fake.token}")]


async def test_configured_instances_are_not_checked(db: Database, jira: tuple[FakeJira, str]) -> None:
    fake, url = jira
    dns = Rebinding("127.0.0.1")
    configured = (JiraInstanceSettings(url=url, type="server", alias="onprem"),)
    service, _ = await service_with(db, dns, url, configured)
    conn = await service.connect_with_token("alice-mm", "onprem", fake.token, now=T0)
    assert conn.identity.name == "alice" and dns.asked == 0


async def test_the_jira_client_refuses_a_private_peer_before_sending(jira: tuple[FakeJira, str]) -> None:
    fake, url = jira
    token = PersonalAccessToken(fake.token)
    guarded = JiraGateway(max_workers=1, timeout=10.0, public_only=lambda base: base == url)
    try:
        with pytest.raises(JiraError) as refused:
            await guarded.session(url, token, is_cloud=False).myself()
        assert refused.value.kind == "unavailable"
        assert fake.seen == []  # refused on the socket, before the request was written
    finally:
        await guarded.close()

    plain = JiraGateway(max_workers=1, timeout=10.0)
    try:
        me = await plain.session(url, token, is_cloud=False).myself()
    finally:
        await plain.close()
    assert me.name == "alice" and len(fake.seen) == 1
