"""Turn stored webhooks into deliveries: normalise, route to channels, render.

The per-item work (`plan_deliveries`) does no I/O; the worker loop claims inbox rows, plans
and commits the deliveries in the same transaction that marks the row done.

No webhook can hold the pipeline: each claim counts an attempt (so a process killed or frozen
on a row has used one), processing one row has a time budget, and a row that has used
`max_attempts` is closed as failed with the reason, to be listed by `jira-chatops dead-letters`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from bot.backoff import retry_delay
from bot.config import ChannelPostSettings
from bot.jira.events import COMMENT_KINDS, EVENT_DELETED, STANDARD_KINDS, IssueEvent, event_summary, normalise
from bot.jira.models import WebhookParseError, parse_webhook
from bot.metrics import Metrics
from bot.pipeline.issue_fetch import NO_CREDENTIALS, IssueDropped, JiraUnavailable, payload_names
from bot.pipeline.issue_memory import IssueMemory
from bot.pipeline.loop import give_way, work_loop
from bot.pipeline.subscriptions import SubscriptionCache
from bot.render.markup import mentioned_jira_users, name_mentions
from bot.render.posts import MentionLookup, RenderOptions, no_mentions, render_once
from bot.routing.legacy import LegacyOptions, legacy_matches
from bot.routing.matcher import SubscriptionIndex
from bot.store.interfaces import InboxCompletion, InboxItem, InboxRepository, NewDelivery

log = logging.getLogger(__name__)

# (props of a channel post, instance id, event) -> the props to post, e.g. with buttons added.
PostDecorator = Callable[[Mapping[str, Any], str, IssueEvent], dict[str, Any]]

CHANNEL_POST = "channel_post"


class Notifier(Protocol):
    """Plans the personal direct messages an event causes (bot.notify.planner); the composition
    root plugs it in, so the pipeline does not depend on the account machinery behind it."""

    async def plan(self, event: IssueEvent, instance_id: str) -> list[NewDelivery]: ...


class IssueReader(Protocol):
    """Reads from Jira what webhooks leave out (bot.pipeline.issue_fetch.IssueFetcher)."""

    async def complete(self, event: IssueEvent, instance_id: str) -> IssueEvent: ...

    async def display_names(self, instance_id: str, jira_ids: list[str]) -> dict[str, str]: ...


class JqlAnswers(Protocol):
    """Asks Jira the JQL only it can answer (bot.pipeline.jql_check.JqlChecker)."""

    async def answers(self, questions: list[str], event: IssueEvent, instance_id: str) -> dict[str, bool]: ...


DROPPED = "dropped: "


@dataclass(frozen=True, slots=True)
class Plan:
    outcome: str  # routed, unrouted, ignored, "dropped: <reason>" or "failed: <error>"
    deliveries: tuple[NewDelivery, ...]
    event: IssueEvent | None = None


def _thread_role(event: IssueEvent, settings: ChannelPostSettings) -> str:
    """How a channel post takes part in the issue's thread in that channel, when threading is
    on: 'thread' for comments (a reply to the issue's first post there, or that first post when
    there is none yet), 'root' for other events (at the top level, and the first post when there
    is none yet). bot.pipeline.delivery decides when it posts, so whatever the kind of the first
    post, a channel of comments only gets threads too."""
    if settings.thread_comments_days <= 0:
        return ""
    return "thread" if event.kinds & COMMENT_KINDS else "root"


def instance_of(item: InboxItem, event: IssueEvent) -> str:
    return item.instance_id or event.issue.base_url


def decode(item: InboxItem) -> IssueEvent | None:
    """The event a stored webhook carries, or None when there is nothing to post."""
    try:
        return normalise(parse_webhook(item.body))
    except WebhookParseError:
        return None


def plan_deliveries(
    item: InboxItem,
    event: IssueEvent | None,
    index: SubscriptionIndex,
    settings: ChannelPostSettings,
    new_id: Callable[[], str] = lambda: uuid.uuid4().hex,
    mentions: MentionLookup = no_mentions,
    jira: Mapping[str, bool] | None = None,
) -> Plan:
    """What to post, where, for one stored webhook. Pure apart from `new_id`; `mentions` maps
    Jira users to the Mattermost usernames of those who connected; `jira` holds Jira's answers
    to the index's `jira_questions`."""
    if event is None:
        return Plan("ignored", ())

    instance_id = instance_of(item, event)
    targets: list[tuple[str, str | None]] = []  # (channel id, subscription name)
    if item.route == "legacy":
        channel_id = item.params.get("channel_id", "")
        if channel_id and legacy_matches(LegacyOptions.from_query(item.params), event):
            targets.append((channel_id, None))
    else:
        targets.extend(index.match_targets(event, instance_id, jira=jira))
    if not targets:
        return Plan("unrouted", (), event)

    options = RenderOptions(hide_description=settings.hide_description, hide_comments=settings.hide_comments)
    rendering = render_once(event, options, mentions)
    if rendering is None:
        return Plan("unrouted", (), event)
    role = _thread_role(event, settings)
    deliveries = []
    for channel_id, sub_name in targets:
        post = rendering.post(sub_name if settings.show_subscription_name else None)
        deliveries.append(
            NewDelivery(
                channel_id=channel_id,
                # Posts about one issue in one channel keep the order Jira sent them in.
                order_key=f"{channel_id}|{instance_id}|{event.issue.key}",
                kind=CHANNEL_POST,
                payload={
                    "message": post.message,
                    "props": dict(post.props),
                    "instance_id": instance_id,
                    "issue_key": event.issue.key,
                    "thread": role,
                },
                pending_post_id=new_id(),
            )
        )
    return Plan("routed" if deliveries else "unrouted", tuple(deliveries), event)


