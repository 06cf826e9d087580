"""The change gate: opens gates, finds or creates their change request, evaluates them, comments
on the CR and records what the pipeline reports.

Which CR a gate checks (decided once per gate; later evaluations re-read that CR by id):
1. a CR key supplied by the pipeline: only that one, nothing is created or linked;
2. the CR linked to the deployment (instance + project + version + environment), while open;
3. an open CR whose summary equals the configured summary exactly (Jira's search only supplies
   candidates: a near miss, such as curly quotes for straight ones, is not a match);
4. a new request raised through the Service Desk API.
Steps 3 and 4 run only in the gate holding the deployment's link claim (`GateStore.claim_link`),
so concurrent or retried calls create at most one CR; the others wait (`cr_pending`) until the
link names it. Two open exact matches fail the gate, naming both.

Time is always passed in (`now`); nothing here reads the clock, except `wait_for_change`, whose
wait is a real duration.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import TypeVar

from bot.gate.outbox import comment_delivery
from bot.gate.ports import JsmClient, JsmClientFactory
from bot.gate.store import DEFAULT_INSTANCE, GateStore, LinkKey, NewGate
from bot.gate_rules.decision import decide
from bot.gate_rules.model import (
    ChangeRequest,
    CrSource,
    Decision,
    DeploymentEventKind,
    Gate,
    GateEvent,
    GatePolicy,
    GateRequest,
    GateStatus,
    LookupProblem,
    Reason,
    Verdict,
)
from bot.gate_rules.settings import ChangeGateSettings
from bot.jira.errors import JiraError
from bot.store.interfaces import Outbox

log = logging.getLogger(__name__)

T = TypeVar("T")

# Called after every stored change of a gate: `old` is None the first time the gate is announced.
ChangeListener = Callable[[Gate | None, Gate], Awaitable[None]]

# A link claim outlives the slowest lookup + create (each Jira call times out well before this).
DEFAULT_CLAIM_SECONDS = 120.0
# Evaluations lost to a concurrent writer are retried on the fresh row this many times.
_SAVE_ATTEMPTS = 3
_COMMENT_EVENT = "comment"
_PIPELINE_EVENT_PREFIX = "pipeline:"
_COMMENT_PREFIX = "comment:"


class GateError(Exception):
    """A gate request the service cannot honour; the message says why."""


class IdempotencyConflict(GateError):
    """The idempotency key was used before with a different request body."""

    def __init__(self, gate_id: str) -> None:
        super().__init__("this Idempotency-Key was already used with a different request")
        self.gate_id = gate_id


class GateNotFound(GateError):
    def __init__(self, gate_id: str) -> None:
        super().__init__(f"no gate {gate_id}")
        self.gate_id = gate_id


class InvalidGateRequest(GateError, ValueError):
    """A required field is missing or empty."""


@dataclass(frozen=True, slots=True)
class CrRead:
    """One read of a CR: the CR as Jira returned it, or why there is none. The poller reads a CR
    once per round and hands the same read to every gate that checks it."""

    cr: ChangeRequest | None
    problem: LookupProblem | None = None


class _LookupFailed(Exception):
    def __init__(self, problem: LookupProblem) -> None:
        super().__init__(problem.reason.value)
        self.problem = problem


def body_hash(request: GateRequest) -> str:
    """A stable digest of the request as the pipeline sent it, for idempotency checks."""
    canonical = json.dumps(
        {
            "project": request.project,
            "environment": request.environment,
            "version": request.version,
            "change_request": request.change_request,
        },
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def _deployment_text(gate: Gate) -> str:
    return f'"{gate.project}" version {gate.version} to "{gate.environment}"'


def _changed(old: Gate, new: Gate) -> bool:
    """A change worth storing and announcing: not a new retry hint alone."""
    return (
        old.verdict.decision,
        old.verdict.reason,
        old.verdict.message,
        old.change_request,
        old.status,
        old.deployment,
    ) != (
        new.verdict.decision,
        new.verdict.reason,
        new.verdict.message,
        new.change_request,
        new.status,
        new.deployment,
    )


class GateService:
    def __init__(
        self,
        store: GateStore,
        settings: ChangeGateSettings,
        clients: JsmClientFactory,
        *,
        claim_seconds: float = DEFAULT_CLAIM_SECONDS,
        listeners: Iterable[ChangeListener] = (),
        outbox: Outbox | None = None,
        on_queued: Callable[[], None] = lambda: None,
    ) -> None:
        """`outbox`: where comments on the CR are queued for the delivery worker (durable,
        retried after a restart too); without one they are posted at once and a failed one is
        retried in memory by `retry_comments`. `on_queued` wakes the delivery worker."""
        self.store = store
        self.outbox = outbox
        self._on_queued = on_queued
        self.settings = settings
        self.policy: GatePolicy = settings.policy()
        self._clients = clients
        self._claim_seconds = claim_seconds
        self._listeners: list[ChangeListener] = list(listeners)
        # Instance -> until when Jira asked us (429) to leave it alone.
        self._backoff: dict[str, datetime] = {}
        # Comments that failed to post, retried by `retry_comments`: (gate id, kind) -> text.
        self._comment_retries: dict[tuple[str, str], str] = {}
        self._changes: dict[str, asyncio.Event] = {}

    def add_listener(self, listener: ChangeListener) -> None:
        self._listeners.append(listener)

    # --------------------------------------------------------------------------------- queries

    async def get(self, gate_id: str) -> Gate | None:
        return await self.store.get(gate_id)

    async def waiting_gates(self, *, limit: int = 1000) -> list[Gate]:
        return await self.store.list_waiting(limit=limit)

    async def list_events(self, gate_id: str) -> list[GateEvent]:
        """The deployment events the pipeline reported (event ids as the pipeline sent them)."""
        return [
            replace(e, event_id=e.event_id[len(_PIPELINE_EVENT_PREFIX) :])
            for e in await self.store.list_events(gate_id)
            if e.event_id.startswith(_PIPELINE_EVENT_PREFIX)
        ]

    def backoff_until(self, instance: str | None, *, now: datetime) -> datetime | None:
        """When Jira (429) allows calls to `instance` again; None when it does now."""
        until = self._backoff.get(instance or DEFAULT_INSTANCE)
        return until if until is not None and until > now else None

    async def wait_for_change(
        self, gate_id: str, *, after_revision: int, wait_seconds: float, recheck_seconds: float = 2.0
    ) -> Gate | None:
        """The gate once its revision is above `after_revision`, or as it is after `wait_seconds`
        seconds (None: no such gate). Woken at once by changes made in this process; changes made
        by another replica are seen at the next recheck."""
        loop = asyncio.get_running_loop()
        end = loop.time() + max(0.0, wait_seconds)
        while True:
            # Registered before reading, so a change between the read and the wait is not missed.
            event = self._changes.setdefault(gate_id, asyncio.Event())
            gate = await self.store.get(gate_id)
            left = end - loop.time()
            if gate is None or gate.revision > after_revision or left <= 0:
                return gate
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), min(recheck_seconds, left))

    # ------------------------------------------------------------------------------- opening

    async def open_or_get(
        self, request: GateRequest, idempotency_key: str, body_hash: str, *, now: datetime
    ) -> tuple[Gate, bool]:
        """The gate opened under `idempotency_key`, opening (and evaluating) it when new; True
        when this call opened it. The same key with a different `body_hash` raises
        IdempotencyConflict."""
        if not idempotency_key.strip():
            raise InvalidGateRequest("an idempotency key is required")
        existing = await self.store.get_by_key(idempotency_key)
        if existing is not None:
            return self._same_body(existing, body_hash), False
        request = self.settings.canonical(request)
        for name in ("project", "environment", "version"):
            if not getattr(request, name):
                raise InvalidGateRequest(f"{name} is required")
        controlled = self.settings.is_change_controlled(request.project, request.environment)
        verdict = decide(
            self.policy,
            controlled=controlled,
            cr=None,
            lookup_problem=Reason.CR_PENDING if controlled else None,
            now=now,
            opened_at=now,
        )
        new = NewGate(
            idempotency_key=idempotency_key,
            body_hash=body_hash,
            request=request,
            target=self.settings.target_for(request.project),
            controlled=controlled,
            verdict=verdict,
            deadline=now + timedelta(seconds=self.policy.max_wait_seconds),
        )
        gate, created = await self.store.create(new, now=now)
        if not created:
            return self._same_body(gate, body_hash), False
        log.info("gate %s opened for %s (controlled: %s)", gate.id, _deployment_text(gate), controlled)
        if not controlled:
            await self._announce(None, gate)
            return gate, True
        return await self._evaluate(gate, now, read=None, announce=True), True

    @staticmethod
    def _same_body(gate: Gate, body_hash: str) -> Gate:
        if gate.body_hash != body_hash:
            raise IdempotencyConflict(gate.id)
        return gate

    # ---------------------------------------------------------------------------- evaluating

    async def evaluate(self, gate: Gate, now: datetime, *, read: CrRead | None = None) -> Gate:
        """Re-read the gate's CR (or use `read`, a read shared by the poller) and store the new
        verdict; returns the gate as stored. A final gate (failed, cancelled, deployment reported)
        and an uncontrolled one are returned as they are, without calling Jira."""
        return await self._evaluate(gate, now, read=read, announce=False)

    async def recheck(self, gate_id: str, *, now: datetime) -> Gate:
        """Evaluate the gate now (the `/jira change recheck` command)."""
        gate = await self.store.get(gate_id)
        if gate is None:
            raise GateNotFound(gate_id)
        return await self.evaluate(gate, now)

    async def _evaluate(self, gate: Gate, now: datetime, *, read: CrRead | None, announce: bool) -> Gate:
        for _ in range(_SAVE_ATTEMPTS):
            if gate.is_final or not gate.controlled:
                return gate
            if read is None:
                read = await self._lookup(gate, now)
            fetched = read.cr
            if (
                fetched is not None
                and gate.change_request is not None
                and fetched.id == gate.change_request.id
            ):
                # A read shared among gates: each keeps how it came to this CR.
                fetched = replace(fetched, source=gate.change_request.source)
            known = fetched or gate.change_request
            verdict = decide(
                self.policy,
                controlled=True,
                cr=known,
                lookup_problem=read.problem,
                now=now,
                opened_at=gate.created_at,
            )
            status = GateStatus.DONE if verdict.decision is Decision.FAIL else GateStatus.ACTIVE
            candidate = replace(gate, verdict=verdict, change_request=known, status=status)
            if not _changed(gate, candidate):
                if announce:
                    await self._announce(None, gate)
                return gate
            stored = await self.store.save(candidate, expected_revision=gate.revision, now=now)
            if stored is not None:
                log.info(
                    "gate %s: %s (%s) %s",
                    stored.id,
                    stored.decision.value,
                    stored.reason.value,
                    stored.change_request.key if stored.change_request else "-",
                )
                await self._after_change(None if announce else gate, stored, now)
                return stored
            # Someone else stored a verdict meanwhile. Theirs stands, unless this call found the
            # CR and theirs has none yet: then apply the CR to the fresh row.
            fresh = await self.store.get(gate.id)
            if fresh is None:
                raise GateNotFound(gate.id)
            if fetched is None or fresh.change_request is not None:
                return fresh
            gate, read = fresh, CrRead(fetched)
        return gate

    async def _lookup(self, gate: Gate, now: datetime) -> CrRead:
        if gate.change_request is not None:
            return await self.read_change_request(gate.target.instance, gate.change_request, now=now)
        try:
            return CrRead(await self._resolve(gate, now))
        except _LookupFailed as failed:
            return CrRead(None, failed.problem)

    async def read_change_request(
        self, instance: str | None, known: ChangeRequest, *, now: datetime
    ) -> CrRead:
        """Read `known` again by id (keeping its source): the read the poller shares among the
        gates checking the same CR."""
        try:
            cr = await self._jira(instance, now, (known.key,), lambda c: c.get_issue(known.id))
        except _LookupFailed as failed:
            return CrRead(None, failed.problem)
        if cr is None:
            return CrRead(None, LookupProblem(Reason.CR_NOT_FOUND, (known.key,)))
        return CrRead(replace(cr, source=known.source))

    async def _resolve(self, gate: Gate, now: datetime) -> ChangeRequest:
        """The CR this gate checks, per the rules in the module docstring. Raises _LookupFailed,
        with `cr_pending` while another gate holds the deployment's claim."""
        instance = gate.target.instance
        supplied = gate.request.change_request
        if supplied:
            cr = await self._jira(instance, now, (supplied,), lambda c: c.get_issue(supplied))
            if cr is None:
                raise _LookupFailed(LookupProblem(Reason.CR_NOT_FOUND, (supplied,)))
            return replace(cr, source=CrSource.SUPPLIED)

        key = LinkKey.of(gate)
        link = await self.store.get_link(key)
        replace_cr_id: str | None = None
        if link is not None and link.cr_id is not None:
            linked_id, linked_key = link.cr_id, link.cr_key or link.cr_id
            cr = await self._jira(instance, now, (linked_key,), lambda c: c.get_issue(linked_id))
            if cr is not None and not self.policy.is_closed(cr.status):
                return replace(cr, source=CrSource.LINKED)
            # Closed (or gone): this deployment needs another CR.
            log.info("gate %s: linked CR %s is closed; looking again", gate.id, linked_key)
            replace_cr_id = linked_id
        claimed = await self.store.claim_link(
            key, owner=gate.id, now=now, lease_seconds=self._claim_seconds, replace_cr_id=replace_cr_id
        )
        if not claimed:
            raise _LookupFailed(LookupProblem(Reason.CR_PENDING))
        try:
            cr = await self._find_or_create(gate, now)
        except Exception:
            await self.store.release_link(key, owner=gate.id)
            raise
        if not await self.store.set_link(key, owner=gate.id, cr_id=cr.id, cr_key=cr.key, now=now):
            # The claim ran out and another gate took it over: it searches before creating, so it
            # links this same CR unless Jira's search has not indexed it yet.
            log.warning("gate %s: link claim for %s lost before %s was linked", gate.id, key, cr.key)
        return cr

    async def _find_or_create(self, gate: Gate, now: datetime) -> ChangeRequest:
        target = gate.target
        summary = self.settings.summary_for(gate.request)
        candidates = await self._jira(
            target.instance, now, (), lambda c: c.search_open_by_summary(target.service_desk, summary)
        )
        exact: dict[str, ChangeRequest] = {}
        for candidate in candidates:
            # Exactly equal, character for character: Jira's text search ignores punctuation.
            if candidate.summary == summary and not self.policy.is_closed(candidate.status):
                exact.setdefault(candidate.id, candidate)
        if len(exact) > 1:
            keys = tuple(sorted((c.key for c in exact.values()), key=_key_order))
            raise _LookupFailed(LookupProblem(Reason.AMBIGUOUS_CR, keys))
        if exact:
            return replace(next(iter(exact.values())), source=CrSource.FOUND)
        description = self.settings.description_for(gate.request)
        created = await self._jira(
            target.instance,
            now,
            (),
            lambda c: c.create_request(target.service_desk, target.request_type, summary, description),
        )
        log.info("gate %s: created %s for %s", gate.id, created.key, _deployment_text(gate))
        return replace(created, source=CrSource.CREATED)

    async def _jira(
        self,
        instance: str | None,
        now: datetime,
        keys: tuple[str, ...],
        call: Callable[[JsmClient], Awaitable[T]],
    ) -> T:
        """Run one Jira call for `instance`, turning failures into a _LookupFailed problem and
        remembering a 429 so that no call goes to that instance before Jira allows it."""
        until = self.backoff_until(instance, now=now)
        if until is not None:
            raise _LookupFailed(
                LookupProblem(
                    Reason.JIRA_UNAVAILABLE,
                    keys,
                    "rate limited",
                    retry_after_seconds=(until - now).total_seconds(),
                )
            )
        try:
            client = self._clients(instance)
        except (KeyError, ValueError) as exc:
            raise _LookupFailed(LookupProblem(Reason.JIRA_ERROR, keys, str(exc))) from exc
        try:
            return await call(client)
        except JiraError as exc:
            raise _LookupFailed(self._problem(exc, instance, now, keys)) from exc

    def _problem(
        self, error: JiraError, instance: str | None, now: datetime, keys: tuple[str, ...]
    ) -> LookupProblem:
        status = f", HTTP {error.status}" if error.status else ""
        if error.kind == "rate_limited":
            wait = error.retry_after if error.retry_after else float(self.policy.poll_interval_seconds)
            self._backoff[instance or DEFAULT_INSTANCE] = now + timedelta(seconds=wait)
            log.warning("Jira %s asked to slow down; no calls for %.0f s", instance or "(default)", wait)
            return LookupProblem(Reason.JIRA_UNAVAILABLE, keys, "rate limited", retry_after_seconds=wait)
        if error.kind in ("unavailable", "timeout"):
            return LookupProblem(
                Reason.JIRA_UNAVAILABLE, keys, f"{error.kind}{status}", retry_after_seconds=error.retry_after
            )
        if error.kind in ("auth", "forbidden"):
            return LookupProblem(Reason.JIRA_AUTH, keys, f"{error.kind}{status}")
        detail = error.detail or f"{error.kind}{status}"
        return LookupProblem(Reason.JIRA_ERROR, keys, detail)

    # ------------------------------------------------------------------------ pipeline events

    async def record_event(
        self, gate_id: str, event_id: str, kind: DeploymentEventKind | str, *, now: datetime, detail: str = ""
    ) -> tuple[Gate, bool]:
        """Record a deployment event once per event id; (the gate, whether this call recorded
        it). The gate is done from then on: its decision no longer changes. Raises GateNotFound,
        or ValueError for an unknown kind or an empty event id."""
        event_kind = DeploymentEventKind(kind)
        if not event_id.strip():
            raise InvalidGateRequest("an event id is required")
        gate = await self.store.get(gate_id)
        if gate is None:
            raise GateNotFound(gate_id)
        recorded = await self.store.add_event(
            gate_id, _PIPELINE_EVENT_PREFIX + event_id, event_kind.value, now=now, detail=detail
        )
        if not recorded:
            return gate, False
        for _ in range(_SAVE_ATTEMPTS):
            candidate = replace(gate, deployment=event_kind, status=GateStatus.DONE)
            if not _changed(gate, candidate):
                break
            stored = await self.store.save(candidate, expected_revision=gate.revision, now=now)
            if stored is not None:
                await self._after_change(gate, stored, now)
                gate = stored
                break
            fresh = await self.store.get(gate_id)
            if fresh is None:
                raise GateNotFound(gate_id)
            gate = fresh
        suffix = f" {detail.strip()}" if detail.strip() else ""
        verb = {
            DeploymentEventKind.STARTED: "started",
            DeploymentEventKind.SUCCEEDED: "succeeded",
            DeploymentEventKind.FAILED: "failed",
        }[event_kind]
        await self._comment(
            gate, event_kind.value, f"The deployment of {_deployment_text(gate)} {verb}.{suffix}", now
        )
        return gate, True

    async def cancel(self, gate_id: str, *, now: datetime, by: str = "") -> tuple[Gate, bool]:
        """Fail the gate with `cancelled` unless it is final already; (the gate, whether this call
        cancelled it)."""
        for _ in range(_SAVE_ATTEMPTS):
            gate = await self.store.get(gate_id)
            if gate is None:
                raise GateNotFound(gate_id)
            if gate.is_final:
                return gate, False
            who = f" by {by}" if by else ""
            on = f" ({gate.change_request.key})" if gate.change_request else ""
            verdict = Verdict(Decision.FAIL, Reason.CANCELLED, f"The gate{on} was cancelled{who}.")
            candidate = replace(gate, verdict=verdict, status=GateStatus.DONE)
            stored = await self.store.save(candidate, expected_revision=gate.revision, now=now)
            if stored is not None:
                await self._after_change(gate, stored, now)
                return stored, True
        raise GateError(f"gate {gate_id} kept changing while being cancelled; try again")

    async def set_root_post(self, gate_id: str, post_id: str) -> str | None:
        """Record the gate's Mattermost root post unless one is recorded; the one stored."""
        return await self.store.set_root_post(gate_id, post_id)

    async def finish_stale(self, *, now: datetime) -> list[str]:
        """Close gates that proceeded long ago and never reported a deployment."""
        return await self.store.finish_stale(now=now)

    # ----------------------------------------------------------------- announcements, comments

    async def _announce(self, old: Gate | None, new: Gate) -> None:
        event = self._changes.pop(new.id, None)
        if event is not None:
            event.set()
        for listener in list(self._listeners):
            try:
                await listener(old, new)
            except Exception:
                # Posting about a gate must never change or block its decision.
                log.exception("gate change listener failed for gate %s", new.id)

    async def _after_change(self, old: Gate | None, new: Gate, now: datetime) -> None:
        await self._announce(old, new)
        cr = new.change_request
        if cr is None:
            return
        if old is None or old.change_request is None or old.change_request.id != cr.id:
            await self._comment(
                new,
                f"linked:{cr.id}",
                f"This change request gates the deployment of {_deployment_text(new)} (gate {new.id}).",
                now,
            )
        if new.decision is Decision.PROCEED and (old is None or old.decision is not Decision.PROCEED):
            await self._comment(
                new,
                "proceed",
                f"The change gate let the deployment of {_deployment_text(new)} proceed: {new.message}",
                now,
            )

    async def _comment(self, gate: Gate, kind: str, text: str, now: datetime) -> bool:
        """Post a comment on the gate's CR once per (gate, kind): the marker row goes in first,
        so concurrent or repeated calls post nothing more; a failed post drops the marker and is
        retried by `retry_comments`."""
        if not self.settings.comment_on_cr or gate.change_request is None:
            return False
        if self.outbox is not None:
            return await self._queue_comment(gate, kind, text, now)
        if not await self.store.add_event(
            gate.id, _COMMENT_PREFIX + kind, _COMMENT_EVENT, now=now, detail=text
        ):
            self._comment_retries.pop((gate.id, kind), None)  # posted already (or being posted)
            return False
        cr = gate.change_request
        try:
            await self._jira(gate.target.instance, now, (cr.key,), lambda c: c.add_comment(cr.id, text))
        except _LookupFailed as failed:
            log.warning(
                "gate %s: comment on %s not posted (%s)", gate.id, cr.key, failed.problem.reason.value
            )
            await self.store.remove_event(gate.id, _COMMENT_PREFIX + kind)
            self._comment_retries[(gate.id, kind)] = text
            return False
        self._comment_retries.pop((gate.id, kind), None)
        return True

    async def _queue_comment(self, gate: Gate, kind: str, text: str, now: datetime) -> bool:
        """Queue the comment in the outbox (once per gate and kind: its id is derived from them),
        then note it among the gate's events; True when this call queued it."""
        assert self.outbox is not None and gate.change_request is not None
        cr = gate.change_request
        delivery = comment_delivery(
            gate_id=gate.id,
            instance=gate.target.instance,
            cr_id=cr.id,
            cr_key=cr.key,
            kind=kind,
            text=text,
            public=self.settings.comments_public,
        )
        try:
            [queued] = await self.outbox.enqueue([delivery], now=now)
        except Exception:
            # Commenting must never change or block the gate's decision.
            log.exception("gate %s: comment on %s not queued", gate.id, cr.key)
            return False
        await self.store.add_event(gate.id, _COMMENT_PREFIX + kind, _COMMENT_EVENT, now=now, detail=text)
        if queued is not None:
            self._on_queued()
        return queued is not None

    async def retry_comments(self, *, now: datetime) -> int:
        """Try again the comments that failed to post (the poller calls this every round);
        returns how many were posted."""
        posted = 0
        for (gate_id, kind), text in list(self._comment_retries.items()):
            gate = await self.store.get(gate_id)
            if gate is None:
                self._comment_retries.pop((gate_id, kind), None)
                continue
            if await self._comment(gate, kind, text, now):
                posted += 1
        return posted


def _key_order(key: str) -> tuple[str, int]:
    project, _, number = key.rpartition("-")
    return (project, int(number)) if number.isdigit() else (key, 0)
