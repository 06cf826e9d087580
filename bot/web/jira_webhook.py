"""HTTP adapter for Jira webhooks, at the Mattermost Jira plugin's URLs.

Authenticate, limit size, build a WebhookRequest, hand it to the intake, answer.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections.abc import Callable, Sequence
from urllib.parse import unquote

from aiohttp import web

from bot.jira.instances import decode_instance_id
from bot.pipeline.intake import Intake, IntakeResult, Outcome, Route, WebhookRequest
from bot.web.responses import RepeatedParameter, json_response, single_query_value

log = logging.getLogger(__name__)

DELIVERY_ID_HEADER = "X-Atlassian-Webhook-Identifier"
SIGNATURE_HEADER = "X-Hub-Signature"


def secret_matches(given: str, accepted: Sequence[bytes]) -> bool:
    """Constant-time check against every accepted secret (current and, during a rotation, the
    previous ones). A secret that arrives URL-escaped once more than needed is accepted too,
    as Jira admins often paste it escaped."""
    candidates = {given, unquote(given)}
    ok = False
    for candidate in candidates:
        c = candidate.encode()
        for secret in accepted:
            # No early exit: every comparison runs, so timing says nothing about which matched.
            ok |= hmac.compare_digest(c, secret)
    return ok


def signature_matches(header: str | None, body: bytes, key: bytes) -> bool:
    if not header or not header.startswith("sha256="):
        return False
    expected = hmac.new(key, body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(header[len("sha256=") :].strip().lower().encode(), expected.encode())


def _json(status: int, body: dict[str, object], headers: dict[str, str] | None = None) -> web.Response:
    return json_response(body, status=status, headers=headers)


_STATUS = {
    Outcome.ACCEPTED: 200,
    Outcome.DUPLICATE: 200,
    Outcome.IGNORED: 200,
    Outcome.BAD_REQUEST: 400,
    Outcome.OVERLOADED: 503,
    Outcome.UNAVAILABLE: 503,
}


_ACCEPTED_BODY = json.dumps({"status": Outcome.ACCEPTED.value}).encode()


def _answer(result: IntakeResult) -> web.Response:
    if result.outcome is Outcome.ACCEPTED and not result.reason:
        # The answer to nearly every webhook: built once.
        return web.Response(status=200, body=_ACCEPTED_BODY, content_type="application/json")
    body: dict[str, object] = {"status": result.outcome.value}
    if result.reason:
        body["reason"] = result.reason
    headers = {"Retry-After": str(result.retry_after)} if result.retry_after else None
    return _json(_STATUS[result.outcome], body, headers)


class JiraWebhookHandler:
    def __init__(
        self,
        intake: Intake,
        *,
        secrets: Sequence[str],
        signing_secret: str | None,
        max_body_bytes: int,
        stopping: Callable[[], bool] = lambda: False,
    ) -> None:
        self._stopping = stopping
        self._intake = intake
        self._secrets = tuple(s.encode() for s in secrets if s)
        self._signing_key = signing_secret.encode() if signing_secret else None
        self._max_body = max_body_bytes

    def _refuse(
        self,
        request: web.Request,
        status: int,
        outcome: str,
        reason: str,
        headers: dict[str, str] | None = None,
    ) -> web.Response:
        """Count, log and answer a webhook refused before the intake."""
        self._intake.count(outcome)
        _log_refusal(request, status, reason)
        return _json(status, {"status": outcome, "reason": reason}, headers)

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/plugins/jira/api/v2/webhook", self.firehose),
            web.post("/plugins/jira/instance/{instance}/api/v2/webhook", self.firehose),
            web.post("/plugins/jira/webhook", self.legacy),
            web.post("/plugins/jira/instance/{instance}/webhook", self.legacy),
        ]

    async def firehose(self, request: web.Request) -> web.Response:
        return await self._handle(request, "firehose")

    async def legacy(self, request: web.Request) -> web.Response:
        return await self._handle(request, "legacy")

    async def _handle(self, request: web.Request, route: Route) -> web.Response:
        if self._stopping():
            # Stopping: Jira retries a 503, and the load balancer sends the retry to another replica.
            self._intake.count("unavailable")
            return _json(
                503, {"status": "unavailable", "reason": "shutting down"}, headers={"Retry-After": "5"}
            )
        try:
            given = single_query_value(request.query, "secret")
        except RepeatedParameter as e:
            return self._refuse(request, 400, "bad_request", str(e))
        if not self._secrets or not secret_matches(given, self._secrets):
            return self._refuse(request, 403, "forbidden", "missing or wrong secret")

        length = request.content_length
        if length is not None and length > self._max_body:
            return self._refuse(request, 413, "too_large", f"body over {self._max_body} bytes")
        if length is not None:
            # Announced and within the limit: read at once (aiohttp stops at the announced length).
            body = await request.read()
        else:
            chunks = bytearray()
            async for chunk in request.content.iter_chunked(65536):
                chunks += chunk
                if len(chunks) > self._max_body:
                    return self._refuse(request, 413, "too_large", f"body over {self._max_body} bytes")
            body = bytes(chunks)

        if self._signing_key is not None and not signature_matches(
            request.headers.get(SIGNATURE_HEADER), body, self._signing_key
        ):
            return self._refuse(request, 403, "forbidden", "missing or wrong signature")

        path_instance = None
        encoded = request.match_info.get("instance")
        if encoded is not None:
            path_instance = decode_instance_id(encoded)
            if path_instance is None:
                return self._refuse(request, 400, "bad_request", "instance id is not valid")

        params = {k: v for k, v in request.query.items() if k != "secret"}
        result = await self._intake.accept(
            WebhookRequest(
                route=route,
                body=body,
                params=params,
                path_instance=path_instance,
                delivery_id=request.headers.get(DELIVERY_ID_HEADER) or None,
            )
        )
        answer = _answer(result)
        if answer.status >= 400:
            _log_refusal(request, answer.status, result.reason)
        return answer


def _log_refusal(request: web.Request, status: int, reason: str) -> None:
    # The path only: the query holds the secret.
    log.warning("webhook refused with %d (%s) from %s on %s", status, reason, request.remote, request.path)
