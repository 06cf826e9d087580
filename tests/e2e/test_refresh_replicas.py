"""OAuth token refresh with three real `jira-chatops serve` processes on one fresh PostgreSQL
database, a fake Mattermost, a fake Jira Cloud (its API gateway) and a fake Atlassian sign-in
service whose refresh tokens rotate (each works once):

- a user whose access token is about to expire runs commands on the three replicas at once: the
  token is refreshed once, not once per replica (a second refresh with the rotated-out token
  would be refused and disconnect the user);
- the replica refreshing is killed -9 while its refresh request is unanswered: a survivor takes
  its refresh lease over within 10 s (its heartbeat went stale), refreshes once, and the user
  stays connected with a refresh token the sign-in service still accepts.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
from aiohttp.test_utils import TestServer

from bot.accounts.crypto import TokenCipher, generate_key_text, parse_key
from bot.accounts.models import Connection, JiraIdentity, OAuth2Secret
from bot.accounts.service import _REFRESH_PREFIX
from bot.accounts.store import ConnectionStore
from bot.store.db import Database
from tests.e2e.test_duties import ConfiguredReplica, until
from tests.e2e.test_replicas import Replica, pg_url, replica_env  # noqa: F401  (pg_url: a fixture)
from tests.fakes import FakeMattermost
from tests.fakes.atlassian_auth import AtlassianAccount, FakeAtlassianAuth, Site
from tests.fakes.jira import FakeJira

COMMAND_TOKEN = "slash-command-token-refresh"
CLIENT_ID, CLIENT_SECRET = "app-id", "app-secret"
SCOPE = "read:jira-work write:jira-work read:jira-user offline_access"
TAKEOVER_SECONDS = 10.0


def write_config(path: Path, jira_url: str, auth_url: str) -> Path:
    path.write_text(
        f"""
jira:
  atlassian_api_url: "{jira_url}"
  atlassian_auth_url: "{auth_url}"
  instances:
    - url: "{jira_url}"
      type: cloud
      alias: acme
      oauth: {{client_id: {CLIENT_ID}, client_secret: {CLIENT_SECRET}}}
# The fakes listen on 127.0.0.1.
security: {{allow_private_instance_urls: true}}
"""
    )
    return path


async def view(
    http: aiohttp.ClientSession, mm: FakeMattermost, replica: Replica, user: str, channel: str
) -> str:
    """`/jira view WEB-1` typed by `user`, sent to `replica`: the answer's text and attachments."""
    form = mm.slash_form(user, channel, "view WEB-1", COMMAND_TOKEN)
    async with http.post(replica.url + "/mattermost/command", data=form.body, headers=form.headers) as r:
        assert r.status == 200, await r.text()
        return await r.text()


