"""Webhook pipeline benchmark: intake rate, end-to-end latency, routing+rendering cost, memory.

For each subscription count: a fresh database holding that many subscriptions, a fake Mattermost and
the bot, each in a process of its own (so the bot's memory and CPU are its own), then the shared Jira
payloads replayed to the firehose endpoint. The same client then drives a bare aiohttp server that
only parses the JSON: the ceiling the bot's intake is compared with.

    python -m bench.bench_pipeline [--subscriptions 1000,10000] [--requests 5000] [--concurrency 32]
                                   [--database sqlite|postgresql] [--profile DIR]

`--profile DIR` samples the bot with py-spy during the timed phase when py-spy is on PATH (or given
with --py-spy), else runs it under cProfile; a summary is printed at the end.

All traffic stays on 127.0.0.1; every child process is stopped on the way out.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import random
import re
import shutil
import signal
import socket
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import sqlalchemy as sa
from aiohttp import web

from bot.jira.events import EVENT_UPDATED_ANY, STANDARD_KINDS, IssueEvent, normalise
from bot.jira.models import WebhookParseError, parse_webhook
from bot.render.posts import RenderOptions, render_event
from bot.routing.matcher import SubscriptionIndex
from bot.routing.model import FieldFilter, Inclusion, Subscription, SubscriptionFilters
from bot.store.db import Database
from bot.store.schema import subscriptions as subscriptions_table
from bot.store.sql import _subscription_row

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT.parent / "shared" / "fixtures" / "jira-webhooks"
FIREHOSE = "/plugins/jira/api/v2/webhook"
SECRET = "bench-secret"
DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
TEAM = "bench"
CHANNELS = 8
# Subscriptions that reach the payloads' projects post to these first channels only, so one event
# makes at most this many posts (a busy project followed by a handful of channels).
MATCHING_CHANNELS = 4
PROJECTS = 500
# Each replayed webhook gets its own issue key, <project>-<TAG_BASE + sequence number>: the posts
# name it, which ties every post to the request that caused it.
TAG_BASE = 7_000_000
PLACEHOLDER = b"__BENCH_SEQ__"
TAG_RE = re.compile(r"\b[A-Z][A-Z0-9_]*-(7\d{6})\b")
PACED_RATE = 25.0  # webhooks/s of the light-load phase
REQUEST_TIMEOUT = 30.0
CEILING_TRIES = 3
MAX_REQUESTS = 800_000
START_TIMEOUT = 30.0
# Delivery ids differ between runs, so a reused database would not take replays for duplicates.
RUN_ID = uuid.uuid4().hex[:8]


# ------------------------------------------------------------------------------------------ payloads


@dataclass(frozen=True, slots=True)
class Payload:
    name: str
    body: bytes  # the captured webhook
    template: bytes  # the same with PLACEHOLDER for the issue key's number
    event: IssueEvent | None  # the normalised event; None: nothing to post

    @property
    def instance(self) -> str:
        return self.event.issue.base_url.rstrip("/") if self.event else ""

    @property
    def deterministic(self) -> bool:
        """Whether its posts follow from the payload alone. Cloud's standalone comment events lack
        the security level, which the bot fills in from the issue's last complete webhook: their
        posts depend on what arrived before, so they stay out of the exact post count."""
        return self.event is not None and not self.event.issue.fields_partial

    @property
    def project(self) -> str:
        if self.event is None:
            return ""
        return (self.event.issue.project.name or self.event.issue.key.rpartition("-")[0]).upper()

    def tagged(self, seq: int) -> bytes:
        return self.template.replace(PLACEHOLDER, str(TAG_BASE + seq).encode())


def load_payloads(folder: Path = FIXTURES) -> list[Payload]:
    if not folder.is_dir():
        raise SystemExit(
            f"bench_pipeline: the shared Jira webhook payloads are missing: {folder} does not exist "
            "(expected at ../shared/fixtures/jira-webhooks/ from the repository root)"
        )
    payloads = []
    for path in sorted(folder.glob("*.json")):
        body = path.read_bytes()
        doc = json.loads(body)
        issue = doc.get("issue") if isinstance(doc, dict) else None
        template = body
        if isinstance(issue, dict) and isinstance(issue.get("key"), str):
            prefix = issue["key"].rpartition("-")[0] or "BENCH"
            issue["key"] = f"{prefix}-{PLACEHOLDER.decode()}"
            template = json.dumps(doc).encode()
        try:
            event = normalise(parse_webhook(body))
        except WebhookParseError:
            event = None
        payloads.append(Payload(path.name, body, template, event))
    if not payloads:
        raise SystemExit(f"bench_pipeline: no *.json payloads in {folder}")
    return payloads


# ------------------------------------------------------------------------------------ subscriptions

_ISSUE_TYPES = ("Story", "Task", "Bug", "Improvement", "Epic", "10001", "10002", "10004")
_FIELD_FILTERS = (
    FieldFilter(key="priority", inclusion=Inclusion.INCLUDE_ANY, values=("High", "Highest", "Medium")),
    FieldFilter(key="labels", inclusion=Inclusion.EXCLUDE_ANY, values=("wontfix", "spam")),
    FieldFilter(key="fixVersions", inclusion=Inclusion.INCLUDE_OR_EMPTY, values=("10000", "v2.0")),
    FieldFilter(key="components", inclusion=Inclusion.INCLUDE_ANY, values=("Backend", "10100")),
    FieldFilter(key="customfield_10072", inclusion=Inclusion.INCLUDE_ALL, values=("v",)),
    FieldFilter(key="status", inclusion=Inclusion.EXCLUDE_ANY, values=("Done",)),
)
_SECURITY_FILTER = FieldFilter(key="security", inclusion=Inclusion.INCLUDE_ANY, values=("10001",))
_OTHER_INSTANCES = ("https://acme.atlassian.net", "https://jira.example.com", "https://tracker.example.org")


def _filters(rng: random.Random, projects: Iterable[str]) -> SubscriptionFilters:
    kinds = sorted(STANDARD_KINDS)
    roll = rng.random()
    if roll < 0.25:
        events = {EVENT_UPDATED_ANY, "event_created"}
    elif roll < 0.40:
        events = {"event_created", "event_deleted", "event_updated_resolved", "event_updated_reopened"}
    else:
        events = set(rng.sample(kinds, rng.randint(2, 8)))
    if rng.random() < 0.05:
        events.add("event_updated_customfield_10072")
    issue_types: tuple[str, ...] = ()
    if rng.random() < 0.4:
        issue_types = tuple(rng.sample(_ISSUE_TYPES, rng.randint(1, 3)))
    fields: list[FieldFilter] = []
    if rng.random() < 0.3:
        fields.extend(rng.sample(_FIELD_FILTERS, rng.randint(1, 2)))
    if rng.random() < 0.05:
        fields.append(_SECURITY_FILTER)
    return SubscriptionFilters(
        events=frozenset(events),
        projects=frozenset(projects),
        issue_types=frozenset(issue_types),
        fields=tuple(fields),
    )


def make_subscriptions(
    count: int, channel_ids: Sequence[str], payloads: Sequence[Payload], seed: int = 1
) -> list[Subscription]:
    """`count` subscriptions over ~PROJECTS projects and all channels; the first few per payload
    project (max(3, count // PROJECTS) each) are on that project and instance, so they can match."""
    rng = random.Random(seed)
    targets = sorted({(p.instance, p.project) for p in payloads if p.event is not None})
    synthetic = [f"P{i:03d}" for i in range(PROJECTS - len({t[1] for t in targets}))]
    instances = sorted({t[0] for t in targets} | set(_OTHER_INSTANCES))
    per_target = max(3, count // PROJECTS)
    matching = min(count, per_target * len(targets))
    subs = []
    for i in range(count):
        if i < matching:
            instance, project = targets[i % len(targets)]
            projects = {project, *rng.sample(synthetic, rng.randint(0, 2))}
            channel = rng.choice(channel_ids[:MATCHING_CHANNELS])
        else:
            instance = rng.choice(instances)
            projects = set(rng.sample(synthetic, rng.randint(1, 3)))
            channel = rng.choice(channel_ids)
        subs.append(
            Subscription(
                id=f"bench-{i:06d}",
                name=f"sub {i:06d}",
                channel_id=channel,
                instance_id=instance,
                filters=_filters(rng, projects),
                created_by="bench",
            )
        )
    return subs


async def store_subscriptions(db: Database, subs: Sequence[Subscription]) -> float:
    """Insert all subscriptions in one transaction (one upsert per row would take ~10 s for
    10,000 on SQLite); returns the seconds taken. The rows are the store's own row format, and
    one is read back through the repository to prove it."""
    started = time.perf_counter()
    now = datetime.now(UTC)
    rows = [_subscription_row(s, "db", now) for s in subs]
    async with db.engine.begin() as conn:
        for start in range(0, len(rows), 1000):
            await conn.execute(sa.insert(subscriptions_table), rows[start : start + 1000])
    stored = await db.subscriptions.count()
    if stored != len(subs) or (subs and await db.subscriptions.get(subs[-1].id) != subs[-1]):
        raise SystemExit(f"bench_pipeline: stored {stored} subscriptions, meant {len(subs)}")
    return time.perf_counter() - started


def expected_posts(index: SubscriptionIndex, payload: Payload) -> int | None:
    """How many posts the bot should make for one webhook, as its processor plans them; None
    when that depends on earlier webhooks (see Payload.deterministic)."""
    event = payload.event
    if event is None:
        return 0
    if not payload.deterministic:
        return None
    if render_event(event) is None:
        return 0
    return len(index.match(event, payload.instance))


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
            # As the processor does: one render per matched channel.
            matched = index.match(event, event.issue.base_url.rstrip("/"))
            rendered = [render_event(event, options) for _ in matched]
            t2 = clock()
            parse_ns.append(t1 - t0)
            route_ns.append(t2 - t1)
            posts += sum(r is not None for r in rendered)
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


# ---------------------------------------------------------------------------------- child processes


def quote_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.asynccontextmanager
async def child(
    args: Sequence[str], *, log: Path, env: dict[str, str] | None = None, pipe_stdout: bool = False
) -> AsyncIterator[asyncio.subprocess.Process]:
    """A child process, always stopped on exit: SIGTERM, then SIGKILL after 20 s."""
    with log.open("ab") as out:
        proc = await asyncio.create_subprocess_exec(
            *args,
            cwd=ROOT,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE if pipe_stdout else out,
            stderr=out,
        )
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 20)
            except TimeoutError:
                proc.kill()
                await proc.wait()


async def wait_http(url: str, proc: asyncio.subprocess.Process, log: Path) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + START_TIMEOUT
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as s:
        while True:
            if proc.returncode is not None:
                raise SystemExit(f"bench_pipeline: {url} exited early:\n{tail(log)}")
            try:
                async with s.get(url) as r:
                    if r.status == 200:
                        return
            except (aiohttp.ClientError, TimeoutError):
                pass
            if loop.time() > deadline:
                raise SystemExit(
                    f"bench_pipeline: {url} did not answer in {START_TIMEOUT:.0f} s:\n{tail(log)}"
                )
            await asyncio.sleep(0.1)


def tail(log: Path, chars: int = 3000) -> str:
    try:
        return log.read_text(errors="replace")[-chars:]
    except OSError:
        return ""


def proc_status_kb(pid: int, key: str) -> int:
    """VmRSS / VmHWM of a process, in kB (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def proc_cpu_seconds(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    # utime and stime are fields 14 and 15 of stat, 12 and 13 after the command name.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class RssSampler:
    """Samples a process's VmRSS every 100 ms, so the peak during each phase is known."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak_kb = 0
        self._task: asyncio.Task[None] | None = None

    def __enter__(self) -> RssSampler:
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    def __exit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()

    async def _run(self) -> None:
        while True:
            self.peak_kb = max(self.peak_kb, proc_status_kb(self.pid, "VmRSS"))
            await asyncio.sleep(0.1)


# ---------------------------------------------------------------------------- fake Mattermost child


def serve_fake_mattermost() -> None:
    """Child process: the test suite's fake Mattermost, recording when each post is saved and
    which replayed webhooks (issue key tags) it names; /bench/posts lists them."""
    from tests.fakes import FakeMattermost

    class RecordingMattermost(FakeMattermost):
        def __post_init__(self) -> None:
            super().__post_init__()
            self.saved: list[tuple[float, str, list[int]]] = []

        def _save_post(self, user: dict[str, Any], channel: dict[str, Any], body: dict[str, Any]) -> Any:
            post = super()._save_post(user, channel, body)
            text = post["message"] + json.dumps(post["props"])
            tags = sorted({int(m) - TAG_BASE for m in TAG_RE.findall(text)})
            self.saved.append((time.time(), post["channel_id"], tags))
            return post

        def app(self) -> web.Application:
            app = super().app()

            async def posts(request: web.Request) -> web.Response:
                since = int(request.query.get("since", "0"))
                return web.json_response({"count": len(self.saved), "posts": self.saved[since:]})

            async def count(request: web.Request) -> web.Response:
                return web.json_response({"count": len(self.saved)})

            app.router.add_get("/bench/posts", posts)
            app.router.add_get("/bench/count", count)
            return app

    async def run() -> None:
        fake = RecordingMattermost()
        channels = [fake.add_channel(TEAM, f"jira-{i}") for i in range(CHANNELS)]
        url = await fake.start(host="127.0.0.1")
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        print(json.dumps({"url": url, "token": fake.token, "channels": channels}), flush=True)
        await stop.wait()
        await fake.stop()

    asyncio.run(run())


@dataclass(frozen=True, slots=True)
class FakeInfo:
    url: str
    token: str
    channels: list[str]


@contextlib.asynccontextmanager
async def fake_mattermost(workdir: Path) -> AsyncIterator[FakeInfo]:
    log = workdir / "fake-mattermost.log"
    args = [sys.executable, "-m", "bench.bench_pipeline", "--serve-fake-mattermost"]
    async with child(args, log=log, pipe_stdout=True) as proc:
        assert proc.stdout is not None
        try:
            line = await asyncio.wait_for(proc.stdout.readline(), START_TIMEOUT)
            info = json.loads(line)
        except (TimeoutError, ValueError):
            raise SystemExit(f"bench_pipeline: the fake Mattermost did not start:\n{tail(log)}") from None
        yield FakeInfo(info["url"], info["token"], info["channels"])


async def fake_posts(session: aiohttp.ClientSession, fake: FakeInfo) -> list[tuple[float, str, list[int]]]:
    posts: list[tuple[float, str, list[int]]] = []
    while True:
        async with session.get(
            f"{fake.url}/bench/posts",
            params={"since": str(len(posts))},
            headers={"Authorization": f"Bearer {fake.token}"},
        ) as r:
            data = await r.json()
        posts.extend((float(t), str(c), list(tags)) for t, c, tags in data["posts"])
        if len(posts) >= data["count"] or not data["posts"]:
            return posts


# ------------------------------------------------------------------------------------ ceiling child


def serve_ceiling(port: int) -> None:
    """Child process: the least a webhook endpoint can do (read the body, parse the JSON, answer)."""

    async def webhook(request: web.Request) -> web.Response:
        json.loads(await request.read())
        return web.Response(body=b'{"status": "accepted"}', content_type="application/json")

    async def healthz(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application(client_max_size=1_048_576)
    app.router.add_post(FIREHOSE, webhook)
    app.router.add_get("/healthz", healthz)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


# ----------------------------------------------------------------------------------------- client


@dataclass
class Drive:
    wall: float = 0.0
    statuses: Counter[int] = field(default_factory=Counter)
    errors: int = 0
    ignored: int = 0  # 200 answers saying the webhook carries nothing to post
    send_times: dict[int, float] = field(default_factory=dict)  # seq -> time.time() at send
    client_cpu: float = 0.0  # seconds of this process's CPU during the drive

    @property
    def ok(self) -> int:
        return self.statuses.get(200, 0)

    @property
    def rate(self) -> float:
        return self.ok / self.wall if self.wall > 0 else 0.0


def new_session(concurrency: int) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=concurrency, limit_per_host=concurrency),
        timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT),
    )


