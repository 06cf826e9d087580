"""A comment on a change request waits out an outage of its Jira site, not of Mattermost: the
delivery worker's outage rule (no attempt counted while the target's breaker is not closed)
follows the breaker of the Jira site the comment goes to. So a comment queued while JSM answers
503 for longer than `delivery.max_attempts` is posted once when it is back, internal, and not
dead-lettered; with Mattermost's breaker (closed all along) it would have been.

Against the fake JSM over HTTP, a real SQLite store and the process's breakers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bot.breaker import BreakerPolicy, BreakerState
from bot.breakers import MATTERMOST, Breakers, jira_target
from bot.config import ChannelPostSettings, DeliverySettings, JiraSettings
from bot.gate.jsm import JsmClients
from bot.gate.outbox import CommentSender, comment_delivery
from bot.mattermost.models import DeliveryError, OutgoingPost
from bot.metrics import Metrics
from bot.pipeline.delivery import DeliveryWorker
from bot.store.db import Database
from bot.store.interfaces import GATE_COMMENT, DeliveryStatus, NewDelivery
from tests.fakes.jsm import FakeJsm
from tests.pipeline.delivery_runs import run_until_settled

MAX_ATTEMPTS = 4
OUTAGE_FAILURES = 3 * MAX_ATTEMPTS
COMMENTS = "/rest/servicedeskapi/request/"
# Short breaker pauses, so the outage's probes take a second or two.
FAST = BreakerPolicy(failure_threshold=3, min_open_seconds=0.05, max_open_seconds=0.1)


def now() -> datetime:
    return datetime.now(UTC)


class NoMattermost:
    """A comment on the CR never reaches Mattermost; a post here would be a bug."""

    async def create_post(self, post: OutgoingPost) -> str:
        raise DeliveryError("no post expected", retryable=False)

    async def resolve_channel(self, team: str, channel: str) -> str | None:
        return None

    async def channel_exists(self, channel_id: str) -> bool:
        return False

    async def ping(self) -> bool:
        return True


class World:
    def __init__(self, db: Database, jsm: FakeJsm, clients: JsmClients, breakers: Breakers) -> None:
        self.db, self.jsm, self.clients, self.breakers = db, jsm, clients, breakers
        self.worker = DeliveryWorker(
            deliveries=db.deliveries,
            threads=db.threads,
            sink=NoMattermost(),
            settings=DeliverySettings(
                max_attempts=MAX_ATTEMPTS, backoff_base_seconds=0.05, backoff_max_seconds=0.1
            ),
            posts=ChannelPostSettings(),
            metrics=Metrics(),
            clock=now,
            owner="w1",
        )
        # As bot.wiring sets them up for the change gate.
        self.worker.breaker = breakers.get(MATTERMOST)
        self.worker.senders[GATE_COMMENT] = CommentSender(clients)
        self.worker.target_breakers[GATE_COMMENT] = lambda d: clients.breaker(d.payload.get("instance"))

    async def queue_comment(self, cr_id: str, cr_key: str, text: str) -> int:
        new = comment_delivery(
            gate_id="g1", instance="itsm", cr_id=cr_id, cr_key=cr_key, kind="started", text=text, public=False
        )
        [delivery_id] = await self.db.deliveries.enqueue([new], now=now())
        assert delivery_id is not None
        return delivery_id

    async def run_until_settled(self, delivery_id: int) -> None:
        await run_until_settled(self.worker, self.db.deliveries, delivery_id)

    def failed_comments(self) -> int:
        return len(self.jsm.requests_to(COMMENTS, "POST")) - sum(len(c) for c in self.jsm.comments.values())


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    jsm = FakeJsm("server")
    await jsm.start()
    jsm.add_pat("pat-secret")
    db = await Database.open(f"sqlite:///{tmp_path / 'bot.db'}")
    jira = JiraSettings.model_validate(
        {
            "instances": [
                {
                    "url": jsm.url,
                    "type": "server",
                    "alias": "itsm",
                    "service_account": {"token": "pat-secret"},
                }
            ]
        }
    )
    breakers = Breakers(clock=now, policy=FAST)
    clients = JsmClients(jira, breakers=breakers)
    try:
        yield World(db, jsm, clients, breakers)
    finally:
        await clients.close()
        await db.close()
        await jsm.stop()


async def test_a_cr_comment_waits_out_a_jira_outage_and_is_posted_once_internal(world: World) -> None:
    cr = world.jsm.add_issue("ITSM", "Deploy Web Site 1.2.3 to Production")
    world.jsm.fail_next(503, times=OUTAGE_FAILURES, path=COMMENTS)
    delivery_id = await world.queue_comment(cr.id, cr.key, "Deployment of 1.2.3 started")

    await world.run_until_settled(delivery_id)

    d = await world.db.deliveries.get(delivery_id)
    assert d is not None and d.status == DeliveryStatus.DELIVERED.value, d
    assert world.failed_comments() == OUTAGE_FAILURES > MAX_ATTEMPTS
    # Only the failures before the site's breaker opened counted.
    assert d.attempts < FAST.failure_threshold, d.attempts
    assert world.jsm.comments[cr.key] == ["Deployment of 1.2.3 started"]
    assert world.jsm.comments_public[cr.key] == [False]
    # The outage was Jira's: its site's breaker saw it, Mattermost's did not.
    assert world.breakers.get(jira_target(world.jsm.url)).state is BreakerState.CLOSED
    assert world.breakers.get(MATTERMOST).state is BreakerState.CLOSED


async def test_while_the_sites_breaker_is_open_a_comment_is_not_sent_and_not_counted(world: World) -> None:
    """Another caller (the poller reading CR statuses, say) found the site down: the comment
    fails at once without a request and waits, its attempts untouched."""
    cr = world.jsm.add_issue("ITSM", "Deploy Web Site 1.2.3 to Production")
    site = world.breakers.get(jira_target(world.jsm.url))
    for _ in range(FAST.failure_threshold):
        site.failure(retry_after=30)
    assert site.state is BreakerState.OPEN
    delivery_id = await world.queue_comment(cr.id, cr.key, "Deployment of 1.2.3 started")

    assert await world.worker.run_once() == 1
    d = await world.db.deliveries.get(delivery_id)
    assert d is not None and d.status == DeliveryStatus.PENDING.value and d.attempts == 0, d
    assert world.jsm.requests_to(COMMENTS) == []
    # Due again when the site's breaker lets a probe go (its Retry-After), not before.
    assert d.next_attempt_at is not None and (d.next_attempt_at - now()).total_seconds() > 20


async def test_refusals_while_jira_is_up_count_and_dead_letter(world: World) -> None:
    """A 503 that the site's breaker does not take for an outage (a threshold above the comment's
    attempts) is the comment's own failure: counted, and the last one dead-letters it."""
    world.breakers = Breakers(clock=now, policy=BreakerPolicy(failure_threshold=MAX_ATTEMPTS + 1))
    jira = JiraSettings.model_validate(
        {
            "instances": [
                {
                    "url": world.jsm.url,
                    "type": "server",
                    "alias": "itsm",
                    "service_account": {"token": "pat-secret"},
                }
            ]
        }
    )
    clients = JsmClients(jira, breakers=world.breakers)
    world.worker.senders[GATE_COMMENT] = CommentSender(clients)
    world.worker.target_breakers[GATE_COMMENT] = lambda d: clients.breaker(d.payload.get("instance"))
    try:
        cr = world.jsm.add_issue("ITSM", "Deploy Web Site 1.2.3 to Production")
        world.jsm.fail_next(503, times=MAX_ATTEMPTS, path=COMMENTS)
        delivery_id = await world.queue_comment(cr.id, cr.key, "refused each time")
        await world.run_until_settled(delivery_id)
    finally:
        await clients.close()
    d = await world.db.deliveries.get(delivery_id)
    assert d is not None and d.status == DeliveryStatus.DEAD.value, d
    assert d.attempts == MAX_ATTEMPTS == world.failed_comments()
    assert world.jsm.comments.get(cr.key) is None