def _failed(reason: str) -> str:
    reason = reason if reason.startswith("failed: ") else f"failed: {reason}"
    return reason[:500]


def _status(plan: Plan) -> str:
    if plan.outcome.startswith("failed"):
        return "failed"
    return "done" if plan.deliveries else "ignored"


class EventProcessor:
    def __init__(
        self,
        *,
        inbox: InboxRepository,
        subscriptions: SubscriptionCache,
        memory: IssueMemory,
        settings: ChannelPostSettings,
        metrics: Metrics,
        clock: Callable[[], datetime],
        owner: str,
        lease_seconds: float,
        on_planned: Callable[[], None] = lambda: None,
        batch_size: int = 64,
        busy: Callable[[], bool] = lambda: False,
        max_attempts: int = 12,
        processing_timeout: float = 20.0,
        backoff_base: float = 1.0,
        backoff_max: float = 300.0,
    ) -> None:
        self._inbox = inbox
        self._subs = subscriptions
        self._memory = memory
        self._settings = settings
        self._metrics = metrics
        self._clock = clock
        self._owner = owner
        self._lease = lease_seconds
        self._on_planned = on_planned
        self._batch = batch_size
        self._busy = busy
        self._max_attempts = max_attempts
        # An item must be closed while its lease holds, or another replica may take it over.
        self._timeout = min(processing_timeout, lease_seconds * 0.8)
        self._backoff_base = backoff_base
        self._backoff_max = backoff_max
        # Set by the composition root when slash commands are available: buttons on channel
        # posts, and personal direct messages.
        self.decorate_post: PostDecorator | None = None
        self.notifier: Notifier | None = None
        # (instance id, Jira user ids) -> {Jira user id: Mattermost username} of connected users.
        self.mention_resolver: Callable[[str, list[str]], Awaitable[dict[str, str]]] | None = None
        # Completes Cloud's thin comment events and names mentioned users; without it, a thin
        # event is routed only when its issue's security level is remembered.
        self.issues: IssueReader | None = None
        # Answers subscriptions' JQL that only Jira can (`jql_check: jira`); without it, such
        # JQL matches only when its local clauses settle it.
        self.jql_checks: JqlAnswers | None = None
        self._ignored = metrics.webhooks.labels("ignored")
        for kind in sorted(STANDARD_KINDS):  # every series from the start, at 0
            metrics.events.labels(kind)
        self._failed_count = metrics.webhooks.labels("failed")

    async def run_once(self) -> int:
        """Process one batch of stored webhooks; returns how many were claimed.

        The batch is closed in one transaction: its deliveries are committed with it, or (when
        the lease was lost meanwhile) not at all.
        """
        await give_way(self._busy)
        items = await self._inbox.claim(
            limit=self._batch, owner=self._owner, now=self._clock(), lease_seconds=self._lease
        )
        if not items:
            return 0
        index = await self._subs.index()
        loop = asyncio.get_running_loop()
        # Items not started by then are given back, so that a slow one (up to the time budget)
        # does not make the rest of the batch outlive its lease.
        start_by = loop.time() + self._lease / 2
        closing: list[tuple[InboxItem, Plan]] = []
        for n, item in enumerate(items):
            if n:
                # Let the intake and health checks in between items: rendering is CPU work.
                await asyncio.sleep(0)
                if loop.time() > start_by:
                    rest = [i.id for i in items[n:]]
                    try:
                        await self._inbox.give_back(rest, owner=self._owner)
                        log.info("batch ran long; %d inbox item(s) given back untouched", len(rest))
                    except Exception:
                        # Still leased: claimed again (one attempt spent) when the lease runs out.
                        log.warning("could not give back %d inbox item(s)", len(rest), exc_info=True)
                    items = items[:n]
                    break
            if item.attempts > self._max_attempts:
                # Every attempt so far ended without closing the row: the process died, froze or
                # lost its lease on it. Trying once more could do the same again.
                reason = f"not finished in {self._max_attempts} attempts; " + (
                    f"last error: {item.outcome.removeprefix('failed: ')}"
                    if item.outcome
                    else "the process stopped or lost its lease while processing it"
                )
                log.error("inbox item %d kept as failed: %s", item.id, reason)
                closing.append((item, Plan(_failed(reason), ())))
                continue
            try:
                async with asyncio.timeout(self._timeout):
                    closing.append((item, await self._plan(item, index)))
            except JiraUnavailable as e:
                # Jira is busy or down: the event waits, with backoff as deliveries do. Each
                # wait is an attempt, so a Jira down for longer than the attempts last (about
                # 25 minutes by default) leaves the webhook failed, to be replayed with
                # `jira-chatops dead-letters --replay-webhooks`.
                reason = f"Jira unavailable: {e}"
                if item.attempts < self._max_attempts:
                    delay = retry_delay(
                        max(item.attempts - 1, 0),
                        base=self._backoff_base,
                        cap=self._backoff_max,
                        retry_after=e.retry_after,
                    )
                    log.info(
                        "inbox item %d waits %.1f s for Jira (attempt %d of %d): %s",
                        item.id,
                        delay,
                        item.attempts,
                        self._max_attempts,
                        e,
                    )
                    await self._retry_later(item, reason, delay=delay)
                    continue
                log.error("inbox item %d: Jira unavailable %d times; kept as failed", item.id, item.attempts)
                closing.append((item, Plan(_failed(reason), ())))
            except Exception as e:  # one webhook must not hold back the rest of the batch
                reason = (
                    f"processing took longer than {self._timeout:g} s"
                    if isinstance(e, TimeoutError)
                    else f"{type(e).__name__}: {e}"
                )
                if item.attempts < self._max_attempts:
                    log.warning(
                        "inbox item %d could not be processed (attempt %d of %d); will retry: %s",
                        item.id,
                        item.attempts,
                        self._max_attempts,
                        reason,
                        exc_info=not isinstance(e, TimeoutError),
                    )
                    await self._retry_later(item, reason)
                    continue
                log.error(
                    "inbox item %d failed %d times; kept as failed: %s",
                    item.id,
                    item.attempts,
                    reason,
                    exc_info=not isinstance(e, TimeoutError),
                )
                closing.append((item, Plan(_failed(reason), ())))
        # Before the batch is closed: once closed, its events are not seen again.
        await self._memory.save()
        completed = await self._inbox.complete_many(
            [
                InboxCompletion(
                    item_id=item.id,
                    outcome=plan.outcome,
                    status=_status(plan),
                    deliveries=plan.deliveries,
                )
                for item, plan in closing
            ],
            owner=self._owner,
            now=self._clock(),
        )
        planned = 0
        for (item, plan), done in zip(closing, completed, strict=True):
            if not done:
                log.warning("inbox item %d: lease lost before it was closed; another worker has it", item.id)
                continue
            if plan.outcome.startswith("failed"):
                self._failed_count.inc()
                continue
            if plan.outcome.startswith(DROPPED):
                self._metrics.events_dropped.labels(plan.outcome.removeprefix(DROPPED)).inc()
                continue
            if plan.event is None:
                # Stored by the intake, found unpostable by the full parse: counted as the intake
                # counts the webhooks it can tell are unpostable at a glance.
                self._ignored.inc()
                log.info("webhook %s: ignored, nothing to post", item.dedupe_key or f"#{item.id}")
                continue
            for kind in plan.event.kinds:
                self._metrics.events.labels(kind).inc()
            log.info(
                "%s: %s, %d post(s) queued",
                event_summary(plan.event),
                plan.outcome,
                len(plan.deliveries),
            )
            planned += len(plan.deliveries)
        if planned:
            self._on_planned()
        return len(items)

    async def _retry_later(self, item: InboxItem, reason: str, *, delay: float | None = None) -> None:
        """Give the row back with the reason, claimable again after `delay` seconds, by default
        once a lease would have run out (a database hiccup passes meanwhile)."""
        now = self._clock()
        retry_at = now + timedelta(seconds=self._lease if delay is None else delay)
        try:
            await self._inbox.release(
                item.id, owner=self._owner, error=_failed(reason), now=now, retry_at=retry_at
            )
        except Exception:
            # Still leased, so claimed again when the lease runs out; only the reason is lost.
            log.warning("inbox item %d: could not record the failure", item.id, exc_info=True)

    async def _complete(self, item: InboxItem, event: IssueEvent) -> IssueEvent | Plan:
        """A thin event (Cloud's comment events) read whole from Jira; the issue's remembered
        security level only when no credential may read it. A Plan when the event is dropped."""
        instance = instance_of(item, event)
        if event.issue.fields_partial and item.route == "firehose" and self.issues is not None:
            try:
                event = await self.issues.complete(event, instance)
            except IssueDropped as e:
                if e.reason != NO_CREDENTIALS:
                    log.info("%s: not posted: the issue cannot be read (%s)", event_summary(event), e)
                    return Plan(DROPPED + e.reason, (), event)
        # Remembers the level of complete events, fills it into thin ones it has seen before.
        event = await self._memory.complete(event, instance, self._clock())
        if event.issue.fields_partial and item.route == "firehose":
            # Routing fails closed on it (no channel post); personal DMs still check each
            # recipient's own access.
            log.info(
                "%s: not posted to channels: the issue's security level is unknown (no credential "
                "to read the issue, and no complete webhook for it seen yet)",
                event_summary(event),
            )
        return event

    async def _mentions(self, item: InboxItem, event: IssueEvent) -> tuple[IssueEvent, MentionLookup]:
        """Mentioned Jira users: connected ones as @username; others named by the payload, else
        by a (cached) lookup, else left to the name in the text."""
        comment_body = event.comment.body if event.comment else ""
        text = " ".join(t for t in (comment_body, event.issue.description) if t)
        mentioned = mentioned_jira_users(text)
        if not mentioned:
            return event, no_mentions
        instance = instance_of(item, event)
        usernames: dict[str, str] = {}
        if self.mention_resolver is not None:
            try:
                usernames = await self.mention_resolver(instance, mentioned)
            except Exception:  # mentions are a nicety; the post goes out with names instead
                log.warning("%s: connected users not looked up", event_summary(event), exc_info=True)
        known = payload_names(event)
        unnamed = [u for u in mentioned if u not in usernames and u not in known]
        if unnamed and self.issues is not None:
            names = await self.issues.display_names(instance, unnamed)
            if names:
                comment = event.comment
                if comment is not None:
                    comment = dataclasses.replace(comment, body=name_mentions(comment.body, names))
                issue = dataclasses.replace(
                    event.issue, description=name_mentions(event.issue.description, names)
                )
                event = dataclasses.replace(event, issue=issue, comment=comment)
        return event, usernames.get

    async def _plan(self, item: InboxItem, index: SubscriptionIndex) -> Plan:
        event = decode(item)
        if event is not None:
            completed = await self._complete(item, event)
            if isinstance(completed, Plan):
                return completed
            event = completed
        mentions: MentionLookup = no_mentions
        if event is not None:
            event, mentions = await self._mentions(item, event)
        jira: dict[str, bool] | None = None
        if event is not None and item.route == "firehose" and self.jql_checks is not None:
            questions = index.jira_questions(event, instance_of(item, event))
            if questions:  # raises JiraUnavailable when Jira is busy: the event waits
                jira = await self.jql_checks.answers(questions, event, instance_of(item, event))
        plan = plan_deliveries(item, event, index, self._settings, mentions=mentions, jira=jira)
        if event is None or item.route != "firehose":
            return plan
        deliveries = plan.deliveries
        instance = instance_of(item, event)
        if self.decorate_post is not None and EVENT_DELETED not in event.kinds:
            decorate = self.decorate_post
            deliveries = tuple(
                dataclasses.replace(
                    d, payload={**d.payload, "props": decorate(d.payload.get("props") or {}, instance, event)}
                )
                if d.kind == CHANNEL_POST
                else d
                for d in deliveries
            )
        if self.notifier is not None:
            deliveries += tuple(await self.notifier.plan(event, instance))
        if deliveries is plan.deliveries:
            return plan
        return Plan("routed" if deliveries else plan.outcome, deliveries, event)

    async def run(self, wake: asyncio.Event, poll_interval: float, stop: asyncio.Event | None = None) -> None:
        async def idle_wait() -> float:
            return poll_interval

        await work_loop("event processing", self.run_once, wake, idle_wait, stop)
