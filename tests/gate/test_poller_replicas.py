"""Several replicas' pollers on one database (SQLite file and PostgreSQL): one of them polls, so a
waiting gate's CR is read once per interval, not once per replica; when the polling replica dies
without a word, another one takes over."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import UTC, datetime

from bot.gate.jsm import JsmClients
from bot.gate.poller import STANDBY_SECONDS, GatePoller
from bot.gate.service import GateService, body_hash
from bot.gate.store import GateStore
from bot.gate_rules.model import Decision, GateRequest
from bot.store.db import Database
from bot.store.leases import Duty
from tests.fakes.jsm import FakeJsm
from tests.gate.harness import gate_settings, jira_settings, start_fakes
from tests.store.conftest import Backend, backend  # noqa: F401  (the fixture: SQLite and PostgreSQL)

INTERVAL = 0.2
LEASE = 1.0


def now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Replica:
    db: Database
    service: GateService
    clients: JsmClients
    poller: GatePoller
    duty: Duty


async def replica(stack: AsyncExitStack, backend: Backend, jsm: FakeJsm, name: str) -> Replica:  # noqa: F811
    db = await backend.open()
    stack.push_async_callback(db.close)
    settings = gate_settings(comment_on_cr=False)
    clients = JsmClients(
        jira_settings(jsm),
        planned_start_field=settings.planned_start_field,
        planned_end_field=settings.planned_end_field,
        time_zone=settings.time_zone,
    )
    stack.push_async_callback(clients.close)
    service = GateService(GateStore(db.engine), settings, clients)
    duty = Duty(db.leases, "gate-poller", owner=name, ttl_seconds=LEASE, clock=now)
    poller = GatePoller(service, clock=now, interval_seconds=INTERVAL, duty=duty)
    stack.push_async_callback(poller.stop)
    return Replica(db, service, clients, poller, duty)


async def until(check, timeout: float = 30.0) -> None:  # noqa: ASYNC109
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def test_one_replica_polls_and_another_takes_over_when_it_dies(backend: Backend) -> None:  # noqa: F811
    """Runs for a few seconds of real polling (intervals of 0.2 s, a lease of 1 s)."""
    jsm, mm, _channel = await start_fakes()
    async with AsyncExitStack() as stack:
        stack.push_async_callback(jsm.stop)
        stack.push_async_callback(mm.stop)
        replicas = [await replica(stack, backend, jsm, f"replica-{i}") for i in range(3)]
        request = GateRequest(project="Web Site", environment="Production", version="7.0.0")
        gate, _ = await replicas[0].service.open_or_get(request, "key-1", body_hash(request), now=now())
        assert gate.decision is Decision.WAIT and gate.change_request is not None
        cr_reads = f"/rest/api/2/issue/{gate.change_request.id}"

        def reads() -> int:
            return len(jsm.requests_to(cr_reads, "GET"))

        before = reads()
        for r in replicas:
            r.poller.start()
        started = asyncio.get_running_loop().time()
        await until(lambda: reads() - before >= 8)
        elapsed = asyncio.get_running_loop().time() - started
        holders = [r for r in replicas if r.duty.held]
        assert len(holders) == 1
        # One read per interval (the interval less its 10 % jitter), not three.
        assert reads() - before <= elapsed / (INTERVAL * 0.9) + 2

        # The polling replica dies: its task ends without releasing the lease.
        dead = holders[0]
        task = dead.poller._task
        assert task is not None
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        dead.poller._task = None
        at_death = reads()
        await until(lambda: any(r.duty.held for r in replicas if r is not dead) and reads() >= at_death + 3)
        assert sum(r.duty.held for r in replicas if r is not dead) == 1


async def test_a_stopped_poller_hands_its_duty_over_at_once(backend: Backend) -> None:  # noqa: F811
    jsm, mm, _channel = await start_fakes()
    async with AsyncExitStack() as stack:
        stack.push_async_callback(jsm.stop)
        stack.push_async_callback(mm.stop)
        first, second = [await replica(stack, backend, jsm, f"replica-{i}") for i in range(2)]
        first.poller.start()
        await until(lambda: first.duty.held)
        second.poller.start()
        await first.poller.stop()  # graceful: the lease is released
        lease = await second.db.leases.get("gate-poller")
        assert lease is None or lease.owner == "replica-1"
        await until(lambda: second.duty.held, timeout=10)


async def test_a_replica_without_the_duty_asks_again_within_the_standby_time(backend: Backend) -> None:  # noqa: F811
    """With a long interval (30 s), the polling replica sleeps the interval, the others ask
    for the duty again every STANDBY_SECONDS: a dead poller's duty waits for its stale heartbeat,
    not for a whole interval."""
    jsm, mm, _channel = await start_fakes()
    async with AsyncExitStack() as stack:
        stack.push_async_callback(jsm.stop)
        stack.push_async_callback(mm.stop)
        slept: dict[str, list[float]] = {"replica-0": [], "replica-1": []}
        pollers = []
        for name in slept:
            r = await replica(stack, backend, jsm, name)

            async def sleep(seconds: float, name: str = name) -> None:
                slept[name].append(seconds)
                await asyncio.sleep(0.01)

            r.duty.ttl_seconds = 60.0
            r.poller = GatePoller(r.service, clock=now, interval_seconds=30.0, duty=r.duty, sleep=sleep)
            stack.push_async_callback(r.poller.stop)
            pollers.append(r)
        pollers[0].poller.start()
        await until(lambda: pollers[0].duty.held)
        pollers[1].poller.start()
        await until(lambda: len(slept["replica-1"]) >= 3 and len(slept["replica-0"]) >= 3)
        assert not pollers[1].duty.held
        assert all(s == STANDBY_SECONDS for s in slept["replica-1"]), slept
        assert all(27.0 <= s <= 33.0 for s in slept["replica-0"]), slept
