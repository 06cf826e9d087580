"""The printed report: machine and load lines, the table, and a line of notes per subscription count."""

from __future__ import annotations

import argparse
import math
import os
import platform
from collections.abc import Sequence

import aiohttp

from bench.pipeline.figures import Row
from bench.pipeline.load import Drive
from bench.pipeline.scenarios import PACED_RATE


def _fmt(value: float, digits: int = 0) -> str:
    return "n/a" if math.isnan(value) else f"{value:,.{digits}f}"


def print_report(
    rows: Sequence[Row], tries: Sequence[Drive], args: argparse.Namespace, elapsed: float
) -> None:
    ceiling = max(tries, key=lambda d: d.rate)
    print()
    print(
        f"machine: {os.cpu_count()} CPUs, Python {platform.python_version()} ({platform.machine()}), "
        f"aiohttp {aiohttp.__version__}; database: {args.database}"
        + "".join(f", {k}={v}" for k, v in args.pg_setting)
    )
    wrk, python = f"wrk (1 thread, {args.duration:g} s)", f"Python client, {args.requests} webhooks"
    timed = wrk if args.wrk else python
    print(
        f"load: {timed}, concurrency {args.concurrency}, {args.paced} more at "
        f"{PACED_RATE:.0f}/s for the light-load latency; ceiling: best of "
        f"{', '.join(_fmt(t.rate) for t in tries)} req/s "
        f"(client CPU {100 * ceiling.client_cpu / ceiling.wall:.0f}%)"
    )
    header = (
        "subs",
        "accepted/s",
        "ceiling/s",
        "ratio",
        "bot CPU",
        "e2e p50 ms",
        "e2e p99 ms",
        "light p50 ms",
        "light p99 ms",
        "drain s",
        "posts",
        "route+render µs mean/p99",
        "parse µs",
        "RSS MB idle/warm/peak",
    )
    lines = [header]
    for r in rows:
        route = r.route
        lines.append(
            (
                f"{r.subscriptions:,}",
                _fmt(r.accepted_per_s),
                _fmt(ceiling.rate),
                f"{r.accepted_per_s / ceiling.rate:.2f}" if ceiling.rate else "n/a",
                f"{r.bot_cpu_pct:.0f}%",
                _fmt(r.e2e_p50_ms),
                _fmt(r.e2e_p99_ms),
                _fmt(r.paced_p50_ms, 1),
                _fmt(r.paced_p99_ms, 1),
                _fmt(r.drain_s, 1),
                f"{r.posts:,}",
                f"{route.route_mean_us:.0f}/{route.route_p99_us:.0f}" if route else "n/a",
                f"{route.parse_mean_us:.0f}" if route else "n/a",
                f"{r.idle_rss_mb:.0f}/{r.warm_rss_mb:.0f}/{r.peak_rss_mb:.0f}",
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    for i, line in enumerate(lines):
        print("  ".join(cell.rjust(w) for cell, w in zip(line, widths, strict=True)))
        if i == 0:
            print("  ".join("-" * w for w in widths))
    for r in rows:
        route = r.route
        extra = (
            f"index build {route.build_ms:.0f} ms, {route.posts_per_event:.2f} posts/event" if route else ""
        )
        print(
            f"{r.subscriptions:,} subscriptions: stored in {r.store_s:.1f} s, {extra}; "
            + (
                f"{r.timed_webhooks:,} timed webhooks, answered in {_fmt(r.answer_p50_ms, 1)} ms p50 / "
                f"{_fmt(r.answer_p99_ms, 1)} ms p99"
                if args.wrk
                else f"{r.ignored} of the HTTP 200 answers said 'ignored' (nothing to post)"
            )
        )
        for note in r.notes:
            print(f"  note: {note}")
    if args.sustained:
        _print_sustained(rows, ceiling.rate, args)
    print(f"total {elapsed:.0f} s")


def _print_sustained(rows: Sequence[Row], ceiling: float, args: argparse.Namespace) -> None:
    """The --sustained phase: end-to-end = accepted, routed, rendered and stored for delivery."""
    print()
    print(
        f"sustained: {args.sustained:g} s of load; e2e/s = accepted ÷ (load time + time to process the rest)"
    )
    header = ("subs", "accepted/s", "e2e/s", "e2e ratio", "backlog at end", "backlog s of work", "keeps up")
    lines = [header]
    for r in rows:
        lines.append(
            (
                f"{r.subscriptions:,}",
                _fmt(r.sustained_accepted_per_s),
                _fmt(r.sustained_e2e_per_s),
                f"{r.sustained_e2e_per_s / ceiling:.2f}"
                if ceiling and not math.isnan(r.sustained_e2e_per_s)
                else "n/a",
                f"{r.sustained_backlog:,}",
                _fmt(r.sustained_backlog_s, 1),
                "yes" if r.sustained_backlog_s < 1 else "no",
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    for i, line in enumerate(lines):
        print("  ".join(cell.rjust(w) for cell, w in zip(line, widths, strict=True)))
        if i == 0:
            print("  ".join("-" * w for w in widths))
