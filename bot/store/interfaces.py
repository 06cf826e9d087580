"""What the rest of the bot may ask of storage: row types and repository protocols.

The SQL implementation is `bot.store.db.Database`, with one module per repository (`bot.store.inbox`,
`.deliveries`, `.subscriptions`, `.threads`, `.kv`); tests and other backends can substitute any
object satisfying these protocols. Every method that depends on time takes `now` (a UTC-aware
datetime) instead of reading the clock, so callers and tests decide what time it is.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

from bot.routing.model import Subscription


class InboxStatus(StrEnum):
    PENDING = "pending"
    DONE = "done"
    IGNORED = "ignored"
    FAILED = "failed"


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    DEAD = "dead"


class SubscriptionSource(StrEnum):
    DB = "db"  # made with a slash command
    CONFIG = "config"  # declared in the configuration file; replaced as a whole at start


@dataclass(frozen=True, slots=True)
class InboxItem:
    """A stored webhook, as claimed by an intake worker."""

    id: int
    dedupe_key: str | None
    route: str
    instance_id: str | None
    params: Mapping[str, Any]
    body: bytes
    received_at: datetime
    status: str
    # Claims so far, this one included: a row that keeps crashing its worker can be failed.
    attempts: int
    outcome: str | None = None
    lease_owner: str | None = None
    lease_until: datetime | None = None
    processed_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class NewInboxRow:
    """A webhook to store, as the intake hands it over (see `InboxRepository.enqueue_many`)."""

    dedupe_key: str | None
    route: str
    instance_id: str | None
    params: Mapping[str, Any]
    body: bytes
    # The issue it is about ("instance|issue"): rows sharing it are processed in id order.
    order_key: str | None = None


# What a delivery does (`NewDelivery.kind`). The delivery worker (bot.pipeline.delivery) posts
# channel posts and announcements itself and hands every other kind to the sender the composition
# root registered for it, so each side effect is durable, retried with backoff and dead-lettered
# the same way. `jira-chatops dead-letters` lists dead letters by kind.
CHANNEL_POST = "channel_post"  # an issue event in a subscribed channel
DIRECT_MESSAGE = "direct_message"  # a personal notification
CHANNEL_ANNOUNCEMENT = "channel_announcement"  # a subscription change, told in its channel
GATE_COMMENT = "gate_comment"  # a comment on a change request, in Jira Service Management
GATE_POST = "gate_post"  # the change gate's root post (made, then edited) or a reply under it
DELIVERY_KINDS = (CHANNEL_POST, DIRECT_MESSAGE, CHANNEL_ANNOUNCEMENT, GATE_COMMENT, GATE_POST)


@dataclass(frozen=True, slots=True)
class NewDelivery:
    """A post to make, produced when an inbox item is processed."""

    channel_id: str
    order_key: str
    payload: Mapping[str, Any]
    kind: str = "channel_post"
    # Generated (unique) when empty; give one to make it deterministic.
    pending_post_id: str = ""
    # Defaults to the `now` of the completing call.
    next_attempt_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class InboxCompletion:
    """How one claimed inbox item ends (see `InboxRepository.complete_many`)."""

    item_id: int
    outcome: str
    status: str
    deliveries: Sequence[NewDelivery] = ()


@dataclass(frozen=True, slots=True)
class Delivery:
    id: int
    inbox_id: int | None
    channel_id: str
    order_key: str
    kind: str
    payload: Mapping[str, Any]
    pending_post_id: str
    status: str
    # Failed attempts so far (reschedules and the final dead-lettering count one each).
    attempts: int
    next_attempt_at: datetime
    created_at: datetime
    last_error: str | None = None
    lease_owner: str | None = None
    lease_until: datetime | None = None
    received_at: datetime | None = None
    delivered_at: datetime | None = None
    dead_at: datetime | None = None
    post_id: str | None = None


@dataclass(frozen=True, slots=True)
class NewThreadRoot:
    """An issue's first post in a channel, under which its comments are threaded."""

    instance_id: str
    channel_id: str
    issue_key: str
    root_post_id: str
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class SubscriptionRecord:
    """A subscription with its bookkeeping (where it comes from, when it changed)."""

    subscription: Subscription
    source: str
    created_at: datetime
    updated_at: datetime


