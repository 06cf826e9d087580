"""Webhook pipeline benchmark: intake rate, end-to-end latency, routing+rendering cost, memory.

For each subscription count: a fresh database holding that many subscriptions, a fake Mattermost and
the bot, each in a process of its own (so the bot's memory and CPU are its own), then the shared Jira
payloads replayed to the firehose endpoint. The same client then drives a bare aiohttp server that
only parses the JSON: the ceiling the bot's intake is compared with.

    python -m bench.pipeline [--subscriptions 1000,10000] [--requests 5000] [--concurrency 32]
                             [--database sqlite|postgresql] [--profile DIR]

`--profile DIR` samples the bot with py-spy during the timed phase when py-spy is on PATH (or given
with --py-spy), else runs it under cProfile; a summary is printed at the end.

All traffic stays on 127.0.0.1; every child process is stopped on the way out.

The modules: `scenarios` (payloads, subscriptions), `figures` (what is measured), `load` (the client),
`servers` (the child processes), `run` (one run, phase by phase), `profiling`, `report` (the table).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from bench.pipeline.profiling import print_profiles
from bench.pipeline.report import print_report
from bench.pipeline.run import run_bot, run_ceiling
from bench.pipeline.scenarios import PACED_RATE, load_payloads
from bench.pipeline.servers import serve_ceiling, serve_fake_mattermost
from bench.pipeline.wrk import find_wrk

DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
MAX_REQUESTS = 800_000


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.pipeline", description=__doc__.split("\n\n")[0])
    p.add_argument("--subscriptions", default="1000,10000", help="comma-separated subscription counts")
    p.add_argument("--requests", type=int, default=5000, help="webhooks per run (default 5000)")
    p.add_argument("--concurrency", type=int, default=32, help="requests in flight (default 32)")
    p.add_argument(
        "--client",
        default="auto",
        metavar="auto|wrk|python|PATH",
        help="load generator: wrk if on PATH (auto, default), wrk, the Python client, or a wrk executable",
    )
    p.add_argument("--duration", type=float, default=8.0, help="seconds of each wrk burst (default 8)")
    p.add_argument(
        "--sustained",
        type=float,
        default=0.0,
        metavar="S",
        help="also load for S seconds (e.g. 30) and report what processing keeps up with",
    )
    p.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    p.add_argument("--postgres-url", default=DEFAULT_PG_URL, help="server and admin database for postgresql")
    p.add_argument(
        "--pg-setting",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a setting for the benchmark's PostgreSQL database, e.g. plan_cache_mode=force_custom_plan",
    )
    p.add_argument("--paced", type=int, default=100, help=f"light-load webhooks, sent at {PACED_RATE:.0f}/s")
    p.add_argument("--route-rounds", type=int, default=20, help="passes over the payloads in process")
    p.add_argument("--drain-timeout", type=float, default=90.0, help="seconds to wait for posts (per phase)")
    p.add_argument(
        "--profile", metavar="DIR", help="profile the bot (py-spy if found, else cProfile) into DIR"
    )
    p.add_argument("--py-spy", default=shutil.which("py-spy"), help="py-spy executable (default: from PATH)")
    p.add_argument("--serve-fake-mattermost", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--serve-ceiling", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    try:
        args.counts = [int(c) for c in args.subscriptions.split(",") if c.strip()]
    except ValueError:
        p.error("--subscriptions takes comma-separated integers, e.g. 1000,10000")
    if not args.counts or min(args.counts) < 1 or args.requests < 1 or args.concurrency < 1:
        p.error("subscription counts, --requests and --concurrency must be positive")
    # The timed and light-load phases number their webhooks from 10,000 and 900,000.
    if args.requests > MAX_REQUESTS or not 0 <= args.paced <= 10_000:
        p.error(f"--requests takes at most {MAX_REQUESTS:,}, --paced at most 10,000")
    settings = []
    for item in args.pg_setting:
        key, sep, value = item.partition("=")
        if not sep or not re.fullmatch(r"[a-z_][a-z0-9_.]*", key):
            p.error(f"--pg-setting takes NAME=VALUE, got {item!r}")
        settings.append((key, value))
    args.pg_setting = settings
    args.wrk = find_wrk(args.client)
    if args.duration <= 0 or args.sustained < 0:
        p.error("--duration must be positive and --sustained not negative")
    if args.profile:
        args.profile = Path(args.profile).resolve()
        args.profile.mkdir(parents=True, exist_ok=True)
    return args


async def main_async(args: argparse.Namespace) -> None:
    started = time.perf_counter()
    # SIGTERM unwinds like Ctrl-C, so the child processes are stopped too.
    main_task = asyncio.current_task()
    if main_task is not None:
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main_task.cancel)
    payloads = load_payloads()
    workdir = Path(tempfile.mkdtemp(prefix="bench-pipeline-"))
    try:
        load = f"wrk, {args.duration:g} s" if args.wrk else f"Python client, {args.requests} requests"
        print(f"ceiling: bare aiohttp + json.loads, {load} ...", flush=True)
        tries = await run_ceiling(args, payloads, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    rows = []
    for count in args.counts:
        print(f"bot: {count:,} subscriptions on {args.database} ...", flush=True)
        rows.append(await run_bot(count, args, payloads))
    print_report(rows, tries, args, time.perf_counter() - started)
    if args.profile:
        print_profiles(args, rows)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.serve_fake_mattermost:
        serve_fake_mattermost()
    elif args.serve_ceiling:
        serve_ceiling(args.serve_ceiling)
    else:
        asyncio.run(main_async(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
