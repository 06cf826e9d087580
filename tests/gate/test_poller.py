"""GatePoller: rounds driven by an injected clock, on SQLite (the store's behaviour on both
databases is covered by test_store.py and test_service.py)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from bot.gate.poller import GatePoller
from bot.gate.service import GateService, body_hash
from bot.gate.store import GateStore
from bot.gate_rules.model import ChangeRequest, Decision, Gate, Reason
from bot.jira.errors import JiraError
from bot.store.db import Database
from tests.gate.support import REQUEST, SUMMARY, T0, MemoryJsm, at, gate_settings


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[GateStore]:
    database = await Database.open(f"sqlite:///{tmp_path / 'gate.db'}")
    try:
        yield GateStore(database.engine)
    finally:
        await database.close()


@pytest.fixture
def jsm() -> MemoryJsm:
    return MemoryJsm()


@pytest.fixture
def changes() -> list[tuple[Gate | None, Gate]]:
    return []


@pytest.fixture
def service(store: GateStore, jsm: MemoryJsm, changes: list[tuple[Gate | None, Gate]]) -> GateService:
    async def listener(old: Gate | None, new: Gate) -> None:
        changes.append((old, new))

    return GateService(store, gate_settings(), lambda _instance: jsm, listeners=[listener])


async def open_gate(service: GateService, key: str, *, version: str = "1.2.3", now: datetime = T0) -> Gate:
    request = replace(REQUEST, version=version)
    gate, _ = await service.open_or_get(request, key, body_hash(request), now=now)
    return gate


def summary(version: str) -> str:
    return SUMMARY.replace("1.2.3", version)


async def test_gates_move_on_without_any_pipeline_polling(
    service: GateService, jsm: MemoryJsm, changes: list[tuple[Gate | None, Gate]]
) -> None:
    clock = Clock()
    gate = await open_gate(service, "a")
    poller = GatePoller(service, clock=clock)
    clock.now = at(30)
    quiet = await poller.run_once()
    assert (quiet.waiting, quiet.reads, quiet.changed) == (1, 1, 0)
    jsm.set_status("ITSM-1", "Implementing")
    clock.now = at(60)
    moved = await poller.run_once()
    assert (moved.waiting, moved.reads, moved.changed) == (1, 1, 1)
    stored = await service.get(gate.id)
    assert stored is not None and stored.decision is Decision.PROCEED
    assert changes[-1][1].decision is Decision.PROCEED
    # A proceeded gate is no longer polled.
    clock.now = at(90)
    assert (await poller.run_once()).waiting == 0


async def test_one_read_per_cr_shared_by_its_gates(service: GateService, jsm: MemoryJsm) -> None:
    clock = Clock()
    first = await open_gate(service, "a")
    redeploy = await open_gate(service, "b")  # reuses the linked ITSM-1
    other = await open_gate(service, "c", version="2.0.0")  # its own CR, ITSM-2
    assert [g.change_request.key for g in (first, redeploy, other) if g.change_request] == [
        "ITSM-1",
        "ITSM-1",
        "ITSM-2",
    ]
    reads_before = jsm.calls["get_issue"]
    jsm.set_status("ITSM-1", "Authorize")
    clock.now = at(30)
    round_ = await GatePoller(service, clock=clock).run_once()
    assert (round_.waiting, round_.reads, round_.changed) == (3, 2, 2)
    assert jsm.calls["get_issue"] == reads_before + 2
    for gate_id in (first.id, redeploy.id):
        stored = await service.get(gate_id)
        assert stored is not None and stored.change_request is not None
        assert stored.change_request.status == "Authorize"
    # Each gate keeps how it came to the shared CR.
    shared = await service.get(redeploy.id)
    assert shared is not None and shared.change_request is not None
    assert shared.change_request.source.value == "linked"


async def test_gates_without_a_cr_are_resolved(service: GateService, jsm: MemoryJsm) -> None:
    clock = Clock()
    jsm.fail_next("search_open_by_summary", JiraError("unavailable", status=503))
    gate = await open_gate(service, "a")
    assert gate.reason is Reason.JIRA_UNAVAILABLE
    clock.now = at(30)
    round_ = await GatePoller(service, clock=clock).run_once()
    assert (round_.resolved, round_.changed) == (1, 1)
    stored = await service.get(gate.id)
    assert stored is not None and stored.change_request is not None
    assert stored.change_request.key == "ITSM-1"


async def test_honours_jira_429(service: GateService, jsm: MemoryJsm) -> None:
    clock = Clock()
    await open_gate(service, "a")
    await open_gate(service, "b", version="2.0.0")
    poller = GatePoller(service, clock=clock, concurrency=1)
    jsm.fail_next("get_issue", JiraError("rate_limited", status=429, retry_after=120))
    reads = jsm.calls["get_issue"]
    clock.now = at(30)
    limited = await poller.run_once()
    # The first read got 429: the other CR of that Jira is not read this round.
    assert (limited.reads, limited.skipped) == (1, 1)
    assert jsm.calls["get_issue"] == reads + 1
    clock.now = at(100)
    paused = await poller.run_once()
    assert (paused.reads, paused.skipped) == (0, 2)
    assert jsm.calls["get_issue"] == reads + 1
    clock.now = at(151)
    resumed = await poller.run_once()
    assert (resumed.reads, resumed.skipped) == (2, 0)
    gates = await service.waiting_gates()
    assert {g.reason for g in gates} == {Reason.AWAITING_APPROVAL}


async def test_a_failing_gate_does_not_stop_the_round(service: GateService, jsm: MemoryJsm) -> None:
    clock = Clock()
    await open_gate(service, "a")
    healthy = await open_gate(service, "b", version="2.0.0")
    original = jsm.get_issue

    async def flaky(key_or_id: str) -> ChangeRequest | None:
        if key_or_id == "10001":
            raise RuntimeError("unexpected")
        return await original(key_or_id)

    jsm.get_issue = flaky  # type: ignore[method-assign]
    jsm.set_status("ITSM-2", "Implementing")
    clock.now = at(30)
    round_ = await GatePoller(service, clock=clock).run_once()
    assert (round_.failed, round_.changed) == (1, 1)
    stored = await service.get(healthy.id)
    assert stored is not None and stored.decision is Decision.PROCEED


async def test_stale_proceeded_gates_are_closed(service: GateService, jsm: MemoryJsm) -> None:
    clock = Clock()
    jsm.add(SUMMARY, "Implementing")
    gate = await open_gate(service, "a")
    clock.now = at(24 * 3600 + 1)
    await GatePoller(service, clock=clock).run_once()
    stored = await service.get(gate.id)
    assert stored is not None and stored.status.value == "done" and stored.decision is Decision.PROCEED


def test_jittered_interval(service: GateService) -> None:
    poller = GatePoller(service, clock=Clock(), rng=random.Random(7))
    assert poller.interval_seconds == 30.0  # the configured poll interval
    delays = [poller.next_delay() for _ in range(50)]
    assert all(27.0 <= d <= 33.0 for d in delays)
    assert len({round(d, 3) for d in delays}) > 40


async def test_runs_rounds_until_stopped(service: GateService, jsm: MemoryJsm) -> None:
    clock = Clock()
    gate = await open_gate(service, "a")
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock.now += timedelta(seconds=seconds)
        await asyncio.sleep(0)

    jsm.set_status("ITSM-1", "Implementing")
    async with GatePoller(service, clock=clock, sleep=sleep, rng=random.Random(1)) as poller:
        assert poller.running
        for _ in range(400):
            if len(slept) >= 3:
                break
            await asyncio.sleep(0.005)
    assert not poller.running
    assert len(slept) >= 3 and all(27 <= s <= 33 for s in slept)
    stored = await service.get(gate.id)
    assert stored is not None and stored.decision is Decision.PROCEED
    assert stored.updated_at == at(0)  # decided in the first round, at the clock's time then
