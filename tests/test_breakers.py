"""The process-wide breakers (bot/breakers.py): metrics, and replicas that share an opening
through the key-value store of one database."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path

import pytest

from bot.breaker import BreakerState
from bot.breakers import MATTERMOST, Breakers
from bot.metrics import Metrics
from bot.store.db import Database
from tests.clocks import Clock


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = await Database.open(f"sqlite:///{tmp_path / 'bot.db'}")
    yield database
    await database.close()


def sample(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


async def test_metric_series_exist_from_the_start_and_follow_the_state() -> None:
    metrics, clock = Metrics(), Clock()
    b = Breakers(clock=clock, metrics=metrics).get(MATTERMOST)
    assert sample(metrics, "jira_chatops_breaker_state", target=MATTERMOST) == 0
    for state in ("closed", "half_open", "open"):
        assert sample(metrics, "jira_chatops_breaker_transitions_total", target=MATTERMOST, state=state) == 0
    for _ in range(3):
        b.failure()
    assert sample(metrics, "jira_chatops_breaker_state", target=MATTERMOST) == 2
    clock.advance(2.5)
    assert b.acquire()  # the probe
    assert sample(metrics, "jira_chatops_breaker_state", target=MATTERMOST) == 1
    b.success()
    assert sample(metrics, "jira_chatops_breaker_state", target=MATTERMOST) == 0
    assert sample(metrics, "jira_chatops_breaker_transitions_total", target=MATTERMOST, state="open") == 1
    assert sample(metrics, "jira_chatops_breaker_transitions_total", target=MATTERMOST, state="closed") == 1
    assert "jira_chatops_breaker_state" in metrics.render().decode()


async def test_one_breaker_per_target() -> None:
    breakers = Breakers(clock=Clock())
    assert breakers.get(MATTERMOST) is breakers.get(MATTERMOST)
    assert breakers.get(MATTERMOST) is not breakers.get("jira:https://a.example")


async def test_an_opening_is_seen_by_the_other_replica_through_the_database(db: Database) -> None:
    clock = Clock()
    one = Breakers(clock=clock, shared=db.kv).get(MATTERMOST)
    two = Breakers(clock=clock, shared=db.kv).get(MATTERMOST)
    assert await two.ready() == 0  # nothing shared yet: go

    one.failure(retry_after=30)  # Mattermost asked to wait 30 s
    await one.close()  # the shared write is done
    assert await two.ready() == 0  # read at most once a second: not yet looked again
    clock.advance(1.0)
    assert await two.ready() == pytest.approx(29.0)
    assert two.state is BreakerState.OPEN and not two.acquire()

    # Once the time is up each replica probes for itself; the one that succeeds clears the key.
    clock.advance(29.0)
    assert one.acquire()
    one.success()
    await one.close()
    assert await db.kv.get("breaker:mattermost", now=clock()) is None
    assert two.acquire() and two.state is BreakerState.HALF_OPEN


async def test_a_store_that_fails_leaves_the_breaker_per_replica() -> None:
    class Broken:
        async def get(self, key: str, *, now: datetime) -> None:
            raise OSError("database down")

        async def put(self, key: str, value: object, *, expires_at: datetime | None = None) -> None:
            raise OSError("database down")

        async def delete(self, key: str) -> bool:
            raise OSError("database down")

    b = Breakers(clock=Clock(), shared=Broken()).get(MATTERMOST)
    assert await b.ready() == 0
    b.failure(retry_after=5)
    await b.close()
    assert await b.ready() == pytest.approx(5.0)
