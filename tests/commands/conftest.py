"""The whole bot with a fake Mattermost and two fake Jiras (Cloud and Server/DC), driven as a
person would: slash commands typed in a channel, buttons clicked, dialogs submitted, all as real
HTTP requests in Mattermost's own formats."""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from bot.accounts.models import Connection, JiraIdentity, OAuth2Secret
from bot.app import SERVICES, Services, create_app
from bot.config import Settings, load_settings
from tests.fakes import FakeJira, FakeMattermost

COMMAND_TOKEN = "slash-command-token"
# The Cloud instance's service account (reads what webhooks leave out, e.g. watchers).
SERVICE_EMAIL = "svc@example.com"
SERVICE_TOKEN = "svc-api-token"
# The Server instance's service account, when a test asks for one (`server_service_account`).
SERVER_SERVICE_PAT = "svc-server-pat"
CLOUD_ALIAS = "cloud"
SERVER_ALIAS = "dc"


@dataclass
class Harness:
    bot_url: str
    services: Services
    mm: FakeMattermost
    cloud: FakeJira
    server: FakeJira
    cloud_url: str
    server_url: str
    http: aiohttp.ClientSession
    team: str = "acme"
    users: dict[str, str] = field(default_factory=dict)  # name -> Mattermost user id
    channels: dict[str, str] = field(default_factory=dict)  # name -> channel id

    # -- people ---------------------------------------------------------------------------------

    def user(self, name: str) -> str:
        return self.users[name]

    async def connect_cloud(self, mm_user: str, jira_user_id: str) -> None:
        """Connect as if the OAuth flow had run: an access token the fake Cloud accepts."""
        token = "oauth-" + secrets.token_hex(8)
        self.cloud.add_token(token, jira_user_id)
        jira_user = self.cloud.users[jira_user_id]
        now = datetime.now(UTC)
        accounts = self.services.commands.deps.accounts  # type: ignore[union-attr]
        await accounts._store.upsert(  # the OAuth dance itself is tested in tests/accounts
            Connection(
                mm_user_id=self.user(mm_user),
                instance_id=self.cloud_url,
                identity=JiraIdentity(
                    account_id=jira_user_id, display_name=jira_user.display_name, email=jira_user.email
                ),
                secret=OAuth2Secret(
                    access_token=token,
                    refresh_token="refresh-" + token,
                    expires_at=now + timedelta(hours=1),
                    cloud_id=self.cloud.cloud_id,
                ),
                connected_at=now,
                updated_at=now,
            ),
            now=now,
        )

    async def connect_server(self, mm_user: str, jira_user_id: str) -> None:
        """Connect with a personal access token, through the real token check."""
        token = "pat-" + secrets.token_hex(8)
        self.server.add_token(token, jira_user_id)
        accounts = self.services.commands.deps.accounts  # type: ignore[union-attr]
        await accounts.connect_with_token(self.user(mm_user), SERVER_ALIAS, token, now=datetime.now(UTC))

    # -- what a person does ---------------------------------------------------------------------

    async def command(
        self, mm_user: str, text: str, channel: str = "dev", *, root_id: str = ""
    ) -> dict[str, Any]:
        """Type `/jira text` in the channel; returns the bot's JSON answer."""
        form = self.mm.slash_form(
            self.user(mm_user), self.channels[channel], text, COMMAND_TOKEN, root_id=root_id
        )
        async with self.http.post(
            self.bot_url + "/mattermost/command", data=form.body, headers=form.headers
        ) as r:
            assert r.status == 200, await r.text()
            assert r.headers["Content-Type"] == "application/json"
            answer = await r.json()
        answer["_trigger_id"] = form.trigger_id
        answer["_response_url"] = form.response_url
        return answer

    async def click(
        self,
        mm_user: str,
        props: dict[str, Any],
        action_name: str,
        *,
        channel: str = "dev",
        post_id: str = "",
        selected: str | None = None,
    ) -> tuple[int, dict[str, Any]]:
        """Click the button (or choose in the menu) named `action_name` among `props`."""
        action = self.mm.find_action(props, action_name)
        url, body = self.mm.action_request(
            self.user(mm_user),
            action,
            channel_id=self.channels[channel],
            post_id=post_id,
            selected_option=selected,
        )
        async with self.http.post(
            url, data=json.dumps(body), headers={"Content-Type": "application/json"}
        ) as r:
            text = await r.text()
            return r.status, (json.loads(text) if text else {})

    async def submit(
        self,
        mm_user: str,
        submission: dict[str, Any],
        *,
        dialog: dict[str, Any] | None = None,
        channel: str = "dev",
    ) -> tuple[int, dict[str, Any]]:
        """Submit the last dialog opened (or `dialog`) with these field values."""
        opened = dialog or self.mm.dialogs[-1]
        url, body = self.mm.dialog_submission(
            opened, submission, channel_id=self.channels[channel], team_id=self.mm._team_id(self.team) or ""
        )
        body["user_id"] = self.user(mm_user)
        async with self.http.post(
            url, data=json.dumps(body), headers={"Content-Type": "application/json"}
        ) as r:
            text = await r.text()
            return r.status, (json.loads(text) if text else {})


