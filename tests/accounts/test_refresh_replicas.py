"""OAuth token refresh with several replicas on one database (SQLite and PostgreSQL): the refresh
lease (a kv entry) makes one replica of several refresh a token; a replica that died holding it
is recognised by its stale heartbeat and the lease is taken over at once, and without heartbeats
(or for a replica still beating) the lease is waited out."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from bot.accounts.models import OAuth2Secret
from bot.accounts.service import _REFRESH_PREFIX, REFRESH_LEASE, AccountService
from bot.jira.credentials import OAuth2Token
from bot.store.replicas import LIVENESS_SECONDS
from tests.accounts.conftest import Harness
from tests.accounts.test_cloud_flow import connected


def replica(h: Harness, owner: str | None = None) -> AccountService:
    """Another replica's service: same database and key, its own process state."""
    return AccountService(
        replicas=h.db.replicas,
        owner=owner,
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


async def test_a_lease_of_a_replica_without_heartbeat_delays_the_refresh_until_it_runs_out(
    harness: Harness,
) -> None:
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


async def _lease_held_by(h: Harness, holder: str) -> None:
    await h.db.kv.add(
        f"{_REFRESH_PREFIX}{h.service.instance('acme').url}:alice",
        holder,
        expires_at=h.clock.now + REFRESH_LEASE,
        now=h.clock.now,
    )


async def test_a_lease_left_by_a_replica_whose_heartbeat_stopped_is_taken_over_at_once(
    harness: Harness,
) -> None:
    h = harness
    before = await connected(h)
    # The replica beat, took the lease as the token neared its end, and was killed.
    await h.db.replicas.beat("killed-replica", now=h.clock.now + timedelta(minutes=59))
    h.clock.advance(minutes=59)
    await _lease_held_by(h, "killed-replica")
    h.clock.advance(seconds=LIVENESS_SECONDS + 1)  # its heartbeat is stale; its lease still runs
    survivors = [replica(h, owner="survivor-1"), replica(h, owner="survivor-2")]
    for s in survivors:
        await h.db.replicas.beat(s._owner, now=h.clock.now)
    results = await asyncio.gather(*(s.credentials_for("alice", "acme", now=h.clock.now) for s in survivors))
    assert h.auth.token_requests.count("refresh_token") == 1
    assert all(isinstance(r, OAuth2Token) for r in results)
    conn = await h.service.connection("alice", "acme")
    assert conn is not None and isinstance(conn.secret, OAuth2Secret)
    assert conn.secret.refresh_token != before.refresh_token


async def test_a_lease_held_by_a_replica_still_beating_is_not_taken(harness: Harness) -> None:
    h = harness
    await connected(h)
    h.clock.advance(minutes=59)
    await h.db.replicas.beat("busy-replica", now=h.clock.now)
    await _lease_held_by(h, "busy-replica")
    await replica(h, owner="other").credentials_for("alice", "acme", now=h.clock.now)
    assert h.auth.token_requests.count("refresh_token") == 0  # still valid: used as is
