"""GateService against an in-memory JSM and the real store, on SQLite and PostgreSQL.

The resolution table holds the rules about which CR a gate checks; the other tests cover
evaluation over time, idempotency, concurrency, comments and deployment events.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from typing import Any

import pytest

from bot.gate.service import (
    GateNotFound,
    GateService,
    IdempotencyConflict,
    InvalidGateRequest,
    body_hash,
)
from bot.gate.store import GateStore, LinkKey
from bot.gate_rules.model import (
    CrSource,
    Decision,
    DeploymentEventKind,
    Gate,
    GateRequest,
    GateStatus,
    Reason,
)
from bot.gate_rules.settings import ChangeGateSettings
from bot.jira.errors import JiraError, JiraErrorKind
from bot.store.db import Database
from tests.gate.support import REQUEST, SUMMARY, T0, MemoryJsm, at, gate_settings
from tests.store.conftest import Backend, backend  # noqa: F401  (fixture)

DEPLOYMENT = '"Web Site" version 1.2.3 to "Production"'


@dataclass
class Env:
    store: GateStore
    jsm: MemoryJsm
    changes: list[tuple[Gate | None, Gate]] = field(default_factory=list)
    instances: list[str | None] = field(default_factory=list)

    def service(self, settings: ChangeGateSettings | None = None, **options: Any) -> GateService:
        def client(instance: str | None) -> MemoryJsm:
            self.instances.append(instance)
            return self.jsm

        async def listener(old: Gate | None, new: Gate) -> None:
            self.changes.append((old, new))

        return GateService(self.store, settings or gate_settings(), client, listeners=[listener], **options)


@pytest.fixture
async def env(backend: Backend) -> AsyncIterator[Env]:  # noqa: F811
    database: Database = await backend.open()
    try:
        yield Env(GateStore(database.engine), MemoryJsm())
    finally:
        await database.close()


async def open_gate(
    service: GateService, request: GateRequest = REQUEST, key: str = "idem-1", *, now: Any = T0
) -> Gate:
    gate, _ = await service.open_or_get(request, key, body_hash(request), now=now)
    return gate


def linked_comment(gate: Gate) -> str:
    return f"This change request gates the deployment of {DEPLOYMENT} (gate {gate.id})."


# ------------------------------------------------------------------------------ resolution table


@dataclass(frozen=True)
class Scenario:
    arrange: Callable[[MemoryJsm], None]
    decision: Decision
    reason: Reason
    source: CrSource | None  # how the gate came to its CR; None: it has none
    creates: int  # create_request calls
    request: GateRequest = REQUEST
    names: tuple[str, ...] = ()  # what the message must mention
    cr_key: str | None = None


def _nothing(jsm: MemoryJsm) -> None:
    pass


def _approved_match(jsm: MemoryJsm) -> None:
    jsm.add(SUMMARY, "Implementing")


def _two_matches(jsm: MemoryJsm) -> None:
    jsm.add(SUMMARY, "Planning")
    jsm.add(SUMMARY, "Authorize")


def _curly_quotes(jsm: MemoryJsm) -> None:
    jsm.add(SUMMARY.replace('"Web Site"', "“Web Site”"), "Implementing")


def _closed_match(jsm: MemoryJsm) -> None:
    jsm.add(SUMMARY, "Completed")


def _longer_summary(jsm: MemoryJsm) -> None:
    jsm.add(SUMMARY + " (copy)", "Implementing")


def _closed_cr(jsm: MemoryJsm) -> None:
    jsm.add("Some change", "Completed")


def _open_cr(jsm: MemoryJsm) -> None:
    jsm.add("Some change", "Implementing")


SCENARIOS: dict[str, Scenario] = {
    "not change controlled: no Jira call": Scenario(
        _nothing,
        Decision.PROCEED,
        Reason.NOT_CHANGE_CONTROLLED,
        None,
        0,
        request=replace(REQUEST, environment="Dev"),
    ),
    "uncontrolled project: no Jira call": Scenario(
        _nothing,
        Decision.PROCEED,
        Reason.NOT_CHANGE_CONTROLLED,
        None,
        0,
        request=replace(REQUEST, project="Intranet"),
    ),
    "no match: new CR created and waiting": Scenario(
        _nothing,
        Decision.WAIT,
        Reason.AWAITING_APPROVAL,
        CrSource.CREATED,
        1,
        names=("ITSM-1",),
        cr_key="ITSM-1",
    ),
    "exact match approved": Scenario(
        _approved_match,
        Decision.PROCEED,
        Reason.APPROVED,
        CrSource.FOUND,
        0,
        names=("ITSM-1",),
        cr_key="ITSM-1",
    ),
    "two exact matches fail naming both": Scenario(
        _two_matches, Decision.FAIL, Reason.AMBIGUOUS_CR, None, 0, names=("ITSM-1", "ITSM-2")
    ),
    "near-miss title (curly quotes) is not a match": Scenario(
        _curly_quotes, Decision.WAIT, Reason.AWAITING_APPROVAL, CrSource.CREATED, 1, cr_key="ITSM-2"
    ),
    "a longer title is not a match": Scenario(
        _longer_summary, Decision.WAIT, Reason.AWAITING_APPROVAL, CrSource.CREATED, 1, cr_key="ITSM-2"
    ),
    "a closed exact match is not reused": Scenario(
        _closed_match, Decision.WAIT, Reason.AWAITING_APPROVAL, CrSource.CREATED, 1, cr_key="ITSM-2"
    ),
    "supplied CR is the only one checked": Scenario(
        _open_cr,
        Decision.PROCEED,
        Reason.APPROVED,
        CrSource.SUPPLIED,
        0,
        request=replace(REQUEST, change_request="itsm-1"),
        cr_key="ITSM-1",
    ),
    "supplied CR closed fails without creating one": Scenario(
        _closed_cr,
        Decision.FAIL,
        Reason.CR_CLOSED,
        CrSource.SUPPLIED,
        0,
        request=replace(REQUEST, change_request="ITSM-1"),
        names=("ITSM-1",),
        cr_key="ITSM-1",
    ),
    "supplied CR not found": Scenario(
        _approved_match,
        Decision.FAIL,
        Reason.CR_NOT_FOUND,
        None,
        0,
        request=replace(REQUEST, change_request="ITSM-404"),
        names=("ITSM-404",),
    ),
}


@pytest.mark.parametrize("scenario", SCENARIOS.values(), ids=SCENARIOS.keys())
async def test_resolution_table(env: Env, scenario: Scenario) -> None:
    scenario.arrange(env.jsm)
    gate = await open_gate(env.service(), scenario.request)
    assert (gate.decision, gate.reason) == (scenario.decision, scenario.reason), gate.message
    assert env.jsm.calls["create_request"] == scenario.creates
    cr = gate.change_request
    assert (cr.source if cr else None) == scenario.source
    assert (cr.key if cr else None) == scenario.cr_key
    for name in scenario.names:
        assert name in gate.message
    if scenario.request.change_request:
        assert env.jsm.calls["search_open_by_summary"] == 0
    if scenario.decision is Decision.FAIL:
        assert gate.status is GateStatus.DONE


async def test_created_cr_is_linked_by_id_and_commented_once(env: Env) -> None:
    service = env.service()
    gate = await open_gate(service)
    link = await env.store.get_link(LinkKey.of(gate))
    assert link is not None and (link.cr_id, link.cr_key) == ("10001", "ITSM-1")
    assert env.jsm.comments_on("ITSM-1") == [linked_comment(gate)]
    await service.evaluate(gate, at(30))
    assert len(env.jsm.comments) == 1
    # The description and summary come from the templates; the instance from the settings.
    assert env.jsm.issues["10001"].summary == SUMMARY
    assert set(env.instances) == {"itsm"}


async def test_linked_open_cr_is_reused_and_closed_one_replaced(env: Env) -> None:
    service = env.service()
    first = await open_gate(service, key="deploy-1")
    assert first.change_request is not None and first.change_request.source is CrSource.CREATED
    redeploy = await open_gate(service, key="deploy-2", now=at(60))
    assert redeploy.change_request is not None
    assert (redeploy.change_request.key, redeploy.change_request.source) == ("ITSM-1", CrSource.LINKED)

    env.jsm.set_status("ITSM-1", "Completed")
    again = await open_gate(service, key="deploy-3", now=at(120))
    assert again.change_request is not None
    assert (again.change_request.key, again.change_request.source) == ("ITSM-2", CrSource.CREATED)
    assert env.jsm.calls["create_request"] == 2
    link = await env.store.get_link(LinkKey.of(again))
    assert link is not None and link.cr_key == "ITSM-2"


async def test_two_concurrent_gates_for_one_deployment_create_one_cr(env: Env) -> None:
    service = env.service()
    gates = await asyncio.gather(*(open_gate(service, key=f"concurrent-{i}") for i in range(4)))
    assert env.jsm.calls["create_request"] == 1
    assert len({g.id for g in gates}) == 4
    # The gate that created the CR has it; the others wait until the link names it.
    pending = [g for g in gates if g.change_request is None]
    assert all(g.reason is Reason.CR_PENDING for g in pending)
    settled = [await service.evaluate(g, at(2)) for g in pending]
    crs = {g.change_request.id for g in [*gates, *settled] if g.change_request is not None}
    assert crs == {"10001"}
    assert env.jsm.calls["create_request"] == 1


async def test_concurrent_retries_with_one_key_open_one_gate(env: Env) -> None:
    service = env.service()
    results = await asyncio.gather(
        *(service.open_or_get(REQUEST, "same-key", body_hash(REQUEST), now=T0) for _ in range(3))
    )
    assert sum(created for _, created in results) == 1
    assert len({gate.id for gate, _ in results}) == 1
    assert env.jsm.calls["create_request"] == 1


async def test_idempotency_key_with_another_body_conflicts(env: Env) -> None:
    service = env.service()
    gate = await open_gate(service)
    same, created = await service.open_or_get(REQUEST, "idem-1", body_hash(REQUEST), now=at(5))
    assert (same.id, created) == (gate.id, False)
    other = replace(REQUEST, version="1.2.4")
    with pytest.raises(IdempotencyConflict) as conflict:
        await service.open_or_get(other, "idem-1", body_hash(other), now=at(6))
    assert conflict.value.gate_id == gate.id
    assert env.jsm.calls["create_request"] == 1


async def test_request_names_take_the_configured_spelling(env: Env) -> None:
    request = GateRequest(project=" web site ", environment="PRODUCTION", version=" 1.2.3 ")
    gate = await open_gate(env.service(), request)
    assert gate.request == REQUEST
    assert env.jsm.issues["10001"].summary == SUMMARY


async def test_missing_fields_are_refused(env: Env) -> None:
    with pytest.raises(InvalidGateRequest, match="version"):
        await open_gate(env.service(), replace(REQUEST, version=" "))


async def test_cr_moves_through_its_statuses(env: Env) -> None:
    service = env.service()
    gate = await open_gate(service)
    env.jsm.set_status("ITSM-1", "Authorize")
    authorize = await service.evaluate(gate, at(30))
    assert (authorize.reason, authorize.change_request and authorize.change_request.status) == (
        Reason.AWAITING_APPROVAL,
        "Authorize",
    )
    env.jsm.set_status("ITSM-1", "Implementing")
    approved = await service.evaluate(authorize, at(60))
    assert approved.decision is Decision.PROCEED
    assert approved.decided_at == at(60)
    assert approved.change_request is not None and approved.change_request.source is CrSource.CREATED
    assert [c[1] for c in env.jsm.comments][-1].startswith("The change gate let the deployment")
    # The listener saw the gate announced, then each change.
    assert [(old.reason if old else None, new.reason) for old, new in env.changes] == [
        (None, Reason.AWAITING_APPROVAL),
        (Reason.AWAITING_APPROVAL, Reason.AWAITING_APPROVAL),  # Planning -> Authorize
        (Reason.AWAITING_APPROVAL, Reason.APPROVED),
    ]


async def test_approval_revoked_between_polls(env: Env) -> None:
    service = env.service()
    env.jsm.add(SUMMARY, "Implementing")
    gate = await open_gate(service)
    assert gate.decision is Decision.PROCEED
    env.jsm.set_status("ITSM-1", "Authorize")
    revoked = await service.evaluate(gate, at(30))
    assert (revoked.decision, revoked.reason) == (Decision.WAIT, Reason.AWAITING_APPROVAL)
    assert revoked.status is GateStatus.ACTIVE


async def test_unchanged_evaluation_stores_nothing(env: Env) -> None:
    service = env.service()
    gate = await open_gate(service)
    same = await service.evaluate(gate, at(30))
    assert same.revision == gate.revision
    assert len(env.changes) == 1


async def test_failed_gate_stays_failed(env: Env) -> None:
    service = env.service()
    gate = await open_gate(service)
    env.jsm.set_status("ITSM-1", "Declined")
    failed = await service.evaluate(gate, at(30))
    assert (failed.decision, failed.reason, failed.status) == (
        Decision.FAIL,
        Reason.STATUS_NOT_ALLOWED,
        GateStatus.DONE,
    )
    env.jsm.set_status("ITSM-1", "Implementing")
    reads = env.jsm.calls["get_issue"]
    assert await service.evaluate(failed, at(60)) == failed
    assert env.jsm.calls["get_issue"] == reads


async def test_timeout_after_the_maximum_wait(env: Env) -> None:
    service = env.service(gate_settings(max_wait_hours=1))
    gate = await open_gate(service)
    assert gate.deadline == at(3600)
    still = await service.evaluate(gate, at(3599))
    assert still.decision is Decision.WAIT
    timed_out = await service.evaluate(still, at(3600))
    assert (timed_out.decision, timed_out.reason) == (Decision.FAIL, Reason.GATE_TIMEOUT)
    assert "ITSM-1" in timed_out.message


async def test_jira_503_waits_then_recovers(env: Env) -> None:
    service = env.service()
    env.jsm.fail_next("create_request", JiraError("unavailable", status=503))
    gate = await open_gate(service)
    assert (gate.decision, gate.reason, gate.change_request) == (Decision.WAIT, Reason.JIRA_UNAVAILABLE, None)
    # The claim was given up, so the next evaluation creates the CR.
    assert await env.store.get_link(LinkKey.of(gate)) is None
    recovered = await service.evaluate(gate, at(30))
    assert (recovered.reason, recovered.change_request and recovered.change_request.key) == (
        Reason.AWAITING_APPROVAL,
        "ITSM-1",
    )
    env.jsm.fail_next("get_issue", JiraError("timeout"))
    blip = await service.evaluate(recovered, at(60))
    assert (blip.decision, blip.reason) == (Decision.WAIT, Reason.JIRA_UNAVAILABLE)
    assert "ITSM-1" in blip.message
    assert blip.change_request == recovered.change_request  # the last known CR is kept


@pytest.mark.parametrize("kind,status", [("auth", 401), ("forbidden", 403)])
async def test_jira_auth_failure_fails(env: Env, kind: JiraErrorKind, status: int) -> None:
    env.jsm.fail_next("search_open_by_summary", JiraError(kind, status=status))
    gate = await open_gate(env.service())
    assert (gate.decision, gate.reason) == (Decision.FAIL, Reason.JIRA_AUTH)
    assert str(status) in gate.message
    assert await env.store.get_link(LinkKey.of(gate)) is None


async def test_rate_limit_pauses_calls_to_that_instance(env: Env) -> None:
    service = env.service()
    gate = await open_gate(service)
    env.jsm.fail_next("get_issue", JiraError("rate_limited", status=429, retry_after=90))
    limited = await service.evaluate(gate, at(10))
    assert (limited.reason, limited.verdict.retry_after_seconds) == (Reason.JIRA_UNAVAILABLE, 90)
    assert service.backoff_until("itsm", now=at(10)) == at(100)
    reads = env.jsm.calls["get_issue"]
    await service.evaluate(limited, at(50))
    assert env.jsm.calls["get_issue"] == reads
    assert service.backoff_until("itsm", now=at(100)) is None
    back = await service.evaluate(limited, at(100))
    assert back.reason is Reason.AWAITING_APPROVAL


async def test_unknown_instance_fails_the_gate(env: Env) -> None:
    def no_client(instance: str | None) -> MemoryJsm:
        raise KeyError(f"no Jira instance {instance}")

    service = GateService(env.store, gate_settings(), no_client)
    gate = await open_gate(service)
    assert (gate.decision, gate.reason) == (Decision.FAIL, Reason.JIRA_ERROR)
    assert "itsm" in gate.message


async def test_project_connection_overrides(env: Env) -> None:
    settings = gate_settings(
        projects={"Billing": {"change_controlled": True, "instance": "eu", "service_desk": "CHG"}}
    )
    env.jsm.project = "CHG"
    gate = await open_gate(env.service(settings), GateRequest("billing", "Production", "7"))
    assert gate.target.instance == "eu" and gate.target.service_desk == "CHG"
    assert gate.change_request is not None and gate.change_request.key == "CHG-1"
    assert env.instances and set(env.instances) == {"eu"}


async def test_deployment_events_are_idempotent_and_commented_once(env: Env) -> None:
    service = env.service()
    env.jsm.add(SUMMARY, "Implementing")
    gate = await open_gate(service)
    comments_before = len(env.jsm.comments)
    started, recorded = await service.record_event(gate.id, "run-1", "deployment_started", now=at(10))
    again, recorded_again = await service.record_event(gate.id, "run-1", "deployment_started", now=at(11))
    other_id, recorded_other = await service.record_event(
        gate.id, "run-1b", DeploymentEventKind.STARTED, now=at(12)
    )
    assert (recorded, recorded_again, recorded_other) == (True, False, True)
    assert (started.deployment, started.status) == (DeploymentEventKind.STARTED, GateStatus.DONE)
    assert again.revision == started.revision == other_id.revision
    finished, _ = await service.record_event(
        gate.id, "run-2", "deployment_succeeded", now=at(90), detail="v1.2.3 live"
    )
    assert finished.deployment is DeploymentEventKind.SUCCEEDED
    new_comments = [text for _, text in env.jsm.comments[comments_before:]]
    assert new_comments == [
        'The deployment of "Web Site" version 1.2.3 to "Production" started.',
        'The deployment of "Web Site" version 1.2.3 to "Production" succeeded. v1.2.3 live',
    ]
    assert [e.event_id for e in await service.list_events(gate.id)] == ["run-1", "run-1b", "run-2"]
    # Once deploying, the CR moving on (Review, Completed) no longer changes the gate.
    env.jsm.set_status("ITSM-1", "Completed")
    assert (await service.evaluate(finished, at(120))).decision is Decision.PROCEED


async def test_event_errors(env: Env) -> None:
    service = env.service()
    gate = await open_gate(service)
    with pytest.raises(GateNotFound):
        await service.record_event("missing", "e", "deployment_started", now=at(1))
    with pytest.raises(ValueError):
        await service.record_event(gate.id, "e", "deployment_exploded", now=at(1))
    with pytest.raises(InvalidGateRequest):
        await service.record_event(gate.id, " ", "deployment_started", now=at(1))


async def test_comments_can_be_turned_off(env: Env) -> None:
    env.jsm.add(SUMMARY, "Implementing")
    service = env.service(gate_settings(comment_on_cr=False))
    gate = await open_gate(service)
    await service.record_event(gate.id, "e1", "deployment_failed", now=at(5))
    assert env.jsm.comments == []
    assert env.jsm.calls["add_comment"] == 0


async def test_failed_comment_is_retried_once_later(env: Env) -> None:
    service = env.service()
    env.jsm.fail_next("add_comment", JiraError("unavailable", status=502))
    gate = await open_gate(service)
    assert env.jsm.comments == []
    assert await service.retry_comments(now=at(30)) == 1
    assert await service.retry_comments(now=at(60)) == 0
    assert env.jsm.comments_on("ITSM-1") == [linked_comment(gate)]


async def test_cancel(env: Env) -> None:
    service = env.service()
    gate = await open_gate(service)
    cancelled, changed = await service.cancel(gate.id, now=at(5), by="@alice")
    assert changed
    assert (cancelled.decision, cancelled.reason, cancelled.status) == (
        Decision.FAIL,
        Reason.CANCELLED,
        GateStatus.DONE,
    )
    assert "@alice" in cancelled.message and "ITSM-1" in cancelled.message
    same, changed_again = await service.cancel(gate.id, now=at(6))
    assert (same, changed_again) == (cancelled, False)
    with pytest.raises(GateNotFound):
        await service.cancel("missing", now=at(7))


async def test_listener_failure_does_not_affect_the_gate(env: Env) -> None:
    async def broken(old: Gate | None, new: Gate) -> None:
        raise RuntimeError("Mattermost is down")

    service = env.service()
    service.add_listener(broken)
    gate = await open_gate(service)
    assert gate.reason is Reason.AWAITING_APPROVAL
    assert len(env.changes) == 1


async def test_wait_for_change_returns_early(env: Env) -> None:
    service = env.service()
    gate = await open_gate(service)
    waiter = asyncio.create_task(
        service.wait_for_change(gate.id, after_revision=gate.revision, wait_seconds=30)
    )
    await asyncio.sleep(0.01)
    assert not waiter.done()
    env.jsm.set_status("ITSM-1", "Implementing")
    await service.evaluate(gate, at(30))
    changed = await asyncio.wait_for(waiter, 2)
    assert changed is not None and changed.decision is Decision.PROCEED
    unchanged = await service.wait_for_change(gate.id, after_revision=changed.revision, wait_seconds=0.01)
    assert unchanged is not None and unchanged.revision == changed.revision
    assert await service.wait_for_change("missing", after_revision=0, wait_seconds=0.01) is None
