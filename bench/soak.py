"""Memory soak: the bot's RSS at 10,000 subscriptions after 100,000 webhooks, then over a long steady load.

    python -m bench.soak [--soak 600] [--events 100000] [--subscriptions 10000] [--rate 50]
                         [--database sqlite|postgresql] [--postgres-url URL] [--client auto|wrk|python]

The bot (`python -m bot serve`) and the fake Mattermost of bench.pipeline run as processes of their
own on a fresh database holding the subscriptions. Phase 1 sends `--events` webhooks (the shared
payloads round-robin, each about an issue of its own, key and id, so every per-issue cache and the
per-issue order see a new issue each time) in bursts, waiting after each until the backlog is
small, so that memory reflects the work done rather than a queue. Phase 2 sends `--rate`
webhooks a second for `--soak` seconds. The bot's VmRSS is sampled every `--sample` seconds
throughout; the report gives RSS after phase 1 against the target (< 150 MB) and the growth over
phase 2 (least-squares slope and end minus start, against a tolerance of TOLERANCE_MB).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from bench.pipeline.load import drive, drive_paced, new_session
from bench.pipeline.run import unprocessed, wait_drained
from bench.pipeline.scenarios import Payload, load_payloads, make_subscriptions, store_subscriptions
from bench.pipeline.servers import (
    FIREHOSE,
    SECRET,
    FakeInfo,
    child,
    fake_mattermost,
    free_port,
    fresh_database,
    proc_status_kb,
    tail,
    wait_http,
)
from bench.pipeline.wrk import drive_wrk, find_wrk
from bot.store.db import Database

DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
TARGET_MB = 150.0
# Growth over the soak below this is noise (allocator arenas, a page cache filling up).
TOLERANCE_MB = 5.0
LOAD_START = 1_000_000  # phase 1 numbers its webhooks from here, phase 2 from SOAK_START
SOAK_START = 2_000_000
BURST_SECONDS = 4.0  # one wrk burst of phase 1
CHUNK = 500  # one Python-client chunk of phase 1
CONCURRENCY = 16


@dataclass
class Samples:
    """(seconds since start, phase, events accepted so far, VmRSS MB)."""

    rows: list[tuple[float, str, int, float]] = field(default_factory=list)
    phase: str = "idle"
    events: int = 0

    def take(self, pid: int, started: float) -> float:
        mb = proc_status_kb(pid, "VmRSS") / 1024
        self.rows.append((time.monotonic() - started, self.phase, self.events, mb))
        return mb


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--soak", type=float, default=600.0, help="seconds of steady load in phase 2 (default 600)"
    )
    p.add_argument("--events", type=int, default=100_000, help="webhooks of phase 1 (default 100,000)")
    p.add_argument("--subscriptions", type=int, default=10_000, help="stored subscriptions (default 10,000)")
    p.add_argument("--rate", type=float, default=50.0, help="webhooks/s during the soak (default 50)")
    p.add_argument("--sample", type=float, default=10.0, help="seconds between RSS samples (default 10)")
    p.add_argument(
        "--max-backlog",
        type=int,
        default=1_000,
        help="phase 1 sends the next burst once fewer webhooks than this wait (default 1,000)",
    )
    p.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    p.add_argument("--postgres-url", default=DEFAULT_PG_URL, help="server and admin database for postgresql")
    p.add_argument("--client", default="auto", metavar="auto|wrk|python|PATH", help="phase 1 load generator")
    p.add_argument("--drain-timeout", type=float, default=600.0, help="seconds to wait for the backlog")
    args = p.parse_args(argv)
    if args.soak < 0 or args.events < 1 or args.subscriptions < 1 or args.rate <= 0 or args.sample <= 0:
        p.error("--events, --subscriptions, --rate and --sample must be positive, --soak not negative")
    args.wrk = find_wrk(args.client)
    return args


async def wait_backlog_below(db: Database, limit: int, timeout: float) -> None:  # noqa: ASYNC109
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while await unprocessed(db) >= limit:
        if loop.time() > deadline:
            raise SystemExit(f"bench.soak: the backlog stayed at {limit} or more for {timeout:.0f} s")
        await asyncio.sleep(0.2)


async def load_phase(
    args: argparse.Namespace,
    session: aiohttp.ClientSession,
    url: str,
    payloads: Sequence[Payload],
    db: Database,
    samples: Samples,
    workdir: Path,
    pid: int,
) -> float:
    """Send `--events` accepted webhooks in bursts; returns the seconds it took."""
    started = time.monotonic()
    seq = LOAD_START
    while samples.events < args.events:
        if args.wrk:
            run = await drive_wrk(args.wrk, url, workdir, payloads, seq, BURST_SECONDS, CONCURRENCY)
            seq += len(run.sent)
        else:
            n = min(CHUNK, args.events - samples.events)
            run = await drive(session, url, payloads, range(seq, seq + n), CONCURRENCY)
            seq += n
        before, samples.events = samples.events, samples.events + run.ok
        if samples.events // 10_000 > before // 10_000:
            rss = proc_status_kb(pid, "VmRSS") / 1024
            print(
                f"  {samples.events:,} webhooks, {time.monotonic() - started:.0f} s, RSS {rss:.1f} MB",
                flush=True,
            )
        await wait_backlog_below(db, args.max_backlog, args.drain_timeout)
    return time.monotonic() - started


def slope_mb_per_10_min(points: Sequence[tuple[float, float]]) -> float:
    """Least-squares slope of RSS over time, in MB per 10 minutes."""
    if len(points) < 2:
        return 0.0
    mean_t = sum(t for t, _ in points) / len(points)
    mean_m = sum(m for _, m in points) / len(points)
    var = sum((t - mean_t) ** 2 for t, _ in points)
    if var == 0:
        return 0.0
    return 600 * sum((t - mean_t) * (m - mean_m) for t, m in points) / var


async def count_posts(session: aiohttp.ClientSession, fake: FakeInfo) -> int:
    headers = {"Authorization": f"Bearer {fake.token}"}
    async with session.get(f"{fake.url}/bench/count", headers=headers) as r:
        return int((await r.json())["count"])


async def run(args: argparse.Namespace) -> int:
    payloads = load_payloads()
    workdir = Path(tempfile.mkdtemp(prefix="bench-soak-"))
    try:
        async with (
            fake_mattermost(workdir) as fake,
            fresh_database(args.database, workdir, args.postgres_url) as db_url,
        ):
            db = await Database.open(db_url)
            try:
                subs = make_subscriptions(args.subscriptions, fake.channels, payloads)
                await store_subscriptions(db, subs)
                return await soak_bot(args, payloads, fake, db, db_url, workdir)
            finally:
                await db.close()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


async def soak_bot(
    args: argparse.Namespace,
    payloads: Sequence[Payload],
    fake: FakeInfo,
    db: Database,
    db_url: str,
    workdir: Path,
) -> int:
    port = free_port()
    env = {
        **os.environ,
        "PORT": str(port),
        "HOST": "127.0.0.1",
        "DATA_DIR": str(workdir / "data"),
        "DATABASE_URL": db_url,
        "MATTERMOST_URL": fake.url,
        "MATTERMOST_BOT_TOKEN": fake.token,
        "JIRA_WEBHOOK_SECRET": SECRET,
        "LOG_LEVEL": "WARNING",
    }
    log = workdir / "bot.log"
    base = f"http://127.0.0.1:{port}"
    url = f"{base}{FIREHOSE}?secret={SECRET}"
    samples = Samples()
    started = time.monotonic()
    async with (
        child([sys.executable, "-m", "bot", "serve"], log=log, env=env) as proc,
        new_session(CONCURRENCY) as session,
    ):
        await wait_http(base + "/healthz", proc, log)
        await asyncio.sleep(1.0)
        idle = samples.take(proc.pid, started)

        async def sampler() -> None:
            while True:
                await asyncio.sleep(args.sample)
                samples.take(proc.pid, started)

        sampling = asyncio.create_task(sampler())
        try:
            samples.phase = "load"
            load_s = await load_phase(args, session, url, payloads, db, samples, workdir, proc.pid)
            drained = await wait_drained(db, args.drain_timeout)
            after_load = samples.take(proc.pid, started)
            posts_after_load = await count_posts(session, fake)
            print(
                f"phase 1: {samples.events:,} webhooks accepted in {load_s:.0f} s "
                f"({samples.events / load_s:,.0f}/s with the backlog kept under {args.max_backlog:,}), "
                f"{posts_after_load:,} posts; "
                + ("drained" if drained is not None else f"NOT drained within {args.drain_timeout:.0f} s"),
                flush=True,
            )
            samples.phase = "soak"
            soak_from = len(samples.rows) - 1
            if args.soak:
                n = int(args.soak * args.rate)
                light = await drive_paced(
                    session, url, payloads, range(SOAK_START, SOAK_START + n), args.rate
                )
                samples.events += light.ok
            samples.phase = "end"
            await wait_drained(db, args.drain_timeout)
            end = samples.take(proc.pid, started)
        finally:
            sampling.cancel()
        peak = proc_status_kb(proc.pid, "VmHWM") / 1024
        posts = await count_posts(session, fake)
        counts = await db.deliveries.counts()
        if proc.returncode is not None:
            print(f"bench.soak: the bot exited:\n{tail(log)}")
            return 1

    print(f"\n{'s':>6}  {'phase':<5}  {'webhooks':>9}  {'RSS MB':>7}")
    for t, phase, events, mb in samples.rows:
        print(f"{t:6.0f}  {phase:<5}  {events:9,}  {mb:7.1f}")
    soak_rows = samples.rows[soak_from:]
    points = [(t, mb) for t, _, _, mb in soak_rows]
    slope = slope_mb_per_10_min(points)
    soak_start_mb = soak_rows[0][3]
    growth = end - soak_start_mb
    rss = [mb for _, _, _, mb in soak_rows]
    print(
        f"\nsubscriptions {args.subscriptions:,} on {args.database}; webhooks {samples.events:,}; "
        f"posts {posts:,}; "
        f"deliveries by status {counts}"
    )
    print(
        f"RSS MB: idle {idle:.1f}, after phase 1 {after_load:.1f} (target < {TARGET_MB:.0f}), "
        f"peak (VmHWM) {peak:.1f}"
    )
    if args.soak:
        print(
            f"soak {args.soak:.0f} s at {args.rate:g}/s: RSS {soak_start_mb:.1f} -> {end:.1f} MB "
            f"(min {min(rss):.1f}, max {max(rss):.1f}), growth {growth:+.1f} MB, "
            f"slope {slope:+.2f} MB per 10 min (tolerance {TOLERANCE_MB:g} MB)"
        )
    ok_target = after_load < TARGET_MB
    ok_growth = not args.soak or (growth < TOLERANCE_MB and slope < TOLERANCE_MB)
    print(
        f"target RSS < {TARGET_MB:.0f} MB after phase 1: {'met' if ok_target else 'NOT met'}; "
        f"no growth over the soak: {'met' if ok_growth else 'NOT met'}"
    )
    return 0 if ok_target and ok_growth else 1


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)

    async def main_async() -> int:
        # SIGTERM unwinds like Ctrl-C, so the child processes are stopped too.
        task = asyncio.current_task()
        if task is not None:
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
        return await run(args)

    return asyncio.run(main_async())


if __name__ == "__main__":
    sys.exit(main())
