"""Every duty done once across replicas, and carried on when the replica doing it dies: three real
`jira-chatops serve` processes on one fresh PostgreSQL database, with a fake Mattermost (its
websocket reaching every replica) and a fake Jira Service Management for the change gate.

- the websocket listener's actions: a direct message to the bot is seen by the three replicas and
  answered once (the post is claimed in the store), before and after the kill;
- the change-gate poller: a waiting gate's CR is read once per interval across the replicas, not
  three times ("gate-poller" duty lease), and after the polling replica is killed -9 another one
  reads it within 10 s;
- housekeeping: one replica holds the "housekeeping" duty lease, and another takes it within 10 s
  of the kill;
- config-as-code subscriptions, synced by each replica at start: stored once, announced nowhere.

Slow (about 40 s): the gate's shortest poll interval is 5 s.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import aiohttp
import sqlalchemy as sa

from bot.accounts.crypto import generate_key_text
from bot.store.db import Database
from bot.store.schema import subscriptions
from tests.e2e.test_replicas import ROOT, Replica, pg_url, replica_env  # noqa: F401  (pg_url: a fixture)
from tests.fakes import FakeMattermost
from tests.fakes.jsm import FakeJsm

SVC_EMAIL = "svc-gate@example.com"
SVC_SECRET = "svc-gate-secret-token"
PIPELINE_TOKEN = "web-site-pipeline-token-0123456789"
POLL_SECONDS = 5  # the shortest change_gate.poll_interval_seconds
CR_READS = "/rest/api/2/issue/"  # the poller's status reads (the field list is /rest/api/2/field)
TAKEOVER_SECONDS = 10.0


class ConfiguredReplica(Replica):
    """A replica started with a config file (`serve --config`)."""

    def __init__(self, n: int, env: dict[str, str], log: Path, config: Path) -> None:
        self.n = n
        self.url = f"http://127.0.0.1:{env['PORT']}"
        self.log = log
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "bot", "serve", "--config", str(config)],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
            )


def write_config(path: Path, jsm: FakeJsm) -> Path:
    path.write_text(
        f"""
database:
  purge_interval_minutes: 0.05   # a housekeeping round every 3 s
jira:
  instances:
    - url: "{jsm.url}"
      type: cloud
      alias: itsm
      service_account: {{email: "{SVC_EMAIL}", api_token: "{SVC_SECRET}"}}
change_gate:
  instance: itsm
  service_desk: ITSM
  poll_interval_seconds: {POLL_SECONDS}
  channel: ops-team/deployments
  pipeline_tokens: [{{token: "{PIPELINE_TOKEN}", projects: [Web Site]}}]
  projects: {{Web Site: {{change_controlled: true}}}}
  environments: {{Production: {{change_controlled: true}}}}
subscriptions:
  - name: New bugs
    channel: acme/dev
    filters: {{events: [event_created], projects: [WEB]}}
  - name: Resolved
    channel: acme/ops
    filters: {{events: [event_updated_resolved], projects: [WEB]}}
"""
    )
    return path


async def until(check: Callable[[], object], what: str, timeout: float = 30.0) -> float:  # noqa: ASYNC109
    """Wait until `check()` is true; the loop time then. Fails naming `what` after `timeout` s."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return loop.time()
        if loop.time() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        await asyncio.sleep(0.1)


async def holder(db: Database, duty: str, replicas: Sequence[Replica]) -> Replica | None:
    """The live replica whose owner id holds the duty lease (None: none, or a dead one)."""
    lease = await db.leases.get(duty)
    if lease is None:
        return None
    return next((r for r in replicas if r.owner_part in lease.owner and r.proc.poll() is None), None)


def bot_answers(fake: FakeMattermost, channel: str) -> list[dict[str, object]]:
    return [p for p in fake.posts_in(channel) if p["user_id"] == fake.bot_user_id]


