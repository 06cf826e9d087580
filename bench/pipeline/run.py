"""One measured run: the ceiling server's, and the bot's phase by phase for one subscription count."""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import shutil
import sys
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

import aiohttp

from bench.pipeline.figures import Row, bench_routing, latencies_ms, percentile, post_times
from bench.pipeline.load import Drive, drive, drive_paced, new_session, unbounded
from bench.pipeline.profiling import profile_path, sampled
from bench.pipeline.scenarios import (
    PACED_RATE,
    Payload,
    expected_posts,
    make_subscriptions,
    store_subscriptions,
)
from bench.pipeline.servers import (
    FIREHOSE,
    SECRET,
    FakeInfo,
    RssSampler,
    child,
    fake_mattermost,
    fake_posts,
    free_port,
    fresh_database,
    proc_cpu_seconds,
    proc_status_kb,
    tail,
    wait_http,
)
from bench.pipeline.wrk import drive_wrk
from bot.routing.matcher import SubscriptionIndex
from bot.store.db import Database

CEILING_TRIES = 3
TIMED_START = 10_000  # the timed phase's webhooks are numbered from here
SUSTAINED_START = 400_000  # the sustained phase's


async def timed_drive(
    args: argparse.Namespace,
    session: aiohttp.ClientSession,
    url: str,
    payloads: Sequence[Payload],
    workdir: Path,
    *,
    start: int = TIMED_START,
    seconds: float | None = None,
) -> Drive:
    """One measured burst: wrk for `seconds` (default `--duration`) when it is used, else the
    Python client for `--requests` webhooks (or for `seconds` when given)."""
    if args.wrk:
        return await drive_wrk(
            args.wrk, url, workdir, payloads, start, seconds or args.duration, args.concurrency
        )
    seqs = range(start, start + args.requests) if seconds is None else unbounded(start)
    return await drive(session, url, payloads, seqs, args.concurrency, seconds=seconds)


async def wait_drained(db: Database, timeout: float) -> float | None:  # noqa: ASYNC109
    """Seconds until nothing is left to process or deliver; None when `timeout` passed first."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    while await db.deliveries.backlog() > 0:
        if loop.time() - started > timeout:
            return None
        await asyncio.sleep(0.05)
    return loop.time() - started


async def unprocessed(db: Database) -> int:
    """Webhooks accepted but not yet routed, rendered and stored for delivery."""
    return (await db.inbox.counts()).get("pending", 0)


async def wait_processed(db: Database, timeout: float) -> float | None:  # noqa: ASYNC109
    """Seconds until every accepted webhook is processed; None when `timeout` passed first."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    while await unprocessed(db) > 0:
        if loop.time() - started > timeout:
            return None
        await asyncio.sleep(0.05)
    return loop.time() - started


async def run_bot(count: int, args: argparse.Namespace, payloads: Sequence[Payload]) -> Row:
    row = Row(subscriptions=count)
    workdir = Path(tempfile.mkdtemp(prefix=f"bench-pipeline-{count}-"))
    try:
        async with (
            fake_mattermost(workdir) as fake,
            fresh_database(args.database, workdir, args.postgres_url, args.pg_setting) as url,
        ):
            subs = make_subscriptions(count, fake.channels, payloads)
            db = await Database.open(url)
            try:
                row.store_s = await store_subscriptions(db, subs)
                # In process and before the bot starts, so nothing competes for the CPU.
                row.route = bench_routing(subs, payloads, args.route_rounds)
                index = SubscriptionIndex.build(subs)
                per_payload = [expected_posts(index, p) for p in payloads]
                await _exercise_bot(row, args, payloads, per_payload, fake, db, url, workdir, count)
            finally:
                await db.close()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return row


