"""Nothing acknowledged is lost: Mattermost outages, rate limits, backlog bound, dead letters,
per-issue order, and a bot process killed in the middle of delivering."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from bot.__main__ import main as cli_main
from tests.e2e.conftest import SECRET, BotFactory, open_database, settings_for
from tests.fakes import FakeMattermost

LEGACY = "/plugins/jira/webhook"
ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = json.loads((ROOT / "examples" / "issue-created.json").read_bytes())


def numbered_issue(n: int, *, key: str | None = None, summary: str | None = None) -> bytes:
    """The example issue, made distinct so each post can be told apart."""
    doc = json.loads(json.dumps(EXAMPLE))
    doc["issue"]["key"] = key or f"WEB-{n}"
    doc["issue"]["id"] = str(20000 + n)
    doc["issue"]["fields"]["summary"] = summary or f"Issue number {n:03d}"
    return json.dumps(doc).encode()


def post_texts(fake: FakeMattermost) -> list[str]:
    return [json.dumps(p) for p in fake.posts]


async def test_mattermost_unavailable_for_a_while_delays_but_loses_nothing(
    make_bot: BotFactory, database_url: str, fake_mm: FakeMattermost, tmp_path: Path
) -> None:
    db = open_database(database_url)
    bot = await make_bot(database=db)
    fake_mm.fail_for(1.0, 503, path="/api/v4/posts")
    for n in range(10):
        r = await bot.post(LEGACY, numbered_issue(n), team="acme", channel="dev")
        assert r.status == 200
    await fake_mm.wait_for_posts(10, timeout=15)
    await bot.drain()
    texts = post_texts(fake_mm)
    assert len(texts) == 10
    for n in range(10):
        assert sum(f"WEB-{n}:" in t or f"WEB-{n}]" in t for t in texts) == 1, n


async def test_rate_limited_posts_wait_for_retry_after(make_bot: BotFactory, fake_mm: FakeMattermost) -> None:
    bot = await make_bot()
    # Longer than the driver's own short retries, so the queue must wait it out.
    fake_mm.fail_next(4, 429, retry_after=1, path="/api/v4/posts")
    loop = asyncio.get_running_loop()
    started = loop.time()
    r = await bot.post(LEGACY, numbered_issue(1), team="acme", channel="dev")
    assert r.status == 200
    await fake_mm.wait_for_posts(1, timeout=15)
    assert loop.time() - started >= 1.0
    assert len(fake_mm.posts) == 1


async def test_posts_about_one_issue_keep_their_order_through_failures(
    make_bot: BotFactory, fake_mm: FakeMattermost
) -> None:
    bot = await make_bot()
    fake_mm.fail_next(3, 503, path="/api/v4/posts")
    for n in range(6):
        body = numbered_issue(n, key="WEB-7", summary=f"step {n}")
        assert (await bot.post(LEGACY, body, team="acme", channel="dev")).status == 200
    await fake_mm.wait_for_posts(6, timeout=15)
    order = [next(n for n in range(6) if f"step {n}" in t) for t in post_texts(fake_mm)]
    assert order == list(range(6))


async def test_backlog_bound_answers_503_with_retry_after(
    make_bot: BotFactory, fake_mm: FakeMattermost, tmp_path: Path
) -> None:
    """Slow (about 5 s): eight webhooks 0.6 s apart, so the backlog count, cached for a second,
    catches up with them."""
    # Enough attempts that no post is dead-lettered (leaving the backlog) while the test runs.
    settings = settings_for(
        fake_mm, tmp_path, JIRA_CHATOPS__DELIVERY__MAX_BACKLOG="3", JIRA_CHATOPS__DELIVERY__MAX_ATTEMPTS="100"
    )
    bot = await make_bot(settings)
    fake_mm.fail_for(30, 503, path="/api/v4/posts")
    statuses = []
    for n in range(8):
        r = await bot.post(LEGACY, numbered_issue(n), team="acme", channel="dev")
        statuses.append(r.status)
        if r.status == 503:
            assert int(r.headers["Retry-After"]) > 0
        # The backlog count is cached for a second; let it refresh.
        await asyncio.sleep(0.6)
    assert 200 in statuses and statuses[-1] == 503
    fake_mm.clear_failures()


async def test_dead_letters_after_max_attempts_and_replay(
    make_bot: BotFactory, fake_mm: FakeMattermost, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = settings_for(fake_mm, tmp_path, JIRA_CHATOPS__DELIVERY__MAX_ATTEMPTS="2")
    bot = await make_bot(settings)
    fake_mm.fail_for(30, 503, path="/api/v4/posts")
    assert (await bot.post(LEGACY, numbered_issue(1), team="acme", channel="dev")).status == 200
    await bot.drain()
    dead = await bot.services.db.deliveries.list_dead()
    assert len(dead) == 1 and dead[0].attempts == 2 and "503" in (dead[0].last_error or "")
    text = await (await bot.client.get("/metrics")).text()
    assert 'jira_chatops_posts_total{result="dead"} 1.0' in text

    env = {"DATA_DIR": str(tmp_path), "JIRA_WEBHOOK_SECRET": SECRET}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        assert await asyncio.to_thread(cli_main, ["dead-letters"]) == 0
        assert '"issue_key": "WEB-1"' in capsys.readouterr().out
        fake_mm.clear_failures()
        assert await asyncio.to_thread(cli_main, ["dead-letters", "--replay-all"]) == 0
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    bot.services.delivery_wake.set()
    await fake_mm.wait_for_posts(1, timeout=10)
    assert await bot.services.db.deliveries.list_dead() == []


async def _wait_ready(url: str, timeout: float = 20.0) -> None:  # noqa: ASYNC109
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    async with aiohttp.ClientSession() as s:
        while True:
            try:
                async with s.get(url + "/healthz") as r:
                    if r.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            if loop.time() > deadline:
                raise AssertionError("bot did not start")
            await asyncio.sleep(0.1)


def _start_bot(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "bot", "serve"], env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT
        )


async def test_killed_during_delivery_then_restarted_delivers_each_event_exactly_once(
    database_url: str, fake_mm: FakeMattermost, tmp_path: Path, unused_tcp_port: int
) -> None:
    """Slow (about 10 s): a real bot process is killed mid-delivery and restarted, and the
    restarted one waits out the 5 s minimum lease of the posts that were in flight."""
    port = unused_tcp_port
    env = {
        **os.environ,
        "PORT": str(port),
        "HOST": "127.0.0.1",
        "DATA_DIR": str(tmp_path / "data"),
        "DATABASE_URL": database_url,
        "MATTERMOST_URL": fake_mm.url,
        "MATTERMOST_BOT_TOKEN": fake_mm.token,
        "JIRA_WEBHOOK_SECRET": SECRET,
        "JIRA_CHATOPS__DELIVERY__LEASE_SECONDS": "5",
        "JIRA_CHATOPS__DELIVERY__WORKERS": "2",
        "JIRA_CHATOPS__DELIVERY__POLL_INTERVAL_SECONDS": "0.2",
        "JIRA_CHATOPS__MATTERMOST__REQUEST_TIMEOUT_SECONDS": "5",
    }
    # Slow saves: the kill lands while posts are in flight, some of them already saved.
    fake_mm.set_latency(0.3, path="/api/v4/posts")
    log = tmp_path / "bot.log"
    url = f"http://127.0.0.1:{port}"
    total = 12
    proc = _start_bot(env, log)
    try:
        await _wait_ready(url)
        async with aiohttp.ClientSession() as s:
            for n in range(total):
                params = {"secret": SECRET, "team": "acme", "channel": "dev"}
                async with s.post(url + LEGACY, data=numbered_issue(n), params=params) as r:
                    assert r.status == 200, await r.text()
        await fake_mm.wait_for_posts(2, timeout=15)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        assert len(fake_mm.posts) < total, "the kill came too late to test anything"

        proc = _start_bot(env, log)
        await _wait_ready(url)
        await fake_mm.wait_for_posts(total, timeout=40)
        await asyncio.sleep(1.5)  # anything sent twice would show up by now
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
    texts = post_texts(fake_mm)
    counts = {n: sum(f"Issue number {n:03d}" in t for t in texts) for n in range(total)}
    assert counts == dict.fromkeys(range(total), 1), log.read_text()[-3000:]
