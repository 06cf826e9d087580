"""What is measured: routing+rendering cost in process, percentiles, post latencies, one table row."""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from bench.pipeline.scenarios import Payload
from bot.jira.events import normalise
from bot.jira.models import parse_webhook
from bot.render.posts import RenderOptions, render_once
from bot.routing.matcher import SubscriptionIndex
from bot.routing.model import Subscription

# ------------------------------------------------------------------------------ routing + rendering


@dataclass(frozen=True, slots=True)
class RouteFigures:
    build_ms: float
    parse_mean_us: float
    route_mean_us: float
    route_p99_us: float
    posts_per_event: float


def bench_routing(subs: Sequence[Subscription], payloads: Sequence[Payload], rounds: int) -> RouteFigures:
    """Time parse+normalise apart from match+render per event, in process, over `rounds` passes."""
    started = time.perf_counter()
    index = SubscriptionIndex.build(subs)
    build_ms = (time.perf_counter() - started) * 1000
    options = RenderOptions()
    parse_ns: list[int] = []
    route_ns: list[int] = []
    posts = 0
    clock = time.perf_counter_ns
    for _ in range(rounds):
        for payload in payloads:
            t0 = clock()
            event = normalise(parse_webhook(payload.body))
            t1 = clock()
            if event is None:
                continue
            # As the processor does: the event rendered once, one post per matched channel.
            matched = index.match_targets(event, event.issue.base_url.rstrip("/"))
            rendering = render_once(event, options) if matched else None
            rendered = [rendering.post() for _ in matched] if rendering is not None else []
            t2 = clock()
            parse_ns.append(t1 - t0)
            route_ns.append(t2 - t1)
            posts += len(rendered)
    return RouteFigures(
        build_ms=build_ms,
        parse_mean_us=sum(parse_ns) / len(parse_ns) / 1000,
        route_mean_us=sum(route_ns) / len(route_ns) / 1000,
        route_p99_us=percentile(route_ns, 99) / 1000,
        posts_per_event=posts / len(route_ns),
    )


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return float(ordered[max(0, min(len(ordered) - 1, math.ceil(q / 100 * len(ordered)) - 1))])


# ------------------------------------------------------------------------------------ one run's row


@dataclass
class Row:
    subscriptions: int
    store_s: float = 0.0
    accepted_per_s: float = 0.0
    non_200: int = 0
    bot_cpu_pct: float = 0.0
    e2e_p50_ms: float = math.nan
    e2e_p99_ms: float = math.nan
    paced_p50_ms: float = math.nan
    paced_p99_ms: float = math.nan
    drain_s: float = math.nan
    posts: int = 0  # posts made for the timed webhooks
    checked_posts: int = 0  # of those, for webhooks whose posts are known in advance
    checked_expected: int = 0  # what the subscription index says they should be
    dead: int = 0
    route: RouteFigures | None = None
    idle_rss_mb: float = 0.0
    warm_rss_mb: float = 0.0  # after the warm-up: subscriptions loaded and indexed
    ignored: int = 0
    peak_rss_mb: float = 0.0
    timed_webhooks: int = 0  # webhooks sent in the timed phase
    answer_p50_ms: float = math.nan  # the intake's answer times in the timed phase (wrk only)
    answer_p99_ms: float = math.nan
    sustained_accepted_per_s: float = math.nan  # --sustained: accepted/s over the phase
    sustained_e2e_per_s: float = math.nan  # accepted ÷ (phase + time to process what was left)
    sustained_backlog: int = 0  # unprocessed webhooks at the end of the phase
    sustained_backlog_s: float = math.nan  # the same in seconds of processing
    notes: list[str] = field(default_factory=list)


# ----------------------------------------------------------------------------------- post latencies

Posted = Sequence[tuple[float, str, list[int]]]  # (time saved, channel id, webhook sequence numbers)


def post_times(posts: Posted) -> dict[int, list[float]]:
    seen: dict[int, list[float]] = defaultdict(list)
    for t, _channel, tags in posts:
        for tag in tags:
            seen[tag].append(t)
    return seen


def latencies_ms(
    seen: dict[int, list[float]], sent: dict[int, float], expected: dict[int, int]
) -> tuple[list[float], int]:
    """Per webhook expected to post: from its send time to its last post. Also how many of those
    webhooks are missing posts."""
    values, missing = [], 0
    for seq, at in sent.items():
        want = expected.get(seq, 0)
        if want == 0:
            continue
        got = seen.get(seq, [])
        if len(got) < want:
            missing += 1
            continue
        values.append((max(got) - at) * 1000)
    return values, missing
