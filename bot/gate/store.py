"""Gates, their links to change requests and their events, in SQL (SQLite and PostgreSQL).

Concurrency:
- A gate is created insert-first on its idempotency key (ON CONFLICT DO NOTHING), so two retries
  of one POST make one gate.
- Every change of a gate is `UPDATE ... WHERE revision = :seen`: of two evaluations racing, one
  stores its verdict and the other reads the winner's.
- `gate_links` has one row per deployment. The gate that inserts it (or takes over an expired or
  closed one) is the only one that may look up or create the CR; the others wait until the row
  names the CR. That is what keeps concurrent or retried calls from creating two CRs.
- `gate_events` is unique per (gate, event id): a repeated deployment report, or a second attempt at
  the same comment on the CR, inserts nothing.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.gate_rules.model import (
    ChangeRequest,
    CrSource,
    Decision,
    DeploymentEventKind,
    Gate,
    GateEvent,
    GateRequest,
    GateStatus,
    GateTarget,
    Reason,
    Verdict,
)
from bot.store.schema import gate_events, gate_links, gates
from bot.store.sql_access import SqlAccess

# gate_links.instance is part of the primary key, so the default instance needs a value.
DEFAULT_INSTANCE = ""


@dataclass(frozen=True, slots=True)
class LinkKey:
    """One deployment: a project's version going to an environment, on one Jira connection."""

    instance: str | None
    project: str
    version: str
    environment: str

    @classmethod
    def of(cls, gate: Gate) -> LinkKey:
        return cls(gate.target.instance, gate.project, gate.version, gate.environment)


@dataclass(frozen=True, slots=True)
class GateLink:
    key: LinkKey
    cr_id: str | None  # None while `owner` looks the CR up or creates it
    cr_key: str | None
    owner: str | None
    claim_until: datetime | None
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class NewGate:
    idempotency_key: str
    body_hash: str
    request: GateRequest
    target: GateTarget
    controlled: bool
    verdict: Verdict
    deadline: datetime
    status: GateStatus = GateStatus.ACTIVE


# ----------------------------------------------------------------------------------- (de)serialising


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def _from_iso(text: Any) -> datetime | None:
    return datetime.fromisoformat(text) if isinstance(text, str) and text else None


def cr_to_json(cr: ChangeRequest) -> dict[str, Any]:
    return {
        "id": cr.id,
        "key": cr.key,
        "url": cr.url,
        "status": cr.status,
        "summary": cr.summary,
        "planned_start": _iso(cr.planned_start),
        "planned_end": _iso(cr.planned_end),
        "source": cr.source.value,
    }


def cr_from_json(data: Any) -> ChangeRequest | None:
    if not isinstance(data, dict) or not data.get("id"):
        return None
    return ChangeRequest(
        id=str(data["id"]),
        key=str(data.get("key") or ""),
        url=str(data.get("url") or ""),
        status=str(data.get("status") or ""),
        summary=str(data.get("summary") or ""),
        planned_start=_from_iso(data.get("planned_start")),
        planned_end=_from_iso(data.get("planned_end")),
        source=CrSource(data.get("source") or CrSource.FOUND.value),
    )


def _request_json(request: GateRequest) -> dict[str, Any]:
    return {
        "project": request.project,
        "environment": request.environment,
        "version": request.version,
        "change_request": request.change_request,
    }


def _target_json(target: GateTarget) -> dict[str, Any]:
    return {
        "instance": target.instance,
        "service_desk": target.service_desk,
        "request_type": target.request_type,
    }


def _gate(row: Row[Any]) -> Gate:
    m = row._mapping
    request = m["request"] or {}
    target = m["target"] or {}
    return Gate(
        id=m["id"],
        idempotency_key=m["idempotency_key"],
        body_hash=m["body_hash"],
        request=GateRequest(
            project=str(request.get("project", m["project"])),
            environment=str(request.get("environment", m["environment"])),
            version=str(request.get("version", m["version"])),
            change_request=request.get("change_request"),
        ),
        target=GateTarget(
            instance=target.get("instance"),
            service_desk=str(target.get("service_desk") or ""),
            request_type=str(target.get("request_type") or ""),
        ),
        controlled=bool(m["controlled"]),
        verdict=Verdict(
            decision=Decision(m["decision"]),
            reason=Reason(m["reason"]),
            message=m["message"],
            retry_after_seconds=m["retry_after_seconds"],
        ),
        change_request=cr_from_json(m["cr"]),
        status=GateStatus(m["status"]),
        created_at=m["created_at"],
        updated_at=m["updated_at"],
        deadline=m["deadline"],
        decided_at=m["decided_at"],
        root_post_id=m["root_post_id"],
        deployment=DeploymentEventKind(m["deployment"]) if m["deployment"] else None,
        revision=int(m["revision"]),
    )


