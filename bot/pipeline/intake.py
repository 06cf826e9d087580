"""Webhook intake: decide quickly whether a webhook is worth keeping, then commit it.

A webhook is acknowledged only once it is in the database; rendering and delivery happen in
the background workers, so a crash after the answer loses nothing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Literal

from bot.jira.events import normalise
from bot.jira.instances import resolve_instance
from bot.jira.models import WebhookParseError, parse_webhook
from bot.mattermost.models import DeliveryError, PostSink
from bot.metrics import Metrics
from bot.store.interfaces import DeliveryRepository, InboxRepository

log = logging.getLogger(__name__)

Route = Literal["firehose", "legacy"]


class Outcome(StrEnum):
    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    IGNORED = "ignored"
    BAD_REQUEST = "bad_request"
    OVERLOADED = "overloaded"
    UNAVAILABLE = "unavailable"


@dataclass(frozen=True, slots=True)
class WebhookRequest:
    route: Route
    body: bytes
    params: Mapping[str, str] = field(default_factory=dict)  # legacy: team, channel, updated_*
    path_instance: str | None = None  # decoded from /plugins/jira/instance/{id}/...
    delivery_id: str | None = None  # X-Atlassian-Webhook-Identifier


@dataclass(frozen=True, slots=True)
class IntakeResult:
    outcome: Outcome
    reason: str = ""
    retry_after: int | None = None
    inbox_id: int | None = None


class Intake:
    def __init__(
        self,
        *,
        inbox: InboxRepository,
        stats: DeliveryRepository,
        sink: PostSink,
        metrics: Metrics,
        clock: Callable[[], datetime],
        instances: Callable[[], Sequence[str]],
        max_backlog: int,
        on_accepted: Callable[[], None] = lambda: None,
        backlog_cache_seconds: float = 1.0,
    ) -> None:
        self._inbox = inbox
        self._stats = stats
        self._sink = sink
        self._metrics = metrics
        self._clock = clock
        self._instances = instances
        self._max_backlog = max_backlog
        self._on_accepted = on_accepted
        self._backlog_ttl = backlog_cache_seconds
        self._backlog_value = 0
        self._backlog_checked = float("-inf")

    async def _backlog(self) -> int:
        # Counting rows on every webhook would cost more than the insert itself.
        now = time.monotonic()
        if now - self._backlog_checked >= self._backlog_ttl:
            self._backlog_value = await self._stats.backlog()
            self._backlog_checked = now
            self._metrics.backlog.set(self._backlog_value)
        return self._backlog_value

    def count(self, outcome: str) -> None:
        """Count a webhook refused before it reached the intake (secret, size)."""
        self._metrics.webhooks.labels(outcome).inc()

    def _result(self, outcome: Outcome, reason: str = "", **kw: int | None) -> IntakeResult:
        self._metrics.webhooks.labels(outcome.value).inc()
        return IntakeResult(outcome, reason, **kw)  # type: ignore[arg-type]

    async def accept(self, req: WebhookRequest) -> IntakeResult:
        if await self._backlog() >= self._max_backlog:
            return self._result(Outcome.OVERLOADED, "backlog full", retry_after=30)

        params: dict[str, str] = {}
        if req.route == "legacy":
            team, channel = req.params.get("team", ""), req.params.get("channel", "")
            if not team or not channel:
                return self._result(Outcome.BAD_REQUEST, "team and channel parameters are required")
            params = {k: v for k, v in req.params.items() if k.startswith("updated_")}
            params["team"], params["channel"] = team, channel

        try:
            payload = parse_webhook(req.body)
        except WebhookParseError as e:
            return self._result(Outcome.BAD_REQUEST, f"malformed webhook: {e}")

        event = normalise(payload)
        if event is None:
            log.info("webhook ignored: %s carries nothing to post", payload.webhook_event or "unknown event")
            return self._result(Outcome.IGNORED, "nothing to post")

        instance = resolve_instance(req.path_instance, event.issue.base_url, self._instances())
        if instance is None:
            log.info("webhook ignored: %s is from an instance that is not configured", event.issue.key)
            return self._result(Outcome.IGNORED, "unknown Jira instance")

        if req.route == "legacy":
            try:
                channel_id = await self._legacy_channel(params["team"], params["channel"])
            except DeliveryError as e:
                # Mattermost unreachable: Jira retries a 503, so nothing is lost.
                log.warning("legacy webhook for %s: cannot look up channel: %s", event.issue.key, e)
                return self._result(Outcome.UNAVAILABLE, "Mattermost unreachable", retry_after=30)
            if channel_id is None:
                return self._result(Outcome.BAD_REQUEST, "unknown team or channel")
            params["channel_id"] = channel_id

        inbox_id, created = await self._inbox.enqueue(
            dedupe_key=req.delivery_id,
            route=req.route,
            instance_id=instance,
            params=params,
            body=req.body,
            now=self._clock(),
        )
        if not created:
            log.info("webhook %s for %s already received: not posted again", req.delivery_id, event.issue.key)
            return self._result(Outcome.DUPLICATE, "already received", inbox_id=inbox_id)
        self._backlog_value += 1
        self._on_accepted()
        return self._result(Outcome.ACCEPTED, inbox_id=inbox_id)

    async def _legacy_channel(self, team: str, channel: str) -> str | None:
        channel_id = await self._sink.resolve_channel(team, channel)
        # The plugin takes channel names; a channel id is accepted too.
        if (
            channel_id is None
            and len(channel) == 26
            and channel.isalnum()
            and await self._sink.channel_exists(channel)
        ):
            return channel
        return channel_id
