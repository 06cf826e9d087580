"""One measured run: the ceiling server's, and the bot's phase by phase for one subscription count."""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

from bench.pipeline.figures import Row, bench_routing, latencies_ms, percentile, post_times
from bench.pipeline.load import Drive, drive, drive_paced, new_session
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
from bot.routing.matcher import SubscriptionIndex
from bot.store.db import Database

CEILING_TRIES = 3


async def wait_drained(db: Database, timeout: float) -> float | None:  # noqa: ASYNC109
    """Seconds until nothing is left to process or deliver; None when `timeout` passed first."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    while await db.deliveries.backlog() > 0:
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
    timed = range(10_000, 10_000 + args.requests)
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
                intake = await drive(session, webhook_url, payloads, timed, args.concurrency)
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

            light = await drive_paced(session, webhook_url, payloads, paced, PACED_RATE)
            if await wait_drained(db, args.drain_timeout) is None:
                row.notes.append("light-load phase did not drain")
            row.peak_rss_mb = max(rss.peak_kb, proc_status_kb(proc.pid, "VmHWM")) / 1024

        seen = post_times(await fake_posts(session, fake))
        row.posts = sum(len(seen.get(seq, ())) for seq in timed)
        want = expected(intake.send_times)
        row.checked_posts = sum(len(seen.get(seq, ())) for seq in want)
        row.checked_expected = sum(want.values())
        if row.checked_posts != row.checked_expected:
            row.notes.append(
                f"posts for the checked webhooks: {row.checked_posts}, expected {row.checked_expected}"
            )
        flood, missing = latencies_ms(seen, intake.send_times, want)
        row.e2e_p50_ms, row.e2e_p99_ms = percentile(flood, 50), percentile(flood, 99)
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
        timed = range(10_000, 10_000 + args.requests)
        return [await drive(session, url, payloads, timed, args.concurrency) for _ in range(CEILING_TRIES)]