def harness_settings(
    tmp_path: Path,
    *,
    bot_url: str,
    mm_url: str,
    cloud_url: str,
    server_url: str,
    allow_private_instance_urls: bool = True,
    server_service_account: bool = False,
) -> Settings:
    server_extra = f", service_account: {{token: {SERVER_SERVICE_PAT}}}" if server_service_account else ""
    cfg = tmp_path / "config.yaml"
    cfg.write_text(
        f"""
server: {{public_url: "{bot_url}"}}
jira:
  atlassian_api_url: "{cloud_url}"
  instances:
    - url: "{cloud_url}"
      type: cloud
      alias: {CLOUD_ALIAS}
      oauth: {{client_id: app-id, client_secret: app-secret}}
      service_account: {{email: {SERVICE_EMAIL}, api_token: {SERVICE_TOKEN}}}
    - {{url: "{server_url}", type: server, alias: {SERVER_ALIAS}{server_extra}}}
# The fakes listen on 127.0.0.1, and example.com names resolve nowhere.
security: {{allow_private_instance_urls: {str(allow_private_instance_urls).lower()}}}
"""
    )
    return load_settings(
        cfg,
        {
            "DATA_DIR": str(tmp_path / "data"),
            "MATTERMOST_URL": mm_url,
            "MATTERMOST_BOT_TOKEN": "fake-bot-token",
            "MATTERMOST_COMMAND_TOKENS": COMMAND_TOKEN,
            "JIRA_WEBHOOK_SECRET": "webhook-secret",
            # Tests of the websocket listener start their own.
            "JIRA_CHATOPS__CHAT__LISTEN": "false",
        },
    )


@pytest.fixture
def allow_private_instance_urls() -> bool:
    """Tests of the refusal parametrize this to False."""
    return True


@pytest.fixture
async def harness(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    unused_tcp_port_factory: Any,
    allow_private_instance_urls: bool,
) -> AsyncIterator[Harness]:
    # Tests that need the Server instance's service account parametrize `server_service_account`.
    server_service_account = "server_service_account" in request.fixturenames and bool(
        request.getfixturevalue("server_service_account")
    )
    mm = FakeMattermost()
    users = {
        "alice": mm.add_user("alice", email="alice@example.com", first_name="Alice"),
        "bob": mm.add_user("bob", email="bob@example.com", first_name="Bob"),
        "admin": mm.add_user("admin", roles="system_user system_admin"),
    }
    channels = {"dev": mm.add_channel("acme", "dev"), "ops": mm.add_channel("acme", "ops")}
    for uid in users.values():
        mm.add_team_member("acme", uid)
        for cid in channels.values():
            mm.add_member(cid, uid)
    await mm.start()

    cloud, server = FakeJira("cloud"), FakeJira("server")
    cloud.add_user("Jira Service Account", email=SERVICE_EMAIL, password=SERVICE_TOKEN)
    if server_service_account:
        server.add_token(SERVER_SERVICE_PAT, server.add_user("Jira Service Account", name="svc"))
    cloud_srv, server_srv = TestServer(cloud.app()), TestServer(server.app())
    await cloud_srv.start_server()
    await server_srv.start_server()
    cloud_url = str(cloud_srv.make_url("")).rstrip("/")
    server_url = str(server_srv.make_url("")).rstrip("/")

    port = unused_tcp_port_factory()
    bot_url = f"http://127.0.0.1:{port}"
    settings = harness_settings(
        tmp_path,
        bot_url=bot_url,
        mm_url=mm.url,
        cloud_url=cloud_url,
        server_url=server_url,
        allow_private_instance_urls=allow_private_instance_urls,
        server_service_account=server_service_account,
    )
    app = create_app(settings)
    bot_srv = TestServer(app, port=port)
    await bot_srv.start_server()
    http = aiohttp.ClientSession()
    try:
        yield Harness(
            bot_url=bot_url,
            services=app[SERVICES],
            mm=mm,
            cloud=cloud,
            server=server,
            cloud_url=cloud_url,
            server_url=server_url,
            http=http,
            users=users,
            channels=channels,
        )
    finally:
        await http.close()
        await bot_srv.close()
        await cloud_srv.close()
        await server_srv.close()
        await mm.stop()
