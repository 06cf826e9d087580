"""A Mattermost outage as the whole bot sees it: one circuit breaker per process, shared by its
delivery workers and, through the database, by the other replicas (bot/breakers.py)."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from pathlib import Path

from tests.e2e.conftest import BotFactory, open_database, settings_for
from tests.e2e.test_durability import LEGACY, numbered_issue, post_texts
from tests.fakes import FakeMattermost

POSTS = "/api/v4/posts"
ISSUES = 5
STEPS = 6


def failed_posts(fake: FakeMattermost) -> int:
    return sum(1 for r in fake.requests_to(POSTS, "POST") if r.status >= 500)


def steps_by_issue(fake: FakeMattermost) -> dict[str, list[int]]:
    seen: dict[str, list[int]] = {}
    for text in post_texts(fake):
        for i in range(ISSUES):
            for n in range(STEPS):
                if f"WEB-{i}" in text and f"step {n}" in text:
                    seen.setdefault(f"WEB-{i}", []).append(n)
    return seen


async def test_an_outage_is_waited_out_with_few_attempts_then_everything_goes_in_order(
    make_bot: BotFactory, fake_mm: FakeMattermost, tmp_path: Path
) -> None:
    """Slow (about 10 s): Mattermost answers 503 for 6 s, then the bot must recover."""
    # Without the breaker each of the 30 posts retries alone every 0.02-0.2 s: hundreds of
    # attempts in 6 s, and most posts dead-lettered after 12 of them.
    bot = await make_bot()
    outage = 6.0
    fake_mm.fail_for(outage, 503, path=POSTS)
    recovered_at = time.time() + outage
    for n in range(STEPS):
        for i in range(ISSUES):
            body = numbered_issue(100 * i + n, key=f"WEB-{i}", summary=f"step {n}")
            assert (await bot.post(LEGACY, body, team="acme", channel="dev")).status == 200

    await fake_mm.wait_for_posts(ISSUES * STEPS, timeout=60)
    await bot.drain(timeout=30)

    # A few posts fail before the breaker opens, then about one probe a second.
    attempts = failed_posts(fake_mm)
    assert 3 <= attempts <= bot.services.settings.delivery.workers + 2 * outage + 2, attempts
    # Nothing lost, nothing doubled, nothing dead, each issue in order.
    assert steps_by_issue(fake_mm) == {f"WEB-{i}": list(range(STEPS)) for i in range(ISSUES)}
    assert len(fake_mm.posts) == ISSUES * STEPS
    assert await bot.services.db.deliveries.list_dead() == []
    # Back at full speed soon after Mattermost: the breaker stays open 2 s at most.
    first = min(p["create_at"] for p in fake_mm.posts) / 1000
    assert first - recovered_at < 4.0, first - recovered_at

    metrics = await (await bot.client.get("/metrics")).text()
    assert 'jira_chatops_breaker_state{target="mattermost"} 0.0' in metrics
    assert 'jira_chatops_breaker_transitions_total{state="open",target="mattermost"}' in metrics
    assert 'jira_chatops_breaker_transitions_total{state="open",target="mattermost"} 0.0' not in metrics


async def test_breaker_metrics_exist_at_start(make_bot: BotFactory) -> None:
    bot = await make_bot()
    metrics = await (await bot.client.get("/metrics")).text()
    assert 'jira_chatops_breaker_state{target="mattermost"} 0.0' in metrics
    for state in ("closed", "half_open", "open"):
        assert f'jira_chatops_breaker_transitions_total{{state="{state}",target="mattermost"}} 0.0' in metrics


async def test_a_replica_holds_off_when_another_found_mattermost_down(
    database_url: str, make_bot: BotFactory, fake_mm: FakeMattermost, tmp_path: Path
) -> None:
    """Slow (about 6 s): Mattermost asks for 5 s of quiet, which both replicas must keep."""
    # database_url first: its database is dropped after both replicas have stopped.
    settings = settings_for(fake_mm, tmp_path, DATABASE_URL=database_url)
    one = await make_bot(settings, database=open_database(database_url))
    # One 503 asking for 5 s of quiet; Mattermost is in fact back at once, so any post made
    # before then would go through: the quiet is the breaker's doing.
    fake_mm.fail_next(1, 503, retry_after=5, path=POSTS)
    assert (await one.post(LEGACY, numbered_issue(1), team="acme", channel="dev")).status == 200
    deadline = time.monotonic() + 30
    while failed_posts(fake_mm) < 1:
        assert time.monotonic() < deadline, "the first post was not tried"
        await asyncio.sleep(0.02)
    failed_at = time.time()
    # The opening reaches the database a moment later (written in the background).
    while await one.services.db.kv.get("breaker:mattermost", now=datetime.now(UTC)) is None:
        assert time.monotonic() < deadline, "the opening was not shared"
        await asyncio.sleep(0.02)

    # A second replica on the same database, which has not seen the failure itself. The posts
    # are queued through the first (which knows the channel; a fresh replica would have to ask
    # Mattermost, and answer 503 for Jira to retry): the second would take them at once.
    two = await make_bot(settings, database=open_database(database_url))
    for n in range(2, 6):
        assert (await one.post(LEGACY, numbered_issue(n), team="acme", channel="dev")).status == 200
    # The second replica opens its own breaker from what the first shared. Its state is open
    # only until the quiet ends (a loaded machine may get there first), so the proof is the
    # transition it counted, not the state at some instant.
    deadline = time.monotonic() + 30
    opened = 'jira_chatops_breaker_transitions_total{state="open",target="mattermost"} 1.0'
    while opened not in await (await two.client.get("/metrics")).text():
        assert time.monotonic() < deadline, "the second replica did not hold off"
        await asyncio.sleep(0.05)

    await fake_mm.wait_for_posts(5, timeout=60)
    first = min(p["create_at"] for p in fake_mm.posts) / 1000
    assert first - failed_at >= 4.5, first - failed_at
    assert failed_posts(fake_mm) == 1
    assert len(fake_mm.posts) == 5
