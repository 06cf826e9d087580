"""The intake's backlog figure: counted at most once per period, by one webhook at a time."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import pytest

from bot.metrics import Metrics
from bot.pipeline.intake import Intake, Outcome, WebhookRequest
from bot.store.interfaces import NewInboxRow

JIRA = "https://acme.atlassian.net"
T0 = datetime(2024, 5, 1, tzinfo=UTC)


class SlowCount:
    """`DeliveryRepository.backlog` taking a while, as a count over a long queue does."""

    def __init__(self, value: int) -> None:
        self.value = value
        self.calls = 0
        self.fail = False

    async def backlog(self) -> int:
        self.calls += 1
        await asyncio.sleep(0.05)
        if self.fail:
            raise OSError("database is locked")
        return self.value


class Inbox:
    def __init__(self) -> None:
        self.rows: list[NewInboxRow] = []

    async def enqueue_many(self, rows: Sequence[NewInboxRow], *, now: datetime) -> list[tuple[int, bool]]:
        start = len(self.rows)
        self.rows += rows
        return [(start + n + 1, True) for n in range(len(rows))]


def webhook(n: int) -> WebhookRequest:
    body = {
        "webhookEvent": "jira:issue_created",
        "issue": {"id": str(n), "key": f"WEB-{n}", "self": f"{JIRA}/rest/api/2/issue/{n}", "fields": {}},
    }
    return WebhookRequest(route="firehose", body=json.dumps(body).encode(), delivery_id=f"d{n}")


def intake(stats: SlowCount, inbox: Inbox, max_backlog: int) -> Intake:
    sink: Any = object()  # the firehose route never asks Mattermost
    return Intake(
        inbox=inbox,  # type: ignore[arg-type]
        stats=stats,  # type: ignore[arg-type]
        sink=sink,
        metrics=Metrics(),
        clock=lambda: T0,
        instances=lambda: [JIRA],
        max_backlog=max_backlog,
        backlog_cache_seconds=60,
    )


async def test_webhooks_arriving_while_the_backlog_is_counted_do_not_count_it_again() -> None:
    stats, inbox = SlowCount(0), Inbox()
    shared = intake(stats, inbox, 100)
    results = await asyncio.gather(*(shared.accept(webhook(n)) for n in range(20)))
    assert [r.outcome for r in results] == [Outcome.ACCEPTED] * 20
    assert stats.calls == 1
    assert len(inbox.rows) == 20


async def test_a_full_backlog_is_refused_and_a_failed_count_is_made_again() -> None:
    stats, inbox = SlowCount(5), Inbox()
    full = intake(stats, inbox, 5)
    assert (await full.accept(webhook(1))).outcome is Outcome.OVERLOADED
    stats.fail = True
    flaky = intake(stats, inbox, 100)
    for _ in range(2):
        with pytest.raises(OSError):
            await flaky.accept(webhook(2))
    assert stats.calls == 3  # one for `full`, then each webhook of `flaky` counted again
    stats.fail = False
    assert (await flaky.accept(webhook(2))).outcome is Outcome.ACCEPTED
    assert inbox.rows[-1].dedupe_key == "d2"