async def _send(
    session: aiohttp.ClientSession, url: str, payloads: Sequence[Payload], seq: int, run: Drive
) -> None:
    body = payloads[seq % len(payloads)].tagged(seq)
    headers = {"Content-Type": "application/json", "X-Atlassian-Webhook-Identifier": f"bench-{RUN_ID}-{seq}"}
    run.send_times[seq] = time.time()
    try:
        async with session.post(url, data=body, headers=headers) as r:
            answer = await r.read()
            run.statuses[r.status] += 1
            if b'"ignored"' in answer:
                run.ignored += 1
    except (aiohttp.ClientError, TimeoutError):
        run.errors += 1


async def drive(
    session: aiohttp.ClientSession,
    url: str,
    payloads: Sequence[Payload],
    seqs: Sequence[int],
    concurrency: int,
) -> Drive:
    """Send one webhook per sequence number, `concurrency` at a time."""
    run = Drive()
    pending = iter(seqs)

    async def worker() -> None:
        for seq in pending:  # one iterator shared by all workers: each seq is sent once
            await _send(session, url, payloads, seq, run)

    cpu0 = time.process_time()
    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    run.wall = time.perf_counter() - started
    run.client_cpu = time.process_time() - cpu0
    return run


async def drive_paced(
    session: aiohttp.ClientSession, url: str, payloads: Sequence[Payload], seqs: Sequence[int], rate: float
) -> Drive:
    """Send at a steady `rate` per second, without waiting for answers (light load)."""
    run = Drive()
    loop = asyncio.get_running_loop()
    started = loop.time()
    tasks = []
    for i, seq in enumerate(seqs):
        await asyncio.sleep(max(0.0, started + i / rate - loop.time()))
        tasks.append(asyncio.create_task(_send(session, url, payloads, seq, run)))
    await asyncio.gather(*tasks)
    run.wall = loop.time() - started
    return run