def _link(row: Row[Any]) -> GateLink:
    m = row._mapping
    return GateLink(
        key=LinkKey(m["instance"] or None, m["project"], m["version"], m["environment"]),
        cr_id=m["cr_id"],
        cr_key=m["cr_key"],
        owner=m["owner"],
        claim_until=m["claim_until"],
        updated_at=m["updated_at"],
    )


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


class GateStore:
    """Repository of `gates`, `gate_links` and `gate_events`. Never reads the clock: callers pass `now`."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._db = SqlAccess(engine)

    # ------------------------------------------------------------------------------------ gates

    async def create(self, new: NewGate, *, now: datetime) -> tuple[Gate, bool]:
        """Store a gate unless its idempotency key is taken; (the gate under that key, created)."""
        t = gates
        verdict = new.verdict
        final = verdict.decision is not Decision.WAIT
        row = {
            "id": uuid.uuid4().hex,
            "idempotency_key": new.idempotency_key,
            "body_hash": new.body_hash,
            "request": _request_json(new.request),
            "project": new.request.project,
            "environment": new.request.environment,
            "version": new.request.version,
            "target": _target_json(new.target),
            "controlled": new.controlled,
            "cr_id": None,
            "cr_key": None,
            "cr": None,
            "decision": verdict.decision.value,
            "reason": verdict.reason.value,
            "message": verdict.message,
            "retry_after_seconds": verdict.retry_after_seconds,
            "status": new.status.value,
            "deployment": None,
            "root_post_id": None,
            "created_at": now,
            "updated_at": now,
            "decided_at": now if final else None,
            "deadline": new.deadline,
            "revision": 1,
        }
        insert = (
            self._db.insert(t).values(**row).on_conflict_do_nothing(index_elements=[t.c.idempotency_key])
        ).returning(t.c.id)
        async with self._db.write() as conn:
            created = (await conn.execute(insert)).first() is not None
            found = (
                await conn.execute(sa.select(t).where(t.c.idempotency_key == new.idempotency_key))
            ).first()
        if found is None:
            raise RuntimeError(
                f"gate with idempotency key {new.idempotency_key!r} vanished while being created"
            )
        return _gate(found), created

    async def get(self, gate_id: str) -> Gate | None:
        async with self._db.read() as conn:
            row = (await conn.execute(sa.select(gates).where(gates.c.id == gate_id))).first()
        return _gate(row) if row is not None else None

    async def get_by_key(self, idempotency_key: str) -> Gate | None:
        async with self._db.read() as conn:
            row = (
                await conn.execute(sa.select(gates).where(gates.c.idempotency_key == idempotency_key))
            ).first()
        return _gate(row) if row is not None else None

    async def find_by_prefix(self, prefix: str, *, limit: int = 2) -> list[Gate]:
        """Gates whose id starts with `prefix` (for commands, where people type a short id)."""
        prefix = prefix.strip().lower()
        if not prefix:
            return []
        stmt = (
            sa.select(gates)
            .where(gates.c.id.like(_escape_like(prefix) + "%", escape="\\"))
            .order_by(gates.c.created_at.desc())
            .limit(limit)
        )
        async with self._db.read() as conn:
            return [_gate(r) for r in (await conn.execute(stmt)).all()]

    async def list_gates(
        self,
        *,
        status: GateStatus | None = None,
        decision: Decision | None = None,
        project: str | None = None,
        limit: int = 50,
    ) -> list[Gate]:
        """Gates, newest first, optionally of one status, decision or project."""
        stmt = sa.select(gates)
        if status is not None:
            stmt = stmt.where(gates.c.status == status.value)
        if decision is not None:
            stmt = stmt.where(gates.c.decision == decision.value)
        if project is not None:
            stmt = stmt.where(gates.c.project == project)
        stmt = stmt.order_by(gates.c.created_at.desc(), gates.c.id).limit(limit)
        async with self._db.read() as conn:
            return [_gate(r) for r in (await conn.execute(stmt)).all()]

    async def list_waiting(self, *, limit: int = 1000) -> list[Gate]:
        """Active gates whose decision is wait, oldest first (the poller's work)."""
        stmt = (
            sa.select(gates)
            .where(gates.c.status == GateStatus.ACTIVE.value, gates.c.decision == Decision.WAIT.value)
            .order_by(gates.c.created_at, gates.c.id)
            .limit(limit)
        )
        async with self._db.read() as conn:
            return [_gate(r) for r in (await conn.execute(stmt)).all()]

    async def save(self, gate: Gate, *, expected_revision: int, now: datetime) -> Gate | None:
        """Store `gate`'s verdict, CR snapshot, status and deployment if the row is still at
        `expected_revision`; the stored gate, or None when someone changed it meanwhile."""
        t = gates
        cr = gate.change_request
        verdict = gate.verdict
        final = verdict.decision is not Decision.WAIT
        stmt = (
            sa.update(t)
            .where(t.c.id == gate.id, t.c.revision == expected_revision)
            .values(
                cr_id=cr.id if cr is not None else None,
                cr_key=cr.key if cr is not None else None,
                cr=cr_to_json(cr) if cr is not None else None,
                decision=verdict.decision.value,
                reason=verdict.reason.value,
                message=verdict.message,
                retry_after_seconds=verdict.retry_after_seconds,
                status=gate.status.value,
                deployment=gate.deployment.value if gate.deployment is not None else None,
                updated_at=now,
                # When the decision first became proceed or fail; kept through later changes.
                decided_at=sa.func.coalesce(t.c.decided_at, now) if final else t.c.decided_at,
                revision=t.c.revision + 1,
            )
            .returning(*t.c)
        )
        async with self._db.write() as conn:
            row = (await conn.execute(stmt)).first()
        return _gate(row) if row is not None else None

    async def set_root_post(self, gate_id: str, post_id: str) -> str | None:
        """Record the gate's root post unless it has one; the root post now stored (None: no gate).
        Does not bump the revision: a root post is not a change of the decision."""
        t = gates
        async with self._db.write() as conn:
            await conn.execute(
                sa.update(t).where(t.c.id == gate_id, t.c.root_post_id.is_(None)).values(root_post_id=post_id)
            )
            root = await conn.scalar(sa.select(t.c.root_post_id).where(t.c.id == gate_id))
        return str(root) if root is not None else None

    async def finish_stale(self, *, now: datetime) -> list[str]:
        """Mark done the active gates past their deadline that proceeded and never reported a
        deployment (a pipeline that sends no events); their ids."""
        t = gates
        stmt = (
            sa.update(t)
            .where(
                t.c.status == GateStatus.ACTIVE.value,
                t.c.decision == Decision.PROCEED.value,
                t.c.deadline <= now,
            )
            .values(status=GateStatus.DONE.value, updated_at=now, revision=t.c.revision + 1)
            .returning(t.c.id)
        )
        async with self._db.write() as conn:
            return [str(r[0]) for r in (await conn.execute(stmt)).all()]

    # ------------------------------------------------------------------------------------ links

    @staticmethod
    def _link_where(key: LinkKey) -> sa.ColumnElement[bool]:
        t = gate_links
        return sa.and_(
            t.c.instance == (key.instance or DEFAULT_INSTANCE),
            t.c.project == key.project,
            t.c.version == key.version,
            t.c.environment == key.environment,
        )

    async def get_link(self, key: LinkKey) -> GateLink | None:
        async with self._db.read() as conn:
            row = (await conn.execute(sa.select(gate_links).where(self._link_where(key)))).first()
        return _link(row) if row is not None else None

    async def claim_link(
        self,
        key: LinkKey,
        *,
        owner: str,
        now: datetime,
        lease_seconds: float,
        replace_cr_id: str | None = None,
    ) -> bool:
        """Become the one gate that looks up or creates the deployment's CR. True when:
        - no link exists (inserted), or
        - the link is an unfinished claim that is ours or whose lease ran out, or
        - `replace_cr_id` is given and the link still names that CR (it was found closed).
        False: another gate holds a live claim, or linked a CR meanwhile."""
        t = gate_links
        until = now + timedelta(seconds=lease_seconds)
        row = {
            "instance": key.instance or DEFAULT_INSTANCE,
            "project": key.project,
            "version": key.version,
            "environment": key.environment,
            "cr_id": None,
            "cr_key": None,
            "owner": owner,
            "claim_until": until,
            "updated_at": now,
        }
        insert = (
            self._db.insert(t)
            .values(**row)
            .on_conflict_do_nothing(index_elements=[t.c.instance, t.c.project, t.c.version, t.c.environment])
            .returning(t.c.owner)
        )
        takeover = sa.and_(
            t.c.cr_id.is_(None), sa.or_(t.c.owner == owner, t.c.claim_until.is_(None), t.c.claim_until <= now)
        )
        if replace_cr_id is not None:
            takeover = sa.or_(takeover, t.c.cr_id == replace_cr_id)
        update = (
            sa.update(t)
            .where(self._link_where(key), takeover)
            .values(cr_id=None, cr_key=None, owner=owner, claim_until=until, updated_at=now)
            .returning(t.c.owner)
        )
        async with self._db.write() as conn:
            if (await conn.execute(insert)).first() is not None:
                return True
            return (await conn.execute(update)).first() is not None

    async def set_link(self, key: LinkKey, *, owner: str, cr_id: str, cr_key: str, now: datetime) -> bool:
        """Name the CR of a claimed link; False when the claim is no longer `owner`'s."""
        t = gate_links
        stmt = (
            sa.update(t)
            .where(self._link_where(key), t.c.owner == owner, t.c.cr_id.is_(None))
            .values(cr_id=cr_id, cr_key=cr_key, owner=None, claim_until=None, updated_at=now)
            .returning(t.c.cr_id)
        )
        async with self._db.write() as conn:
            return (await conn.execute(stmt)).first() is not None

    async def release_link(self, key: LinkKey, *, owner: str) -> bool:
        """Give up an unfinished claim (the lookup failed), so the next call may try again."""
        t = gate_links
        stmt = (
            sa.delete(t)
            .where(self._link_where(key), t.c.owner == owner, t.c.cr_id.is_(None))
            .returning(t.c.project)
        )
        async with self._db.write() as conn:
            return (await conn.execute(stmt)).first() is not None

    # ----------------------------------------------------------------------------------- events

    async def add_event(
        self, gate_id: str, event_id: str, kind: str, *, now: datetime, detail: str = ""
    ) -> bool:
        """Record an event once; False when this gate already has an event with that id."""
        t = gate_events
        stmt = (
            self._db.insert(t)
            .values(gate_id=gate_id, event_id=event_id, kind=kind, detail=detail, created_at=now)
            .on_conflict_do_nothing(index_elements=[t.c.gate_id, t.c.event_id])
            .returning(t.c.id)
        )
        async with self._db.write() as conn:
            return (await conn.execute(stmt)).first() is not None

    async def remove_event(self, gate_id: str, event_id: str) -> bool:
        """Forget an event (a comment that could not be posted, so that it may be tried again)."""
        t = gate_events
        stmt = sa.delete(t).where(t.c.gate_id == gate_id, t.c.event_id == event_id).returning(t.c.id)
        async with self._db.write() as conn:
            return (await conn.execute(stmt)).first() is not None

    async def list_events(self, gate_id: str) -> list[GateEvent]:
        t = gate_events
        stmt = sa.select(t).where(t.c.gate_id == gate_id).order_by(t.c.created_at, t.c.id)
        async with self._db.read() as conn:
            rows = (await conn.execute(stmt)).all()
        return [
            GateEvent(
                gate_id=r.gate_id, event_id=r.event_id, kind=r.kind, created_at=r.created_at, detail=r.detail
            )
            for r in rows
        ]
