"""Deliver queued posts to Mattermost: retries with backoff, 429 honoured, order per issue kept,
dead letters after the last attempt.

Each delivery carries a stable pending_post_id: a post sent again after a timeout or a crash
is recognised by Mattermost instead of appearing twice.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any, Protocol

from bot.backoff import retry_delay
from bot.breaker import BreakerState
from bot.breakers import Breaker
from bot.config import ChannelPostSettings, DeliverySettings
from bot.mattermost.models import DeliveryError, OutgoingPost, PostSink
from bot.metrics import Metrics
from bot.pipeline.loop import give_way, work_loop
from bot.store.interfaces import (
    CHANNEL_ANNOUNCEMENT,
    CHANNEL_POST,
    DIRECT_MESSAGE,
    Delivery,
    DeliveryRepository,
    NewThreadRoot,
    ThreadRepository,
)

log = logging.getLogger(__name__)

# Kinds this worker posts to a channel itself; DIRECT_MESSAGE and the rest go to their senders.
CHANNEL_KINDS = (CHANNEL_POST, CHANNEL_ANNOUNCEMENT)
# A channel post's thread role (bot.pipeline.processor): "thread" replies to the issue's thread
# root in the channel, "root" stays at the top level; either becomes the root when there is none.
THREAD = "thread"
# Recorded as the post id of a DM that was not sent (its recipient may not see the issue).
NOT_SENT = "-"


def _root_gone(error: DeliveryError) -> bool:
    """Whether Mattermost refused a reply because its root post is gone: 400
    api.post.create_post.root_id.app_error for a deleted (or unknown) root, 404 on some paths."""
    return (error.status == 400 and "root_id" in str(error)) or error.status == 404


# Carries out one delivery of a kind (see `DeliveryWorker.senders`): returns what to record as
# its result (a post or comment id) or raises DeliveryError, retryable or not.
Sender = Callable[[Delivery], Awaitable[str]]


class DirectMessages(Protocol):
    async def send(self, payload: Mapping[str, Any], *, pending_post_id: str = "") -> str: ...


class DeliveryWorker:
    def __init__(
        self,
        *,
        deliveries: DeliveryRepository,
        threads: ThreadRepository,
        sink: PostSink,
        settings: DeliverySettings,
        posts: ChannelPostSettings,
        metrics: Metrics,
        clock: Callable[[], datetime],
        owner: str,
        busy: Callable[[], bool] = lambda: False,
    ) -> None:
        self._store = deliveries
        self._threads = threads
        self._sink = sink
        self._settings = settings
        self._posts = posts
        self._metrics = metrics
        self._clock = clock
        self._owner = owner
        self._slots = asyncio.Semaphore(settings.workers)
        self._busy = busy
        self._delivered = metrics.posts.labels("delivered")
        # Set by the composition root when direct messages can be sent (slash commands set up).
        self.direct_messages: DirectMessages | None = None
        # The process's circuit breaker for Mattermost (bot.breakers), set by the composition
        # root: consulted before claiming, so a Mattermost outage is waited out, not retried.
        self.breaker: Breaker | None = None
        # The breaker of the target a delivery goes to, by kind, for the kinds not sent to
        # Mattermost (a CR comment: its Jira site's), registered with their senders; the outage
        # rule of `_failed` follows that target's breaker, not Mattermost's.
        self.target_breakers: dict[str, Callable[[Delivery], Breaker | None]] = {}
        # Senders of the other kinds, by kind, registered by the composition root.
        self.senders: dict[str, Sender] = {}
        # Deliveries posted at the top level in a thread role, whose post is to become the root.
        self._posted_as_root: set[int] = set()

    async def run_once(self) -> int:
        """Claim the deliveries that are due and send them; returns how many were claimed.

        The posts made are recorded together, in one transaction (and their thread roots in
        one more) instead of one or two per post.
        """
        await give_way(self._busy)
        limit = self._settings.workers * 4
        kinds: tuple[str, ...] | None = None
        if self.breaker is not None:
            if await self.breaker.ready() > 0:
                # Mattermost is down (here or, through the store, at another replica): claim
                # nothing for it until the breaker lets a probe go, so the outage burns no
                # attempts. What goes elsewhere (CR comments to Jira) goes on, under its own
                # target's breaker.
                kinds = tuple(self.target_breakers)
                if not kinds:
                    return 0
            elif self.breaker.probing:
                limit = 1  # half-open: one post finds out whether Mattermost is back
        batch = await self._store.claim_due(
            limit=limit,
            owner=self._owner,
            now=self._clock(),
            lease_seconds=self._settings.lease_seconds,
            kinds=kinds,
        )
        if batch:
            posted = await asyncio.gather(*(self._send_guarded(d) for d in batch))
            await self._record(
                [(d, post_id) for d, post_id in zip(batch, posted, strict=True) if post_id is not None]
            )
        return len(batch)

    async def _send_guarded(self, delivery: Delivery) -> str | None:
        async with self._slots:
            try:
                return await self._send(delivery)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # a bug must not stop the queue; the lease lets it retry
                log.exception("delivery %s failed unexpectedly", delivery.id)
                await self._failed(delivery, DeliveryError(f"internal error: {e}", retryable=True))
                return None

    async def deliver(self, d: Delivery) -> None:
        """Send one delivery and record the outcome."""
        post_id = await self._send(d)
        if post_id is not None:
            await self._record([(d, post_id)])

    async def _send(self, d: Delivery) -> str | None:
        """Make the post; the Mattermost post id, or None when it failed (and was rescheduled or
        dead-lettered)."""
        payload = d.payload
        if d.kind == DIRECT_MESSAGE:
            return await self._send_direct(d)
        if d.kind not in CHANNEL_KINDS:
            return await self._send_by_sender(d)
        issue_key = str(payload.get("issue_key", ""))
        instance_id = str(payload.get("instance_id", ""))
        thread = payload.get("thread", "")
        root_id = ""
        if thread in (THREAD, "reply"):  # "reply": queued by an older version, a comment too
            root_id = (
                await self._threads.get_root(instance_id, d.channel_id, issue_key, now=self._clock()) or ""
            )
        post = OutgoingPost(
            channel_id=d.channel_id,
            message=str(payload.get("message", "")),
            props=payload.get("props") or {},
            root_id=root_id,
            pending_post_id=d.pending_post_id,
        )
        try:
            post_id = await self._sink.create_post(post)
        except DeliveryError as e:
            if not (root_id and _root_gone(e)):
                await self._failed(d, e)
                return None
            # The thread's first post was deleted: this post starts a new thread.
            log.info(
                "%s: thread root %s in %s is gone; starting a new thread", issue_key, root_id, d.channel_id
            )
            await self._threads.forget_root(instance_id, d.channel_id, issue_key, root_post_id=root_id)
            try:
                post_id = await self._sink.create_post(replace(post, root_id=""))
            except DeliveryError as again:
                await self._failed(d, again)
                return None
            root_id = ""
        if thread and not root_id:
            self._posted_as_root.add(d.id)
        return post_id

    async def _send_by_sender(self, d: Delivery) -> str | None:
        sender = self.senders.get(d.kind)
        try:
            if sender is None:
                # Queued by a replica configured for it (the change gate, say); this one is not.
                raise DeliveryError(f"no sender for deliveries of kind {d.kind!r} here", retryable=True)
            return await sender(d) or NOT_SENT
        except DeliveryError as e:
            await self._failed(d, e)
            return None

    async def _send_direct(self, d: Delivery) -> str | None:
        if self.direct_messages is None:
            return NOT_SENT  # DMs were queued by a replica that can send them; this one cannot
        try:
            return await self.direct_messages.send(d.payload, pending_post_id=d.pending_post_id) or NOT_SENT
        except DeliveryError as e:
            await self._failed(d, e)
            return None

    async def _record(self, posted: list[tuple[Delivery, str]]) -> None:
        """Mark posts made as delivered and remember the thread roots among them.

        Should this fail (or the process die first), the leases run out and the posts are sent
        again with their pending_post_id, which Mattermost recognises: nothing is posted twice.
        """
        if not posted:
            return
        now = self._clock()
        # Roots first: once a post is marked delivered, the issue's next post may be claimed
        # (here or by another replica) and must find the thread. Of concurrent first posts the
        # first root recorded stays (an insert-if-absent); the others stay at the top level.
        expires = now + timedelta(days=self._posts.thread_comments_days)
        roots = [
            NewThreadRoot(
                instance_id=str(d.payload.get("instance_id", "")),
                channel_id=d.channel_id,
                issue_key=str(d.payload.get("issue_key", "")),
                root_post_id=post_id,
                expires_at=expires,
            )
            for d, post_id in posted
            if d.id in self._posted_as_root
        ]
        self._posted_as_root.difference_update(d.id for d, _ in posted)
        await self._threads.set_roots_if_absent(roots, now=now)
        marked = await self._store.mark_delivered_many(
            [(d.id, post_id) for d, post_id in posted], owner=self._owner, now=now
        )
        for (d, post_id), ok in zip(posted, marked, strict=True):
            if not ok:
                log.warning("delivery %s: lease lost before it was recorded; another worker has it", d.id)
                continue
            self._delivered.inc()
            self._metrics.deliveries.labels(d.kind, "delivered").inc()
            self._metrics.delivery_latency.observe(
                max(0.0, (now - (d.received_at or d.created_at)).total_seconds())
            )
            log.info(
                "%s: posted to channel %s (post %s)", d.payload.get("issue_key", ""), d.channel_id, post_id
            )

    async def _failed(self, d: Delivery, error: DeliveryError) -> None:
        now = self._clock()
        attempts = d.attempts + 1
        issue_key = d.payload.get("issue_key", "")
        breaker = self._breaker_of(d)
        if error.retryable and breaker is not None and breaker.state is not BreakerState.CLOSED:
            # An outage (the failure opened the breaker, or came from it being open), not this
            # delivery's fault: no attempt counted, so never a dead letter however long it lasts;
            # due again when the breaker lets the next probe go (Retry-After as a floor). Its
            # successors wait behind it.
            wait = max(breaker.delay(), error.retry_after or 0.0)
            await self._store.reschedule(
                d.id,
                owner=self._owner,
                error=str(error),
                next_attempt_at=now + timedelta(seconds=wait),
                now=now,
                counted=False,
            )
            self._metrics.posts.labels("retried").inc()
            self._metrics.deliveries.labels(d.kind, "retried").inc()
            log.warning("%s: delivery %s waits for %s (%s)", issue_key, d.id, breaker.target, error)
            return
        if not error.retryable or attempts >= self._settings.max_attempts:
            await self._store.dead_letter(d.id, owner=self._owner, error=str(error), now=now)
            self._metrics.posts.labels("dead").inc()
            self._metrics.deliveries.labels(d.kind, "dead").inc()
            log.error(
                "%s: post to channel %s failed for good after %d attempt(s): %s",
                issue_key,
                d.channel_id,
                attempts,
                error,
            )
            return
        delay = retry_delay(
            d.attempts,
            base=self._settings.backoff_base_seconds,
            cap=self._settings.backoff_max_seconds,
            retry_after=error.retry_after,
        )
        await self._store.reschedule(
            d.id, owner=self._owner, error=str(error), next_attempt_at=now + timedelta(seconds=delay), now=now
        )
        self._metrics.posts.labels("retried").inc()
        self._metrics.deliveries.labels(d.kind, "retried").inc()
        log.warning(
            "%s: post to channel %s failed (%s); retry in %.1fs", issue_key, d.channel_id, error, delay
        )

    def _breaker_of(self, d: Delivery) -> Breaker | None:
        """The circuit breaker of the target `d` goes to: its kind's, else Mattermost's."""
        target = self.target_breakers.get(d.kind)
        return target(d) if target is not None else self.breaker

    async def _idle_wait(self) -> float:
        """Until the next retry falls due, but at most the poll interval (other replicas may
        queue work without waking this one)."""
        poll = self._settings.poll_interval_seconds
        if self.breaker is not None and (closed_for := self.breaker.delay()) > 0:
            return min(poll, closed_for)
        try:
            due = await self._store.next_due_at()
        except Exception:
            return poll
        if due is None:
            return poll
        return min(poll, max(0.01, (due - self._clock()).total_seconds()))

    async def run(self, wake: asyncio.Event, stop: asyncio.Event | None = None) -> None:
        await work_loop("delivery", self.run_once, wake, self._idle_wait, stop)