async def _exercise_bot(
    row: Row,
    args: argparse.Namespace,
    payloads: Sequence[Payload],
    per_payload: Sequence[int | None],
    fake: FakeInfo,
    db: Database,
    url: str,
    workdir: Path,
    count: int,
) -> None:
    port = free_port()
    env = {
        **os.environ,
        "PORT": str(port),
        "HOST": "127.0.0.1",
        "DATA_DIR": str(workdir / "data"),
        "DATABASE_URL": url,
        "MATTERMOST_URL": fake.url,
        "MATTERMOST_BOT_TOKEN": fake.token,
        "JIRA_WEBHOOK_SECRET": SECRET,
        "LOG_LEVEL": "WARNING",
    }
    command = [sys.executable]
    if args.profile and not args.py_spy:
        command += ["-m", "cProfile", "-o", str(profile_path(args, count, ".prof"))]
    command += ["-m", "bot", "serve"]
    log = workdir / "bot.log"
    base = f"http://127.0.0.1:{port}"
    webhook_url = f"{base}{FIREHOSE}?secret={SECRET}"
    n = len(payloads)
    warmup = range(0, 2 * n)
    paced = range(900_000, 900_000 + args.paced)

    def expected(seqs: Iterable[int]) -> dict[int, int]:
        return {seq: want for seq in seqs if (want := per_payload[seq % n]) is not None}

    async with child(command, log=log, env=env) as proc, new_session(args.concurrency) as session:
        await wait_http(base + "/healthz", proc, log)
        with RssSampler(proc.pid) as rss:
            await asyncio.sleep(0.3)
            row.idle_rss_mb = proc_status_kb(proc.pid, "VmRSS") / 1024
            # Warm-up: first-use costs (imports, statement compilation, index build) stay out of the figures.
            await drive(session, webhook_url, payloads, warmup, args.concurrency)
            if await wait_drained(db, args.drain_timeout) is None:
                row.notes.append("warm-up did not drain")
            row.warm_rss_mb = proc_status_kb(proc.pid, "VmRSS") / 1024

            async with sampled(args, proc.pid, count, "intake", workdir):
                cpu0 = proc_cpu_seconds(proc.pid)
                intake = await timed_drive(args, session, webhook_url, payloads, workdir)
                row.bot_cpu_pct = 100 * (proc_cpu_seconds(proc.pid) - cpu0) / intake.wall
            async with sampled(args, proc.pid, count, "drain", workdir):
                remaining = await wait_drained(db, args.drain_timeout)
            row.accepted_per_s = intake.rate
            row.ignored = intake.ignored
            row.non_200 = sum(v for k, v in intake.statuses.items() if k != 200) + intake.errors
            if row.non_200:
                row.notes.append(f"intake answers: {dict(intake.statuses)}, {intake.errors} transport errors")
            if remaining is None:
                row.notes.append(f"not drained within {args.drain_timeout:.0f} s after the intake")
            else:
                row.drain_s = intake.wall + remaining

            if args.sustained:
                await _sustained(row, args, session, webhook_url, payloads, db, workdir)

            light = await drive_paced(session, webhook_url, payloads, paced, PACED_RATE)
            if await wait_drained(db, args.drain_timeout) is None:
                row.notes.append("light-load phase did not drain")
            row.peak_rss_mb = max(rss.peak_kb, proc_status_kb(proc.pid, "VmHWM")) / 1024

        seen = post_times(await fake_posts(session, fake))
        row.posts = sum(len(seen.get(seq, ())) for seq in intake.sent)
        row.timed_webhooks = len(intake.sent)
        want = expected(intake.sent)
        row.checked_posts = sum(len(seen.get(seq, ())) for seq in want)
        row.checked_expected = sum(want.values())
        if row.checked_posts != row.checked_expected:
            row.notes.append(
                f"posts for the checked webhooks: {row.checked_posts}, expected {row.checked_expected}"
            )
        flood, missing = latencies_ms(seen, intake.send_times, want)
        if not intake.send_times:  # wrk: no send time per webhook, so only the posts are checked
            missing = sum(len(seen.get(seq, ())) < n_posts for seq, n_posts in want.items())
        row.e2e_p50_ms, row.e2e_p99_ms = percentile(flood, 50), percentile(flood, 99)
        row.answer_p50_ms, row.answer_p99_ms = intake.latency_p50_ms, intake.latency_p99_ms
        steady, missing_paced = latencies_ms(seen, light.send_times, expected(light.send_times))
        row.paced_p50_ms, row.paced_p99_ms = percentile(steady, 50), percentile(steady, 99)
        if missing or missing_paced:
            row.notes.append(f"{missing + missing_paced} webhook(s) lack some of their posts")
        counts = await db.deliveries.counts()
        row.dead = counts.get("dead", 0)
        if row.dead:
            row.notes.append(f"{row.dead} dead letter(s)")
        if row.notes:
            row.notes.append(f"deliveries by status: {counts}; the bot's log ends with:\n{tail(log, 1500)}")


async def run_ceiling(args: argparse.Namespace, payloads: Sequence[Payload], workdir: Path) -> list[Drive]:
    """CEILING_TRIES timed runs: each lasts well under a second, so one busy moment of the machine
    would otherwise decide the figure; the best is the ceiling."""
    port = free_port()
    log = workdir / "ceiling.log"
    command = [sys.executable, "-m", "bench.pipeline", "--serve-ceiling", str(port)]
    base = f"http://127.0.0.1:{port}"
    async with child(command, log=log) as proc, new_session(args.concurrency) as session:
        await wait_http(base + "/healthz", proc, log)
        url = f"{base}{FIREHOSE}?secret={SECRET}"
        await drive(session, url, payloads, range(2 * len(payloads)), args.concurrency)
        return [await timed_drive(args, session, url, payloads, workdir) for _ in range(CEILING_TRIES)]


async def _sustained(
    row: Row,
    args: argparse.Namespace,
    session: aiohttp.ClientSession,
    url: str,
    payloads: Sequence[Payload],
    db: Database,
    workdir: Path,
) -> None:
    """`--sustained S`: load for S seconds, then see what processing left behind. The end-to-end
    rate counts a webhook once it is accepted, routed, rendered and stored for delivery."""

    async def finished() -> int:
        counts = await db.inbox.counts()
        return counts.get("done", 0) + counts.get("ignored", 0) + counts.get("failed", 0)

    before, finished_before = await unprocessed(db), await finished()
    run = await timed_drive(
        args, session, url, payloads, workdir, start=SUSTAINED_START, seconds=args.sustained
    )
    left, processed = await unprocessed(db), await finished() - finished_before
    rest = await wait_processed(db, args.drain_timeout)
    row.sustained_accepted_per_s = run.rate
    row.sustained_backlog = left - before
    # The backlog at the end in seconds of the work processing did meanwhile.
    speed = processed / run.wall if run.wall else 0.0
    row.sustained_backlog_s = row.sustained_backlog / speed if speed else math.inf
    if rest is None:
        row.notes.append(f"sustained phase: not processed within {args.drain_timeout:.0f} s")
    else:
        row.sustained_e2e_per_s = run.ok / (run.wall + rest)
    if await wait_drained(db, args.drain_timeout) is None:
        row.notes.append("sustained phase: deliveries did not drain")
