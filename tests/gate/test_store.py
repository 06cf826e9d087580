"""GateStore on SQLite and PostgreSQL (the `backend` fixture of tests/store)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import timedelta

import pytest
import sqlalchemy as sa

from bot.gate.store import GateStore, LinkKey, NewGate
from bot.gate_rules.model import (
    ChangeRequest,
    CrSource,
    Decision,
    DeploymentEventKind,
    GateStatus,
    GateTarget,
    Reason,
    Verdict,
)
from bot.store.db import Database
from bot.store.migrations import LATEST_VERSION, current_version
from tests.gate.support import REQUEST, T0, at
from tests.store.conftest import Backend, backend  # noqa: F401  (fixture)

TARGET = GateTarget(instance="itsm", service_desk="ITSM", request_type="Request a change")
WAITING = Verdict(Decision.WAIT, Reason.CR_PENDING, "Looking up the change request.", 2)
KEY = LinkKey("itsm", "Web Site", "1.2.3", "Production")
CR = ChangeRequest(
    id="10001",
    key="ITSM-1",
    url="https://itsm.example.com/browse/ITSM-1",
    status="Authorize",
    summary="s",
    planned_start=T0,
    planned_end=at(3600),
    source=CrSource.CREATED,
)


@pytest.fixture
async def store(backend: Backend) -> AsyncIterator[GateStore]:  # noqa: F811
    database: Database = await backend.open()
    try:
        yield GateStore(database.engine)
    finally:
        await database.close()


def new_gate(key: str = "idem-1", body: str = "hash-1") -> NewGate:
    return NewGate(
        idempotency_key=key,
        body_hash=body,
        request=REQUEST,
        target=TARGET,
        controlled=True,
        verdict=WAITING,
        deadline=at(24 * 3600),
    )


async def test_migration_creates_the_gate_tables(backend: Backend) -> None:  # noqa: F811
    database = await backend.open()
    try:
        assert await current_version(database.engine) == LATEST_VERSION >= 3
        async with database.engine.connect() as conn:
            names = await conn.run_sync(lambda c: set(sa.inspect(c).get_table_names()))
        assert {"gates", "gate_links", "gate_events"} <= names
    finally:
        await database.close()


async def test_create_is_idempotent_by_key_and_round_trips(store: GateStore) -> None:
    first, created = await store.create(new_gate(), now=T0)
    again, created_again = await store.create(new_gate(body="other"), now=at(5))
    assert (created, created_again) == (True, False)
    assert again == first  # the stored gate, body hash included, is returned unchanged
    assert first.body_hash == "hash-1"
    assert (first.request, first.target, first.verdict) == (REQUEST, TARGET, WAITING)
    assert (first.status, first.revision, first.created_at, first.deadline) == (
        GateStatus.ACTIVE,
        1,
        T0,
        at(24 * 3600),
    )
    assert await store.get(first.id) == first
    assert await store.get_by_key("idem-1") == first
    assert await store.find_by_prefix(first.id[:6]) == [first]
    assert await store.find_by_prefix("%") == []


async def test_concurrent_creates_with_one_key_make_one_gate(store: GateStore) -> None:
    results = await asyncio.gather(*(store.create(new_gate(), now=T0) for _ in range(5)))
    assert sum(created for _, created in results) == 1
    assert len({gate.id for gate, _ in results}) == 1


async def test_save_is_conditional_on_the_revision(store: GateStore) -> None:
    gate, _ = await store.create(new_gate(), now=T0)
    approved = Verdict(Decision.PROCEED, Reason.APPROVED, "ITSM-1 is approved.")
    saved = await store.save(
        replace(gate, verdict=approved, change_request=CR), expected_revision=1, now=at(10)
    )
    assert saved is not None
    assert (saved.revision, saved.change_request, saved.verdict) == (2, CR, approved)
    assert (saved.decided_at, saved.updated_at) == (at(10), at(10))
    stale = await store.save(replace(gate, status=GateStatus.DONE), expected_revision=1, now=at(11))
    assert stale is None
    later = await store.save(
        replace(saved, deployment=DeploymentEventKind.STARTED), expected_revision=2, now=at(20)
    )
    assert later is not None
    assert later.decided_at == at(10)  # the first decision time is kept
    assert later.deployment is DeploymentEventKind.STARTED


async def test_waiting_list_and_stale_proceeded_gates(store: GateStore) -> None:
    waiting, _ = await store.create(new_gate("a"), now=T0)
    proceeded, _ = await store.create(
        replace(new_gate("b"), verdict=Verdict(Decision.PROCEED, Reason.NOT_CHANGE_CONTROLLED, "ok")),
        now=at(1),
    )
    assert [g.id for g in await store.list_waiting()] == [waiting.id]
    assert [g.id for g in await store.list_gates(decision=Decision.PROCEED)] == [proceeded.id]
    assert await store.finish_stale(now=at(3600)) == []
    assert await store.finish_stale(now=at(24 * 3600 + 1)) == [proceeded.id]
    done = await store.get(proceeded.id)
    assert done is not None and done.status is GateStatus.DONE
    assert [g.id for g in await store.list_gates(status=GateStatus.ACTIVE)] == [waiting.id]


async def test_root_post_is_set_once_without_a_new_revision(store: GateStore) -> None:
    gate, _ = await store.create(new_gate(), now=T0)
    assert await store.set_root_post(gate.id, "post-1") == "post-1"
    assert await store.set_root_post(gate.id, "post-2") == "post-1"
    assert await store.set_root_post("missing", "post-3") is None
    stored = await store.get(gate.id)
    assert stored is not None and (stored.root_post_id, stored.revision) == ("post-1", 1)


async def test_link_claim_admits_one_gate_until_linked_or_expired(store: GateStore) -> None:
    assert await store.claim_link(KEY, owner="gate-a", now=T0, lease_seconds=60)
    assert not await store.claim_link(KEY, owner="gate-b", now=at(30), lease_seconds=60)
    assert await store.claim_link(KEY, owner="gate-a", now=at(30), lease_seconds=60)  # its own claim
    # The lease ran out (the claimer crashed): another gate takes over.
    assert await store.claim_link(KEY, owner="gate-b", now=at(91), lease_seconds=60)
    assert not await store.set_link(KEY, owner="gate-a", cr_id="1", cr_key="ITSM-1", now=at(92))
    assert await store.set_link(KEY, owner="gate-b", cr_id="10001", cr_key="ITSM-1", now=at(92))
    link = await store.get_link(KEY)
    assert link is not None
    assert (link.cr_id, link.cr_key, link.owner, link.claim_until) == ("10001", "ITSM-1", None, None)
    # A linked CR is kept until someone found it closed and replaces that very CR.
    assert not await store.claim_link(KEY, owner="gate-c", now=at(10_000), lease_seconds=60)
    assert not await store.claim_link(
        KEY, owner="gate-c", now=at(10_000), lease_seconds=60, replace_cr_id="999"
    )
    assert await store.claim_link(
        KEY, owner="gate-c", now=at(10_000), lease_seconds=60, replace_cr_id="10001"
    )
    assert not await store.claim_link(
        KEY, owner="gate-d", now=at(10_001), lease_seconds=60, replace_cr_id="10001"
    )
    assert await store.release_link(KEY, owner="gate-c")
    assert await store.get_link(KEY) is None


async def test_links_are_per_deployment_and_instance(store: GateStore) -> None:
    assert await store.claim_link(KEY, owner="a", now=T0, lease_seconds=60)
    for other in (
        replace(KEY, version="1.2.4"),
        replace(KEY, environment="Staging"),
        replace(KEY, instance=None),
        replace(KEY, project="Billing"),
    ):
        assert await store.claim_link(other, owner="b", now=T0, lease_seconds=60), other


async def test_concurrent_claims_admit_exactly_one(store: GateStore) -> None:
    results = await asyncio.gather(
        *(store.claim_link(KEY, owner=f"gate-{i}", now=T0, lease_seconds=60) for i in range(6))
    )
    assert sum(results) == 1


async def test_events_are_recorded_once_per_gate_and_id(store: GateStore) -> None:
    gate, _ = await store.create(new_gate(), now=T0)
    other, _ = await store.create(new_gate("idem-2"), now=T0)
    assert await store.add_event(gate.id, "e1", "deployment_started", now=at(1), detail="build 7")
    assert not await store.add_event(gate.id, "e1", "deployment_started", now=at(2))
    assert await store.add_event(other.id, "e1", "deployment_started", now=at(3))
    events = await store.list_events(gate.id)
    assert [(e.event_id, e.kind, e.detail, e.created_at) for e in events] == [
        ("e1", "deployment_started", "build 7", at(1))
    ]
    assert await store.remove_event(gate.id, "e1")
    assert await store.add_event(gate.id, "e1", "deployment_started", now=at(4))


async def test_deadline_is_stored_in_utc(store: GateStore) -> None:
    gate, _ = await store.create(replace(new_gate(), deadline=T0 + timedelta(hours=1)), now=T0)
    assert gate.deadline.utcoffset() == timedelta(0)
    assert gate.deadline == at(3600)
