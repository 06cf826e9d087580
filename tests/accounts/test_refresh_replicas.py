"""OAuth token refresh with several replicas on one database: the refresh lease (a kv entry) makes
one replica of several refresh a token, and a replica that died holding it delays the refresh
only until the lease runs out."""

from __future__ import annotations

import asyncio

from bot.accounts.models import OAuth2Secret
from bot.accounts.service import _REFRESH_PREFIX, REFRESH_LEASE, AccountService
from bot.jira.credentials import OAuth2Token
from tests.accounts.conftest import Harness
from tests.accounts.test_cloud_flow import connected


def replica(h: Harness) -> AccountService:
    """Another replica's service: same database and key, its own process state."""
    return AccountService(
        jira=h.settings.jira,
        public_url=h.bot_url,
        store=h.store,
        kv=h.db.kv,
        cipher=h.store._cipher,
        verify=h.verify,
        cloud=h.cloud,
    )


async def test_replicas_refresh_a_token_once(harness: Harness) -> None:
    h = harness
    await connected(h)
    h.clock.advance(minutes=59)  # inside the refresh margin, not expired
    services = [h.service, replica(h), replica(h)]
    results = await asyncio.gather(
        *(s.credentials_for("alice", "acme", now=h.clock.now) for s in services for _ in range(3))
    )
    assert h.auth.token_requests.count("refresh_token") == 1
    assert all(isinstance(r, OAuth2Token) for r in results)


async def test_a_lease_left_by_a_dead_replica_delays_the_refresh_until_it_runs_out(harness: Harness) -> None:
    h = harness
    before = await connected(h)
    h.clock.advance(minutes=59)
    # A replica took the lease and died before refreshing.
    await h.db.kv.add(
        f"{_REFRESH_PREFIX}{h.service.instance('acme').url}:alice",
        "dead-replica",
        expires_at=h.clock.now + REFRESH_LEASE,
        now=h.clock.now,
    )
    other = replica(h)
    await other.credentials_for("alice", "acme", now=h.clock.now)
    assert h.auth.token_requests.count("refresh_token") == 0  # the token is still valid: used as is
    h.clock.advance(seconds=REFRESH_LEASE.total_seconds() + 1)
    await other.credentials_for("alice", "acme", now=h.clock.now)
    assert h.auth.token_requests.count("refresh_token") == 1
    conn = await h.service.connection("alice", "acme")
    assert conn is not None and isinstance(conn.secret, OAuth2Secret)
    assert conn.secret.refresh_token != before.refresh_token
