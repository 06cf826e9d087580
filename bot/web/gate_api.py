"""The change gate's HTTP API for pipelines: a thin adapter over the gate service.

    POST /api/v1/gates                 open or find again a gate (Idempotency-Key required)
    GET  /api/v1/gates/{id}?wait=N     the gate; long-polls up to 55 s for a change of decision
    POST /api/v1/gates/{id}/events     deployment_started|deployment_succeeded|deployment_failed

Every call carries `Authorization: Bearer <pipeline token>`; a token is scoped to projects and is
compared in constant time. Answers are JSON (`Content-Type: application/json` exactly); problems
are `{"status": "error", "reason": ...}` with 400 (invalid input), 401 (no or unknown token),
403 (token not valid for the project), 404 (unknown gate) or 422 (idempotency key reused with
another body); an unexpected failure is a 503 the pipeline retries, never a trace.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import Any

from aiohttp import web

from bot.gate.service import GateNotFound, GateService, IdempotencyConflict, InvalidGateRequest, body_hash
from bot.gate_rules.model import Decision, Gate, GateRequest
from bot.gate_rules.settings import ChangeGateSettings, PipelineToken
from bot.web.responses import BadJson, json_response, parse_json

log = logging.getLogger(__name__)

MAX_WAIT_SECONDS = 55
EVENT_KINDS = frozenset({"deployment_started", "deployment_succeeded", "deployment_failed"})
_MAX_TEXT = 255
_MAX_MESSAGE = 2000
_CR_KEY = re.compile(r"[A-Za-z][A-Za-z0-9_]*-\d+")


class _Problem(Exception):
    def __init__(self, status: int, reason: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.headers = dict(headers or {})


def _json(data: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    return json_response(data, status=status, headers={"Cache-Control": "no-store", **(headers or {})})


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


def gate_json(gate: Gate) -> dict[str, Any]:
    """The answer pipelines read; `retry_after_seconds` only while the decision may change."""
    verdict = gate.verdict
    cr = gate.change_request
    return {
        "gate_id": gate.id,
        "decision": verdict.decision.value,
        "reason": verdict.reason.value,
        "message": verdict.message,
        "change_request": (
            {
                "key": cr.key,
                "id": cr.id,
                "url": cr.url,
                "status": cr.status,
                "planned_start": _iso(cr.planned_start),
                "planned_end": _iso(cr.planned_end),
                "source": cr.source.value,
            }
            if cr is not None
            else None
        ),
        "retry_after_seconds": verdict.retry_after_seconds if verdict.decision is Decision.WAIT else None,
    }


def _progress(gate: Gate) -> tuple[str, str, str]:
    """What a long-poll waits to see change (messages name the CR status and hold no clock time)."""
    return gate.verdict.decision.value, gate.verdict.reason.value, gate.verdict.message


class GateApi:
    """`routes()` for the application; `clock` gives the service its `now`."""

    def __init__(
        self,
        service: GateService,
        *,
        clock: Callable[[], datetime],
        max_wait_seconds: float = MAX_WAIT_SECONDS,
        recheck_seconds: float = 3.0,
    ) -> None:
        self.service = service
        self.clock = clock
        self.max_wait_seconds = max_wait_seconds
        self.recheck_seconds = recheck_seconds

    @property
    def settings(self) -> ChangeGateSettings:
        return self.service.settings

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/api/v1/gates", self._guarded(self.open_gate)),
            web.get("/api/v1/gates/{gate_id}", self._guarded(self.get_gate)),
            web.post("/api/v1/gates/{gate_id}/events", self._guarded(self.post_event)),
        ]

    def _guarded(self, handler: Callable[[web.Request], Awaitable[web.Response]]) -> Any:
        async def run(request: web.Request) -> web.Response:
            try:
                return await handler(request)
            except _Problem as p:
                return _json({"status": "error", "reason": p.reason}, p.status, p.headers)
            except GateNotFound as e:
                return _json({"status": "error", "reason": str(e)}, 404)
            except (InvalidGateRequest, ValueError) as e:
                return _json({"status": "error", "reason": str(e)}, 400)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("gate API: %s %s failed", request.method, request.path)
                return _json(
                    {"status": "error", "reason": "the gate is not available right now; retry"},
                    503,
                    {"Retry-After": "5"},
                )

        return run

    # -- handlers ------------------------------------------------------------------------------------

    async def open_gate(self, request: web.Request) -> web.Response:
        token = self._token(request)
        body = await _object(request)
        unknown = sorted(set(body) - {"project", "environment", "version", "change_request"})
        if unknown:
            raise _Problem(400, f"unknown field(s): {', '.join(unknown)}")
        gate_request = GateRequest(
            project=_text(body, "project"),
            environment=_text(body, "environment"),
            version=_text(body, "version"),
            change_request=_cr_key(body.get("change_request")),
        )
        if not token.allows(gate_request.project):
            raise _Problem(403, f"this token is not valid for project {gate_request.project!r}")
        key = request.headers.get("Idempotency-Key", "").strip()
        if not key:
            raise _Problem(400, "the Idempotency-Key header is required")
        if len(key) > _MAX_TEXT:
            raise _Problem(400, f"the Idempotency-Key header is longer than {_MAX_TEXT} characters")
        try:
            gate, created = await self.service.open_or_get(
                gate_request, key, body_hash(gate_request), now=self.clock()
            )
        except IdempotencyConflict as e:
            raise _Problem(422, str(e)) from None
        if not token.allows(gate.project):
            # The key names a gate of another project (keys are global): do not show it.
            raise _Problem(403, f"this token is not valid for project {gate.project!r}")
        return _json(gate_json(gate), 201 if created else 200)

    async def get_gate(self, request: web.Request) -> web.Response:
        token = self._token(request)
        gate_id = request.match_info["gate_id"]
        try:
            wait = float(request.query.get("wait", "0"))
        except ValueError:
            raise _Problem(400, "wait must be a number of seconds") from None
        if not 0 <= wait < 1e9:
            raise _Problem(400, "wait must be a number of seconds")
        gate = await self._gate(gate_id, token)
        deadline = time.monotonic() + min(wait, self.max_wait_seconds)
        seen = _progress(gate)
        while (left := deadline - time.monotonic()) > 0:
            fresh = await self.service.wait_for_change(
                gate_id, after_revision=gate.revision, wait_seconds=left, recheck_seconds=self.recheck_seconds
            )
            if fresh is None:
                break
            gate = fresh
            if _progress(gate) != seen:
                break
        return _json(gate_json(gate))

    async def post_event(self, request: web.Request) -> web.Response:
        token = self._token(request)
        gate_id = request.match_info["gate_id"]
        body = await _object(request)
        kind = _text(body, "kind")
        if kind not in EVENT_KINDS:
            raise _Problem(400, f"kind must be one of {', '.join(sorted(EVENT_KINDS))}")
        event_id = _text(body, "event_id")
        message = body.get("message", "")
        if not isinstance(message, str) or len(message) > _MAX_MESSAGE:
            raise _Problem(400, f"message must be text of at most {_MAX_MESSAGE} characters")
        await self._gate(gate_id, token)
        gate, recorded = await self.service.record_event(
            gate_id, event_id, kind, now=self.clock(), detail=message.strip()
        )
        return _json({"gate_id": gate.id, "kind": kind, "event_id": event_id, "recorded": recorded})

    # -- checks --------------------------------------------------------------------------------------

    def _token(self, request: web.Request) -> PipelineToken:
        scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
        found = self.settings.find_token(presented) if scheme.lower() == "bearer" else None
        if found is None:
            raise _Problem(401, "a valid pipeline token is required", {"WWW-Authenticate": "Bearer"})
        return found

    async def _gate(self, gate_id: str, token: PipelineToken) -> Gate:
        gate = await self.service.get(gate_id) if len(gate_id) <= _MAX_TEXT else None
        if gate is None:
            raise _Problem(404, f"no gate {gate_id}")
        if not token.allows(gate.project):
            raise _Problem(403, f"this token is not valid for project {gate.project!r}")
        return gate


async def _object(request: web.Request) -> dict[str, Any]:
    if request.content_type != "application/json":
        raise _Problem(400, "the body must be JSON (Content-Type: application/json)")
    try:
        body = parse_json(await request.read())
    except BadJson as e:
        raise _Problem(400, str(e)) from None
    if not isinstance(body, dict):
        raise _Problem(400, "the body must be a JSON object")
    return body


def _text(body: Mapping[str, Any], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value.strip():
        raise _Problem(400, f"{name} is required (non-empty text)")
    value = value.strip()
    if len(value) > _MAX_TEXT or any(ord(c) < 32 for c in value):
        raise _Problem(400, f"{name} must be one line of at most {_MAX_TEXT} characters")
    return value


def _cr_key(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str) or not _CR_KEY.fullmatch(value.strip()):
        raise _Problem(400, "change_request must be an issue key such as ITSM-123")
    return value.strip().upper()