async def test_each_duty_is_done_once_across_replicas_and_taken_over_after_a_kill(
    pg_url: str,  # noqa: F811
    tmp_path: Path,
    unused_tcp_port_factory: Callable[[], int],
) -> None:
    mm = FakeMattermost()
    channels = {}
    for team, name in (("acme", "dev"), ("acme", "ops"), ("ops-team", "deployments")):
        channels[name] = mm.add_channel(team, name)
        mm.add_member(channels[name], mm.bot_user_id)
    users = [mm.add_user(name) for name in ("alice", "bob", "carol")]
    dms = [mm.direct_channel(mm.bot_user_id, u) for u in users]
    jsm = FakeJsm("cloud")
    jsm.add_api_token(SVC_EMAIL, SVC_SECRET)
    desk = jsm.add_service_desk("ITSM", "IT service management")
    jsm.add_request_type(desk, "Request a change")
    await mm.start()
    await jsm.start()
    config = write_config(tmp_path / "config.yaml", jsm)
    key = generate_key_text()

    def start(n: int) -> ConfiguredReplica:
        env = replica_env(n, unused_tcp_port_factory(), pg_url, mm, tmp_path, key)
        return ConfiguredReplica(n, env, tmp_path / f"r{n}.log", config)

    def reads() -> int:
        return len(jsm.requests_to(CR_READS, "GET"))

    replicas: list[Replica] = []
    db: Database | None = None
    try:
        # The first replica alone takes both duties; then the two others join.
        replicas.append(start(0))
        await replicas[0].wait_ready()
        db = await Database.open(pg_url, run_migrations=False)
        for duty in ("gate-poller", "housekeeping"):
            await until(lambda d=duty: _held_by(db, d, replicas[0]), f"replica 0 holding {duty}")
        replicas += [start(1), start(2)]
        await asyncio.gather(*(r.wait_ready() for r in replicas[1:]))
        await until(lambda: mm.websocket_count == 3, "three websockets open")
        victim = replicas[0]

        # Config-as-code: synced by each replica at start, stored once, announced nowhere.
        async with db.engine.connect() as conn:
            stored = (
                await conn.execute(sa.select(subscriptions.c.name).where(subscriptions.c.source == "config"))
            ).all()
        assert sorted(r[0] for r in stored) == ["New bugs", "Resolved"]

        # A direct message reaches the three replicas' listeners: one answers it.
        for user, dm in zip(users[:2], dms[:2], strict=True):
            mm.user_posts(user, dm, "hello there")
        await until(lambda: all(bot_answers(mm, dm) for dm in dms[:2]), "the DMs answered")

        # A gate waiting for its CR: one status read per interval across the three replicas.
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                replicas[1].url + "/api/v1/gates",
                json={"project": "Web Site", "environment": "Production", "version": "1.2.3"},
                headers={"Authorization": f"Bearer {PIPELINE_TOKEN}", "Idempotency-Key": "deploy-1"},
            ) as r,
        ):
            assert r.status == 201, await r.text()
        loop = asyncio.get_running_loop()
        await until(lambda: reads() >= 1, "the first CR read", timeout=2 * POLL_SECONDS + 5)
        window_start, before = loop.time(), reads()
        await asyncio.sleep(2.2 * POLL_SECONDS)  # a measuring window, not a wait for a condition
        window = loop.time() - window_start
        in_window = reads() - before
        # Rounds are the interval give or take 10 %; three pollers would read about 3x as often.
        most = int(window / (0.9 * POLL_SECONDS)) + 1
        assert 1 <= in_window <= most, (in_window, window)

        # kill -9 the replica holding both duties: the others take them over within 10 s.
        assert await holder(db, "gate-poller", replicas) is victim
        assert await holder(db, "housekeeping", replicas) is victim
        victim.proc.kill()
        killed = loop.time()
        await asyncio.to_thread(victim.proc.wait, 10)
        at_kill = reads()
        read_again = await until(lambda: reads() > at_kill, "a CR read after the kill")
        survivors = replicas[1:]
        poller = await holder(db, "gate-poller", survivors)
        housekeeper_at = await until(
            lambda: _held_by_one_of(db, "housekeeping", survivors), "housekeeping taken over"
        )
        print(
            f"\nduties: CR read {in_window}x in {window:.1f} s by 3 replicas; after kill -9, "
            f"CR read again after {read_again - killed:.1f} s, housekeeping taken after "
            f"{housekeeper_at - killed:.1f} s"
        )
        assert poller is not None, "the CR was read after the kill by no survivor holding the duty"
        assert read_again - killed <= TAKEOVER_SECONDS
        assert housekeeper_at - killed <= TAKEOVER_SECONDS

        # The survivors go on reading once per interval, not twice.
        window_start, before = loop.time(), reads()
        # The DMs after the kill are answered while the window runs.
        mm.user_posts(users[2], dms[2], "hello again")
        await until(lambda: bot_answers(mm, dms[2]), "the DM after the kill answered")
        await asyncio.sleep(max(0.0, window_start + 2.2 * POLL_SECONDS - loop.time()))
        window = loop.time() - window_start
        in_window = reads() - before
        assert 1 <= in_window <= int(window / (0.9 * POLL_SECONDS)) + 1, (in_window, window)
    finally:
        for r in replicas:
            r.stop()
        if db is not None:
            await db.close()
        await jsm.stop()
        await mm.stop()

    # Seconds after the last answer went out: each DM was answered once, not once per replica.
    assert [len(bot_answers(mm, dm)) for dm in dms] == [1, 1, 1], [bot_answers(mm, dm) for dm in dms]
    # No webhook was sent: a post in the subscriptions' channels would be an announcement of the
    # config sync (there is none, by any of the three replicas).
    assert mm.posts_in(channels["dev"]) == mm.posts_in(channels["ops"]) == []


async def _held_by(db: Database, duty: str, replica: Replica) -> bool:
    lease = await db.leases.get(duty)
    return lease is not None and replica.owner_part in lease.owner


async def _held_by_one_of(db: Database, duty: str, replicas: Sequence[Replica]) -> bool:
    return await holder(db, duty, replicas) is not None