# ------------------------------------------------------------------------------------ one bot run


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
    notes: list[str] = field(default_factory=list)


async def wait_drained(db: Database, timeout: float) -> float | None:  # noqa: ASYNC109
    """Seconds until nothing is left to process or deliver; None when `timeout` passed first."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    while await db.deliveries.backlog() > 0:
        if loop.time() - started > timeout:
            return None
        await asyncio.sleep(0.05)
    return loop.time() - started


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


@contextlib.asynccontextmanager
async def fresh_database(
    kind: str, workdir: Path, pg_url: str, pg_settings: Sequence[tuple[str, str]] = ()
) -> AsyncIterator[str]:
    """A new empty database; PostgreSQL: one of its own, with `pg_settings` as its defaults, dropped after."""
    if kind == "sqlite":
        yield f"sqlite:///{workdir / 'bot.db'}"
        return
    import asyncpg

    name = f"bench_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(pg_url.replace("postgresql://", "postgres://", 1), timeout=5)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        for key, value in pg_settings:
            await admin.execute(f'ALTER DATABASE "{name}" SET {key} = {quote_literal(value)}')
        try:
            yield pg_url.rsplit("/", 1)[0] + "/" + name
        finally:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


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
    command = [sys.executable, "-m", "bench.bench_pipeline", "--serve-ceiling", str(port)]
    base = f"http://127.0.0.1:{port}"
    async with child(command, log=log) as proc, new_session(args.concurrency) as session:
        await wait_http(base + "/healthz", proc, log)
        url = f"{base}{FIREHOSE}?secret={SECRET}"
        await drive(session, url, payloads, range(2 * len(payloads)), args.concurrency)
        timed = range(10_000, 10_000 + args.requests)
        return [await drive(session, url, payloads, timed, args.concurrency) for _ in range(CEILING_TRIES)]


# ------------------------------------------------------------------------------------------ report


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
    print(
        f"load: {args.requests} webhooks, concurrency {args.concurrency}, {args.paced} more at "
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
                f"{100 * r.accepted_per_s / ceiling.rate:.0f}%" if ceiling.rate else "n/a",
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
            f"{r.ignored} of the HTTP 200 answers said 'ignored' (nothing to post)"
        )
        for note in r.notes:
            print(f"  note: {note}")
    print(f"total {elapsed:.0f} s")


def profile_path(args: argparse.Namespace, count: int, suffix: str) -> Path:
    return Path(args.profile) / f"bot-{args.database}-{count}{suffix}"


@contextlib.asynccontextmanager
async def sampled(
    args: argparse.Namespace, pid: int, count: int, phase: str, workdir: Path
) -> AsyncIterator[None]:
    """With --profile and py-spy: sample the bot (all its threads) for the duration of the block."""
    if not (args.profile and args.py_spy):
        yield
        return
    out = profile_path(args, count, f".{phase}.pyspy.txt")
    command = [args.py_spy, "record", "--pid", str(pid), "--rate", "200", "--format", "raw", "-o", str(out)]
    async with child(command, log=workdir / "py-spy.log") as spy:
        await asyncio.sleep(0.5)  # attached before the load starts
        try:
            yield
        finally:
            # py-spy writes its file on SIGINT (as on Ctrl-C).
            if spy.returncode is None:
                spy.send_signal(signal.SIGINT)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(spy.wait(), 20)


def summarise_py_spy(path: Path, top: int = 25) -> str:
    """Where the samples are: by pipeline stage, by function (inclusive), by leaf (own time)."""
    stacks: list[tuple[list[str], int]] = []
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            stacks.append((stack.split(";"), int(count)))
    waiting = _waiting_leaves()
    idle = sum(
        n for frames, n in stacks if _short(frames[-1]) in waiting or "EpollSelector.select" in frames[-1]
    )
    stacks = [
        (f, n) for f, n in stacks if _short(f[-1]) not in waiting and "EpollSelector.select" not in f[-1]
    ]
    total = sum(n for _, n in stacks) or 1
    stages: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    for frames, n in stacks:
        joined = ";".join(frames)
        stage = next((name for name, marker in _STAGES if marker in joined), "other (event loop, HTTP)")
        stages[stage] += n
        for name in {re.sub(r":\d+\)$", ")", f) for f in frames}:
            inclusive[name] += n
        leaves[re.sub(r":\d+\)$", ")", frames[-1])] += n

    def block(title: str, counts: Counter[str], keep: int, only_bot: bool = False) -> list[str]:
        picked = [(k, v) for k, v in counts.most_common() if not only_bot or _is_bot_work(k)]
        rows = picked[:keep]
        return [title] + [f"  {100 * v / total:5.1f}%  {_short(k)}" for k, v in rows]

    lines = [
        f"{total} busy samples at 200/s per thread ({idle} more waiting in epoll or for SQL work, left out)"
    ]
    lines += block("by stage:", stages, len(stages))
    lines += block("bot functions, inclusive:", inclusive, top, only_bot=True)
    lines += block("leaf functions (own time):", leaves, top)
    return "\n".join(lines)


# Checked in order: the first marker found in a stack names its stage.
_STAGES = (
    ("webhook intake (HTTP handler)", "bot/web/jira_webhook.py"),
    ("event processor", "bot/pipeline/processor.py"),
    ("delivery worker", "bot/pipeline/delivery.py"),
    ("SQLite driver thread (aiosqlite)", "aiosqlite/core.py"),
    ("PostgreSQL driver (asyncpg)", "asyncpg/"),
)


def _waiting_leaves() -> set[str]:
    """Leaf frames that are a thread waiting, which py-spy reports as busy: aiosqlite's worker
    thread blocked on its queue (the line of its `tx.get()`)."""
    try:
        import inspect

        import aiosqlite.core

        lines, first = inspect.getsourcelines(aiosqlite.core._connection_worker_thread)
    except (ImportError, AttributeError, OSError, TypeError):
        return set()
    return {
        f"_connection_worker_thread (aiosqlite/core.py:{first + i})"
        for i, line in enumerate(lines)
        if "tx.get()" in line
    }


def _is_bot_work(frame: str) -> bool:
    """A frame of the bot's own code, other than the entry point every stack starts with."""
    return re.search(r"\((?:.*/)?bot/", frame) is not None and "bot/__main__.py" not in frame