async def test_replicas_refresh_a_token_once_and_take_a_dead_refreshers_lease_over_within_seconds(
    pg_url: str,  # noqa: F811
    tmp_path: Path,
    unused_tcp_port_factory: Callable[[], int],
) -> None:
    mm = FakeMattermost()
    channel = mm.add_channel("acme", "dev")
    alice = mm.add_user("alice")
    mm.add_member(channel, alice)
    jira = FakeJira("cloud")
    alice_jira = jira.add_user("Alice Liddell", email="alice@example.com")
    jira.add_project("WEB", "Web Site")
    jira.add_issue("WEB", "Checkout times out under load")
    jira_srv = TestServer(jira.app(), host="127.0.0.1")
    await jira_srv.start_server()
    jira_url = str(jira_srv.make_url("")).rstrip("/")
    account = AtlassianAccount(alice_jira, "Alice Liddell", "alice@example.com")
    auth = FakeAtlassianAuth(
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        sites=[Site(jira.cloud_id, jira_url, "Acme")],
        account=account,
        on_issue=lambda token, acc: jira.add_token(token, acc.account_id),
    )
    await mm.start()
    await auth.start()
    config = write_config(tmp_path / "config.yaml", jira_url, auth.url)
    key = generate_key_text()
    db: Database | None = None
    replicas: list[Replica] = []
    try:
        db = await Database.open(pg_url)
        store = ConnectionStore(db.engine, TokenCipher(parse_key(key)))

        async def connect_expiring() -> str:
            """Alice connected, her access token 60 s from expiry (inside the refresh margin)."""
            access, refresh = auth.grant(account, SCOPE)
            now = datetime.now(UTC)
            await store.upsert(  # the OAuth dance itself is tested in tests/accounts
                Connection(
                    mm_user_id=alice,
                    instance_id=jira_url,
                    identity=JiraIdentity(account_id=alice_jira, display_name="Alice Liddell"),
                    secret=OAuth2Secret(
                        access_token=access,
                        refresh_token=refresh,
                        expires_at=now + timedelta(seconds=60),
                        cloud_id=jira.cloud_id,
                        scope=SCOPE,
                    ),
                    connected_at=now,
                    updated_at=now,
                ),
                now=now,
            )
            return refresh

        async def stored_refresh_token() -> str:
            conn = await store.get(alice, jira_url)
            assert conn is not None, "alice was disconnected"
            assert isinstance(conn.secret, OAuth2Secret)
            return conn.secret.refresh_token

        def start(n: int) -> ConfiguredReplica:
            env = replica_env(
                n,
                unused_tcp_port_factory(),
                pg_url,
                mm,
                tmp_path,
                key,
                MATTERMOST_COMMAND_TOKENS=COMMAND_TOKEN,
            )
            return ConfiguredReplica(n, env, tmp_path / f"r{n}.log", config)

        replicas = [start(n) for n in range(3)]
        await asyncio.gather(*(r.wait_ready() for r in replicas))

        async with aiohttp.ClientSession() as http:
            # Commands on the three replicas at once: one refresh.
            first = await connect_expiring()
            answers = await asyncio.gather(
                *(view(http, mm, r, alice, channel) for r in replicas for _ in range(3))
            )
            assert all("Checkout times out under load" in a for a in answers), answers
            assert auth.refreshes_done == 1
            assert auth.token_requests.count("refresh_token") == 1
            assert await stored_refresh_token() in auth.live_refresh_tokens()
            assert first not in auth.live_refresh_tokens()

            # The replica refreshing dies with its refresh request unanswered.
            await connect_expiring()
            auth.hold_refreshes = 1
            victim, survivors = replicas[0], replicas[1:]
            held = asyncio.create_task(view(http, mm, victim, alice, channel))
            await until(
                lambda: auth.token_requests.count("refresh_token") == 2, "the victim's refresh request"
            )
            lease = await db.kv.get(f"{_REFRESH_PREFIX}{jira_url}:{alice}", now=datetime.now(UTC))
            assert isinstance(lease, str) and victim.owner_part in lease, lease
            loop = asyncio.get_running_loop()
            victim.proc.kill()
            killed = loop.time()
            await asyncio.to_thread(victim.proc.wait, 10)
            held.cancel()

            # Alice goes on working on the survivors; one of them refreshes once the victim's
            # heartbeat is stale (her token is still valid meanwhile: the commands succeed).
            turns = itertools.cycle(survivors)

            async def refreshed_by_a_survivor() -> bool:
                text = await view(http, mm, next(turns), alice, channel)
                assert "Checkout times out under load" in text, text
                return auth.refreshes_done == 2

            refreshed = await until(refreshed_by_a_survivor, "a survivor's refresh", timeout=60)
            took = refreshed - killed
            print(f"\nrefresh lease of a replica killed -9 taken over after {took:.1f} s")
            assert took <= TAKEOVER_SECONDS
            # Once, by one survivor; the user stays connected with a live refresh token.
            await asyncio.gather(*(view(http, mm, r, alice, channel) for r in survivors for _ in range(3)))
            assert auth.refreshes_done == 2
            assert await stored_refresh_token() in auth.live_refresh_tokens()
    finally:
        for r in replicas:
            r.stop()
        if db is not None:
            await db.close()
        await auth.close()
        await jira_srv.close()
        await mm.stop()