class InboxRepository(Protocol):
    async def enqueue(
        self,
        *,
        dedupe_key: str | None,
        route: str,
        instance_id: str | None,
        params: Mapping[str, Any],
        body: bytes,
        now: datetime,
    ) -> tuple[int, bool]:
        """Store a webhook. Returns (id, created); a known dedupe_key returns the existing id and False."""
        ...

    async def enqueue_many(self, rows: Sequence[NewInboxRow], *, now: datetime) -> list[tuple[int, bool]]:
        """Store several webhooks in one transaction; one (id, created) per row, in order.

        A dedupe_key already stored, or repeated within `rows`, is stored once: its later rows get
        that row's id and False. Either every row is committed or, on an error, none is.
        """
        ...

    async def claim(self, *, limit: int, owner: str, now: datetime, lease_seconds: float) -> list[InboxItem]:
        """Lease up to `limit` pending, available rows (oldest first) to `owner`."""
        ...

    async def complete_many(
        self, completions: Sequence[InboxCompletion], *, owner: str, now: datetime
    ) -> list[bool]:
        """`complete` for several items in one transaction; one result per completion, in order."""
        ...

    async def complete(
        self,
        item_id: int,
        *,
        owner: str,
        outcome: str,
        status: str,
        deliveries: Sequence[NewDelivery],
        now: datetime,
    ) -> bool:
        """In one transaction, insert `deliveries` and close the item with `status` (done, ignored, failed).

        Nothing happens (False) when `owner` no longer holds the item's lease.
        """
        ...

    async def release(
        self, item_id: int, *, owner: str, error: str, now: datetime, retry_at: datetime
    ) -> bool:
        """Give the item back after a transient failure; it is claimable again from `retry_at`."""
        ...

    async def give_back(self, item_ids: Sequence[int], *, owner: str) -> int:
        """Return claimed rows not yet worked on: lease dropped and their claim not counted as an
        attempt. Only rows `owner` still holds; returns how many."""
        ...

    async def release_held(self, *, owner: str) -> int:
        """Give back every row `owner` holds (a clean stop); returns how many."""
        ...

    async def get(self, item_id: int) -> InboxItem | None: ...

    async def list_failed(self, limit: int = 100) -> list[InboxItem]:
        """Rows closed as failed (their `outcome` says why), oldest first."""
        ...

    async def replay_failed(self, ids: Sequence[int] | None, now: datetime) -> int:
        """Put failed rows (all when `ids` is None) back to pending, claimable now, attempts reset.

        The last error stays in `outcome` until the row is closed again.
        """
        ...

    async def counts(self) -> dict[str, int]: ...

    async def next_due_at(self) -> datetime | None:
        """When the next pending row becomes claimable (None when there is none)."""
        ...

    async def purge(self, *, before: datetime) -> int:
        """Delete finished rows processed before `before`."""
        ...


class Outbox(Protocol):
    """Where side effects are queued for the delivery worker (a `DeliveryRepository` is one)."""

    async def enqueue(self, deliveries: Sequence[NewDelivery], *, now: datetime) -> list[int | None]:
        """Queue `deliveries` in one transaction; the id of each, or None for one whose
        pending_post_id is queued already (so a repeated call queues nothing twice)."""
        ...


class DeliveryRepository(Protocol):
    async def enqueue(self, deliveries: Sequence[NewDelivery], *, now: datetime) -> list[int | None]:
        """`Outbox.enqueue`: side effects queued outside of webhook processing."""
        ...

    async def claim_due(
        self,
        *,
        limit: int,
        owner: str,
        now: datetime,
        lease_seconds: float,
        kinds: Collection[str] | None = None,
    ) -> list[Delivery]:
        """Lease due pending deliveries, at most one per order_key: the oldest pending one of its
        key; of the given `kinds` only, when set."""
        ...

    async def mark_delivered(self, delivery_id: int, *, owner: str, post_id: str, now: datetime) -> bool: ...

    async def mark_delivered_many(
        self, delivered: Sequence[tuple[int, str]], *, owner: str, now: datetime
    ) -> list[bool]:
        """`mark_delivered` for several (delivery id, post id) pairs in one transaction; one result each."""
        ...

    async def reschedule(
        self,
        delivery_id: int,
        *,
        owner: str,
        error: str,
        next_attempt_at: datetime,
        now: datetime,
        counted: bool = True,
    ) -> bool:
        """Due again at `next_attempt_at`; `counted=False` (its target is down) adds no attempt."""
        ...

    async def dead_letter(self, delivery_id: int, *, owner: str, error: str, now: datetime) -> bool: ...

    async def release_held(self, *, owner: str) -> int:
        """Drop every lease `owner` holds (a clean stop); returns how many."""
        ...

    async def get(self, delivery_id: int) -> Delivery | None: ...

    async def list_for_inbox(self, inbox_id: int) -> list[Delivery]: ...

    async def list_dead(self, limit: int = 100) -> list[Delivery]: ...

    async def replay(self, ids: Sequence[int] | None, now: datetime) -> int:
        """Put dead deliveries (all when `ids` is None) back to pending, due now, attempts reset."""
        ...

    async def backlog(self) -> int:
        """Pending inbox rows plus pending deliveries."""
        ...

    async def counts(self) -> dict[str, int]: ...

    async def next_due_at(self) -> datetime | None:
        """When the next claimable delivery becomes due (None when nothing is pending)."""
        ...

    async def purge(self, *, before: datetime) -> int:
        """Delete delivered rows delivered before `before`."""
        ...