def _short(frame: str) -> str:
    """`name (path)` with the path cut to the package: `accept (bot/pipeline/intake.py)`."""
    return re.sub(r"\(/\S*?/((?:site-packages|lib/python3\.\d+|work/main)/)", "(", frame)


def print_profiles(args: argparse.Namespace, rows: Sequence[Row]) -> None:
    import pstats

    for r in rows:
        for phase in ("intake", "drain"):
            spy = profile_path(args, r.subscriptions, f".{phase}.pyspy.txt")
            if spy.exists():
                print(f"\nbot profile (py-spy), {phase} phase, {r.subscriptions:,} subscriptions: {spy}")
                print(summarise_py_spy(spy))
        prof = profile_path(args, r.subscriptions, ".prof")
        if not args.py_spy and prof.exists():
            print(f"\nbot profile (cProfile, whole run), {r.subscriptions:,} subscriptions: {prof}")
            pstats.Stats(str(prof), stream=sys.stdout).sort_stats("tottime").print_stats(25)


# -------------------------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.bench_pipeline", description=__doc__.split("\n\n")[0])
    p.add_argument("--subscriptions", default="1000,10000", help="comma-separated subscription counts")
    p.add_argument("--requests", type=int, default=5000, help="webhooks per run (default 5000)")
    p.add_argument("--concurrency", type=int, default=32, help="requests in flight (default 32)")
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
        print(f"ceiling: bare aiohttp + json.loads, {args.requests} requests ...", flush=True)
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
