"""Webhook intake: decide quickly whether a webhook is worth keeping, then commit it.

A webhook is acknowledged only once it is in the database; rendering and delivery happen in
the background workers, so a crash after the answer loses nothing.

The intake only takes a quick look at the body (`peek_webhook`): malformed JSON is refused and
webhooks that obviously carry nothing to post are answered "ignored"; the full parse happens
once, in the event processor, which counts what it finds unpostable as ignored too.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Literal

from bot.jira.events import unpostable_reason
from bot.jira.instances import resolve_instance
from bot.jira.models import WebhookParseError, peek_webhook
from bot.mattermost.models import DeliveryError, PostSink
from bot.metrics import Metrics
from bot.pipeline.inbox_writer import InboxWriter
from bot.store.interfaces import DeliveryRepository, InboxRepository, NewInboxRow

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
        writer: InboxWriter | None = None,
    ) -> None:
        self._inbox = inbox
        # A store that gains from committing several batches at once says so (PostgreSQL).
        concurrency = getattr(inbox, "write_concurrency", 1)
        if writer is None:
            writer = InboxWriter(inbox, clock=clock, concurrency=concurrency)
        self._writer = writer
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
        # Requests between their arrival and their answer: background workers give way while
        # webhooks are coming in (see `busy`).
        self._in_flight = 0
        self._last_arrival = float("-inf")
        # Resolved label children: `labels()` takes a lock and a lookup on every call.
        self._counters = {o: metrics.webhooks.labels(o.value) for o in Outcome}

    @property
    def writer(self) -> InboxWriter:
        return self._writer

    def busy(self, within: float = 0.005) -> bool:
        """Whether background work should give way to the intake: webhooks are coming in (one is
        in flight, or one arrived in the last `within` seconds: between two rounds of a burst none
        may be) and the backlog is less than half full. Past that, draining it comes first."""
        if self._backlog_value * 2 >= self._max_backlog:
            return False
        return self._in_flight > 0 or time.monotonic() - self._last_arrival < within

    async def _backlog(self) -> int:
        # Counting rows on every webhook would cost more than the insert itself.
        now = time.monotonic()
        if now - self._backlog_checked >= self._backlog_ttl:
            # One count at a time: the webhooks arriving while it runs use the last figure.
            last_checked, self._backlog_checked = self._backlog_checked, now
            try:
                self._backlog_value = await self._stats.backlog()
            except BaseException:
                self._backlog_checked = last_checked  # the next webhook counts again
                raise
            self._metrics.backlog.set(self._backlog_value)
        return self._backlog_value

    def count(self, outcome: str) -> None:
        """Count a webhook refused before it reached the intake (secret, size)."""
        self._metrics.webhooks.labels(outcome).inc()

    def _result(self, outcome: Outcome, reason: str = "", **kw: int | None) -> IntakeResult:
        self._counters[outcome].inc()
        return IntakeResult(outcome, reason, **kw)  # type: ignore[arg-type]

    async def accept(self, req: WebhookRequest) -> IntakeResult:
        self._in_flight += 1
        self._last_arrival = time.monotonic()
        try:
            return await self._accept(req)
        finally:
            self._in_flight -= 1

    async def _accept(self, req: WebhookRequest) -> IntakeResult:
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
            peek = peek_webhook(req.body)
        except WebhookParseError as e:
            return self._result(Outcome.BAD_REQUEST, f"malformed webhook: {e}")

        reason = unpostable_reason(peek)
        if reason is not None:
            log.info("webhook ignored: %s", reason)
            return self._result(Outcome.IGNORED, "nothing to post")

        if peek.issue is not None and not peek.issue.key:
            # Posts, threads and links all name the issue by its key.
            log.info("webhook ignored: issue %s has no key", peek.issue.id)
            return self._result(Outcome.IGNORED, "the issue has no key")
        issue_key = (peek.issue.key or peek.issue.id or "?") if peek.issue else "?"
        configured = self._instances()
        base = peek.base_url.rstrip("/")
        if req.route == "legacy" and req.path_instance and base != req.path_instance and base in configured:
            # The URL names one configured instance and the payload comes from another: posting
            # it (with the other instance's links and buttons) would be wrong either way.
            return self._result(
                Outcome.BAD_REQUEST,
                f"the URL is for instance {req.path_instance} but the webhook comes from {base}",
            )
        instance = resolve_instance(req.path_instance, peek.base_url, configured)
        if instance is None:
            log.info("webhook ignored: %s is from an instance that is not configured", issue_key)
            return self._result(Outcome.IGNORED, "unknown Jira instance")

        if req.route == "legacy":
            try:
                channel_id = await self._legacy_channel(params["team"], params["channel"])
            except DeliveryError as e:
                # Mattermost unreachable: Jira retries a 503, so nothing is lost.
                log.warning("legacy webhook for %s: cannot look up channel: %s", issue_key, e)
                return self._result(Outcome.UNAVAILABLE, "Mattermost unreachable", retry_after=30)
            if channel_id is None:
                return self._result(Outcome.BAD_REQUEST, "unknown team or channel")
            params["channel_id"] = channel_id

        # Webhooks about one issue are processed in the order they were accepted, by whichever
        # replica (bot.store.inbox, claim). By id, as keys change when an issue moves.
        issue_ref = (peek.issue.id or peek.issue.key) if peek.issue else None
        row = NewInboxRow(
            dedupe_key=req.delivery_id,
            route=req.route,
            instance_id=instance,
            params=params,
            body=req.body,
            order_key=f"{instance}|{issue_ref}" if issue_ref else None,
        )
        try:
            inbox_id, created = await self._writer.enqueue(row)
        except Exception as e:
            # Not stored, so not acknowledged: Jira retries a 503.
            log.warning("webhook for %s not stored: %s", issue_key, e)
            return self._result(Outcome.UNAVAILABLE, "cannot store the webhook", retry_after=5)
        if not created:
            log.info("webhook %s for %s already received: not posted again", req.delivery_id, issue_key)
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