class SubscriptionRepository(Protocol):
    async def list_all(self) -> list[Subscription]: ...

    def iter_all(self, *, page_size: int = 500) -> AsyncIterator[Subscription]:
        """Every subscription, in list_all's order, read a page at a time (for building the
        routing index without holding them all)."""
        ...

    async def list_records(self) -> list[SubscriptionRecord]: ...

    async def list_for_channel(self, channel_id: str) -> list[Subscription]: ...

    async def get(self, subscription_id: str) -> Subscription | None: ...

    async def get_record(self, subscription_id: str) -> SubscriptionRecord | None: ...

    async def upsert(self, sub: Subscription, *, source: str = "db", now: datetime) -> None: ...

    async def delete(self, subscription_id: str) -> bool: ...

    async def replace_config_subscriptions(
        self, subs: Sequence[Subscription], *, now: datetime
    ) -> list[Subscription]:
        """Make the config-sourced subscriptions exactly `subs` (ids derived from name and channel)."""
        ...

    async def count(self) -> int: ...


class ThreadRepository(Protocol):
    async def get_root(
        self, instance_id: str, channel_id: str, issue_key: str, *, now: datetime
    ) -> str | None:
        """The issue's thread root post in the channel, unless expired."""
        ...

    async def set_root_if_absent(
        self,
        instance_id: str,
        channel_id: str,
        issue_key: str,
        *,
        root_post_id: str,
        expires_at: datetime,
        now: datetime,
    ) -> str:
        """Record `root_post_id` unless a live root exists; return the root in force (first wins)."""
        ...

    async def set_roots_if_absent(self, roots: Sequence[NewThreadRoot], *, now: datetime) -> None:
        """`set_root_if_absent` for several roots in one transaction (the first of a key wins)."""
        ...

    async def forget_root(
        self, instance_id: str, channel_id: str, issue_key: str, *, root_post_id: str
    ) -> bool:
        """Drop the root, only if it is still `root_post_id` (its post was deleted); True when dropped."""
        ...

    async def purge_expired(self, *, now: datetime) -> int: ...


class KeyValueRepository(Protocol):
    async def get(self, key: str, *, now: datetime) -> Any | None: ...

    async def put(self, key: str, value: Any, *, expires_at: datetime | None = None) -> None: ...

    async def put_many(self, items: Sequence[tuple[str, Any, datetime | None]]) -> None:
        """`put` each (key, value, expires_at), in one transaction."""
        ...

    async def add(self, key: str, value: Any, *, expires_at: datetime | None = None, now: datetime) -> bool:
        """Store only if the key is absent or expired; True when stored (first caller wins)."""
        ...

    async def delete(self, key: str) -> bool: ...

    async def take(self, key: str, *, now: datetime) -> Any | None:
        """Get and delete in one step: of concurrent takers only one gets the value."""
        ...

    async def purge_expired(self, *, now: datetime) -> int: ...


@dataclass(frozen=True, slots=True)
class LeaseInfo:
    """Who holds a duty lease (see `LeaseRepository`)."""

    name: str
    owner: str
    token: int
    acquired_at: datetime
    expires_at: datetime


class LeaseRepository(Protocol):
    """Leases on named duties, shared by the replicas of one database (see bot.store.leases)."""

    async def try_acquire(self, name: str, *, owner: str, ttl_seconds: float, now: datetime) -> int | None:
        """Take the lease when it is free or expired, or extend it when `owner` holds it; its
        fencing token (raised each time the lease changes hands), or None when another owner
        holds it. Of concurrent callers for a free lease exactly one gets it."""
        ...

    async def renew(self, name: str, *, owner: str, ttl_seconds: float, now: datetime) -> bool:
        """Extend the lease to `now + ttl_seconds`; False when `owner` no longer holds it."""
        ...

    async def release(self, name: str, *, owner: str) -> bool:
        """Drop the lease if `owner` holds it, so another replica may take it at once."""
        ...

    async def get(self, name: str) -> LeaseInfo | None: ...

    async def purge_expired(self, *, before: datetime) -> int:
        """Delete leases that expired before `before`."""
        ...


class ReplicaRepository(Protocol):
    """Heartbeats of the processes sharing the database (see bot.store.replicas)."""

    async def beat(self, owner: str, *, now: datetime) -> None: ...

    async def forget(self, owner: str) -> None: ...

    async def live(self, *, now: datetime) -> list[str]: ...

    async def is_dead(self, owner: str, *, now: datetime) -> bool: ...

    async def purge(self, *, before: datetime) -> int: ...


class Store(Protocol):
    """Everything persistent, as the application sees it."""

    inbox: InboxRepository
    deliveries: DeliveryRepository
    subscriptions: SubscriptionRepository
    threads: ThreadRepository
    kv: KeyValueRepository
    leases: LeaseRepository

    async def ping(self) -> bool: ...

    async def close(self) -> None: ...
