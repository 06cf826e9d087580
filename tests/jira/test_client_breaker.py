"""JiraGateway and the circuit breaker of each Jira site: a site failing as a whole (5xx, 429,
no answer) is left alone for a while; refusals of one request (4xx) count for nothing."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bot.breaker import BreakerState
from bot.breakers import Breakers, jira_target
from bot.jira.client import JiraGateway
from bot.jira.errors import JiraError

SITE = "https://jira.example.com"
OTHER = "https://other.example.com"


@pytest.fixture
async def gateway() -> JiraGateway:
    gw = JiraGateway(max_workers=2, timeout=5.0)
    gw.breakers = Breakers(clock=lambda: datetime.now(UTC))
    yield gw
    await gw.close()


async def test_a_failing_site_is_not_asked_again_until_the_breaker_lets_a_probe_go(
    gateway: JiraGateway,
) -> None:
    calls = 0

    def down() -> None:
        nonlocal calls
        calls += 1
        raise JiraError("unavailable", status=503)

    for _ in range(3):
        with pytest.raises(JiraError):
            await gateway.run(down, site_url=SITE)
    assert gateway.breakers is not None
    assert gateway.breakers.get(jira_target(SITE)).state is BreakerState.OPEN
    for _ in range(20):
        with pytest.raises(JiraError) as refused:
            await gateway.run(down, site_url=SITE)
    assert calls == 3
    assert refused.value.retry_after is not None and refused.value.retry_after > 0
    # Another site is not held back.
    assert await gateway.run(lambda: "ok", site_url=OTHER) == "ok"


async def test_refusals_of_one_request_do_not_open_it(gateway: JiraGateway) -> None:
    def refused() -> None:
        raise JiraError("not_found", status=404)

    for _ in range(10):
        with pytest.raises(JiraError):
            await gateway.run(refused, site_url=SITE)
    assert gateway.breakers is not None
    assert gateway.breakers.get(jira_target(SITE)).state is BreakerState.CLOSED