async def test_while_mattermost_is_down_a_cr_comment_still_goes_to_jira(world: World) -> None:
    """The worker claims nothing for Mattermost while its breaker is open, so the outage burns
    no attempts; a comment on the CR goes to Jira, which is up, and is posted meanwhile."""
    cr = world.jsm.add_issue("ITSM", "Deploy Web Site 1.2.3 to Production")
    mattermost = world.breakers.get(MATTERMOST)
    for _ in range(FAST.failure_threshold):
        mattermost.failure(retry_after=30)
    assert mattermost.state is BreakerState.OPEN
    [post_id] = await world.db.deliveries.enqueue(
        [NewDelivery("channel-1", "channel-1|jira|WEB-1", {"message": "an issue event"})], now=now()
    )
    comment_id = await world.queue_comment(cr.id, cr.key, "Deployment of 1.2.3 started")

    assert await world.worker.run_once() == 1

    comment = await world.db.deliveries.get(comment_id)
    assert comment is not None and comment.status == DeliveryStatus.DELIVERED.value, comment
    assert world.jsm.comments[cr.key] == ["Deployment of 1.2.3 started"]
    post = await world.db.deliveries.get(post_id)
    assert post is not None and post.status == DeliveryStatus.PENDING.value, post
    assert post.attempts == 0 and post.lease_owner is None, post
