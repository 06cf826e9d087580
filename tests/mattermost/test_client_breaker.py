"""MattermostClient and its circuit breaker, over real HTTP against FakeMattermost: outages
(5xx, 429, no answer) open it and later calls fail without a request; 4xx answers do not."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime

import pytest
from aiohttp.test_utils import TestServer

from bot.breaker import BreakerState
from bot.breakers import MATTERMOST, Breaker
from bot.mattermost.client import MattermostClient
from bot.mattermost.models import DeliveryError, OutgoingPost
from bot.mattermost.rest import is_outage
from tests.fakes import FakeMattermost

TOKEN = "tok-breaker-0123456789"
ServerFactory = Callable[..., Awaitable[TestServer]]


@pytest.fixture
def fake() -> FakeMattermost:
    return FakeMattermost(token=TOKEN)


@pytest.fixture
def channel_id(fake: FakeMattermost) -> str:
    return fake.add_channel("eng", "jira-updates")


@pytest.fixture
async def client(aiohttp_server: ServerFactory, fake: FakeMattermost) -> AsyncIterator[MattermostClient]:
    server = await aiohttp_server(fake.app())
    mm = MattermostClient(str(server.make_url("")), TOKEN, timeout=2.0, retry_max_sleep=0.5)
    await mm.start()
    mm.breaker = Breaker(MATTERMOST, clock=lambda: datetime.now(UTC))
    yield mm
    await mm.close()


def posts_tried(fake: FakeMattermost) -> int:
    return len(fake.requests_to("/api/v4/posts", "POST"))


async def test_a_503_with_retry_after_opens_the_breaker_for_that_long(
    client: MattermostClient, fake: FakeMattermost, channel_id: str
) -> None:
    fake.fail_next(1, 503, retry_after=30, path="/api/v4/posts", body="<html>maintenance</html>")
    with pytest.raises(DeliveryError) as failed:
        await client.create_post(OutgoingPost(channel_id=channel_id, message="one"))
    assert failed.value.status == 503 and failed.value.retry_after == 30
    assert client.breaker is not None and client.breaker.state is BreakerState.OPEN
    assert 28 < client.breaker.delay() <= 30

    # Mattermost is up again, but the bot keeps off it until then: no request is made.
    with pytest.raises(DeliveryError) as refused:
        await client.create_post(OutgoingPost(channel_id=channel_id, message="two"))
    assert refused.value.retryable and refused.value.retry_after and refused.value.retry_after > 28
    assert posts_tried(fake) == 1 and fake.posts == []


async def test_three_outage_answers_in_a_row_open_it_and_a_4xx_does_not(
    client: MattermostClient, fake: FakeMattermost, channel_id: str
) -> None:
    assert client.breaker is not None
    for _ in range(5):  # refusals of one request say nothing about Mattermost as a whole
        with pytest.raises(DeliveryError):
            await client.create_post(OutgoingPost(channel_id="no-such-channel-000000000", message="x"))
    assert client.breaker.state is BreakerState.CLOSED

    fake.fail_for(30, 502, path="/api/v4/posts")
    for _ in range(3):
        with pytest.raises(DeliveryError):
            await client.create_post(OutgoingPost(channel_id=channel_id, message="x"))
    assert client.breaker.state is BreakerState.OPEN
    tried = posts_tried(fake)
    for _ in range(50):
        with pytest.raises(DeliveryError):
            await client.create_post(OutgoingPost(channel_id=channel_id, message="x"))
    assert posts_tried(fake) == tried


def test_outages_are_told_from_refusals() -> None:
    assert is_outage(DeliveryError("", retryable=True, status=503))
    assert is_outage(DeliveryError("", retryable=True, status=429, retry_after=3))
    assert is_outage(DeliveryError("timeout", retryable=True))
    assert not is_outage(DeliveryError("", retryable=False, status=400))
    assert not is_outage(DeliveryError("", retryable=True, status=408))
    assert not is_outage(DeliveryError("", retryable=False, status=501))
