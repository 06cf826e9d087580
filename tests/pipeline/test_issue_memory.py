"""The issue memory: security levels learnt from complete webhooks, written a batch at a time."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from bot.jira.events import IssueEvent, NamedValue, normalise
from bot.jira.models import parse_webhook
from bot.pipeline.issue_memory import IssueMemory
from bot.store.db import Database
from tests.pipeline.test_processor_batches import EXAMPLE

T0 = datetime(2024, 5, 1, tzinfo=UTC)
JIRA = "https://acme.atlassian.net"
SECRET = NamedValue("10001", "Secret")


def event(issue_id: str, *, partial: bool) -> IssueEvent:
    parsed = normalise(parse_webhook(dict(EXAMPLE)))
    assert parsed is not None
    issue = dataclasses.replace(
        parsed.issue, id=issue_id, security_level=None if partial else SECRET, fields_partial=partial
    )
    return dataclasses.replace(parsed, issue=issue)


class CountingKv:
    """The store's key-value repository, counting the transactions that write."""

    def __init__(self, db: Database, *, fail: bool = False) -> None:
        self._kv = db.kv
        self.writes: list[list[str]] = []
        self.fail = fail

    async def get(self, key: str, *, now: datetime) -> Any | None:
        return await self._kv.get(key, now=now)

    async def put_many(self, items: Sequence[tuple[str, Any, datetime | None]]) -> None:
        self.writes.append([key for key, _, _ in items])
        if self.fail:
            raise OSError("database is locked")
        await self._kv.put_many(items)


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = await Database.open(f"sqlite:///{tmp_path / 'bot.db'}")
    yield database
    await database.close()


async def test_levels_of_a_batch_are_written_in_one_transaction_and_serve_before_it(db: Database) -> None:
    kv = CountingKv(db)
    memory = IssueMemory(kv)  # type: ignore[arg-type]
    for n in range(5):
        await memory.complete(event(f"{n}", partial=False), JIRA, T0)
    # A thin event of an issue seen complete in the same batch, before the batch is written.
    thin = await memory.complete(event("3", partial=True), JIRA, T0)
    assert thin.issue.security_level == SECRET and not thin.issue.fields_partial
    assert kv.writes == []
    await memory.save()
    assert len(kv.writes) == 1 and len(kv.writes[0]) == 5
    await memory.save()  # nothing new: no transaction
    assert len(kv.writes) == 1
    # Written for good: another process (a new memory) reads them.
    later = await IssueMemory(db.kv).complete(event("4", partial=True), JIRA, T0)
    assert later.issue.security_level == SECRET


async def test_a_failed_write_is_made_again_when_the_events_come_again(db: Database) -> None:
    kv = CountingKv(db, fail=True)
    memory = IssueMemory(kv)  # type: ignore[arg-type]
    await memory.complete(event("1", partial=False), JIRA, T0)
    with pytest.raises(OSError):
        await memory.save()
    kv.fail = False
    await memory.complete(event("1", partial=False), JIRA, T0)  # the batch processed again
    await memory.save()
    assert [len(keys) for keys in kv.writes] == [1, 1]
    again = await IssueMemory(db.kv).complete(event("1", partial=True), JIRA, T0)
    assert again.issue.security_level == SECRET
