"""Several serving processes on one PostgreSQL database: separate replicas, or the workers of one serve.

    python -m bench.replicas --database postgresql://postgres@127.0.0.1:5432/test --replicas 1,3
    python -m bench.replicas --database postgresql://postgres@127.0.0.1:5432/test --workers 1,2

For each count N: a fresh database (with `--subscriptions` stored, for the intake phase), the fake
Mattermost of bench.pipeline, and N `python -m bot serve` processes on ports of their own
(`--replicas`) or one `python -m bot serve --workers N` (`--workers`; N = 1 is a plain serve).
Then, on the same processes:

1. Order: `--issues` issues × `--changes` changes sent to the legacy webhook URL, the changes of
   one issue one after another (each acknowledged before the next), issues concurrently, each
   change to another replica than the last (round-robin; with --workers each on a new connection,
   which the kernel gives to a worker). posts/s = posts ÷ (last post − first send); drain s =
   last post − last acknowledgement. Order violations (per issue, a change posted after a later
   one), duplicates and losses are counted from what the fake Mattermost saved.
2. Takeover (N > 1): the same again with new issues, and one replica (worker) killed with SIGKILL
   a third of the way in, at a moment it holds claimed work; takeover s = from the kill until
   everything it held (webhooks and posts) has been posted. Order, duplicates and losses again.
   The killed replica is started again (a worker is restarted by its parent).
3. Intake: wrk for `--duration` s against every replica at once (the connections split between
   them), against the bare aiohttp handler of bench.pipeline (one process; best of 3): accepted/s
   and the ratio. The backlog this leaves is not waited for.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import sqlalchemy as sa

from bench.pipeline.run import run_ceiling
from bench.pipeline.scenarios import (
    CHANNELS,
    ROOT,
    TAG_BASE,
    Payload,
    load_payloads,
    make_subscriptions,
    store_subscriptions,
)
from bench.pipeline.servers import (
    FIREHOSE,
    SECRET,
    TEAM,
    FakeInfo,
    fake_mattermost,
    fake_posts,
    free_port,
    fresh_database,
    proc_cpu_seconds,
    tail,
)
from bench.pipeline.wrk import drive_wrk, find_wrk
from bot.accounts.crypto import generate_key_text
from bot.store.db import Database
from bot.store.schema import deliveries, replicas, webhook_inbox

LEGACY = "/plugins/jira/webhook"
EXAMPLE = json.loads((ROOT / "examples" / "issue-created.json").read_bytes())
# The change number rides in a tag of the summary: SEQ-<TAG_BASE + SEQ_BASE + issue * 100 + change>.
SEQ_BASE = 500_000
START_TIMEOUT = 90.0
SEND_TIMEOUT = 60.0
ALIVE_SECONDS = 3.0  # a replica whose heartbeat is younger counts as alive
WRK_START = 3_000_000  # the intake phase numbers its webhooks from here, each wrk 1,000,000 apart


# ----------------------------------------------------------------------------------------- workload


def change_body(issue: int, n: int) -> bytes:
    doc = json.loads(json.dumps(EXAMPLE))
    doc["issue"]["key"] = f"ORD-{TAG_BASE + issue}"
    doc["issue"]["id"] = str(40_000 + issue)
    doc["issue"]["fields"]["summary"] = f"change SEQ-{TAG_BASE + SEQ_BASE + issue * 100 + n}"
    return json.dumps(doc).encode()


def changes_posted(posts: Sequence[tuple[float, str, list[int]]]) -> dict[int, list[tuple[float, int]]]:
    """issue -> [(time saved, change)] in the order the fake Mattermost saved them."""
    seen: dict[int, list[tuple[float, int]]] = {}
    for saved_at, _channel, tags in posts:
        for tag in tags:
            if tag >= SEQ_BASE:
                issue, n = divmod(tag - SEQ_BASE, 100)
                seen.setdefault(issue, []).append((saved_at, n))
    return seen


@dataclass
class StreamFigures:
    acked: int = 0
    posts: int = 0
    posts_per_s: float = 0.0
    drain_s: float = 0.0
    out_of_order: int = 0
    duplicates: int = 0
    lost: int = 0
    held: tuple[int, int] = (0, 0)  # webhooks, posts the killed process held
    takeover_s: float | None = None


def score(fig: StreamFigures, seen: dict[int, list[tuple[float, int]]], issues: range, changes: int) -> None:
    for issue in issues:
        got = [n for _, n in seen.get(issue, [])]
        fig.lost += len(set(range(changes)) - set(got))
        fig.duplicates += len(got) - len(set(got))
        fig.out_of_order += sum(1 for a, b in itertools.pairwise(got) if b < a)
        fig.posts += len(got)


@dataclass
class Row:
    mode: str
    n: int
    order: StreamFigures = field(default_factory=StreamFigures)
    kill: StreamFigures | None = None
    accepted_per_s: float = 0.0
    bot_cpu_pct: float = 0.0
    pg_cpu_pct: float = 0.0
    machine_pct: float = 0.0
    notes: list[str] = field(default_factory=list)


# -------------------------------------------------------------------------------------- deployment


class Deployment:
    """The serving processes of one row: N replicas, or one serve with N workers."""

    def __init__(self, args: argparse.Namespace, n: int, db_url: str, fake: FakeInfo, workdir: Path) -> None:
        self.args = args
        self.n = n
        self.workers_mode = args.mode == "workers"
        self.workdir = workdir
        self.env = {
            **os.environ,
            "HOST": "127.0.0.1",
            "DATABASE_URL": db_url,
            "MATTERMOST_URL": fake.url,
            "MATTERMOST_BOT_TOKEN": fake.token,
            "JIRA_WEBHOOK_SECRET": SECRET,
            "BOT_ENCRYPTION_KEY": generate_key_text(),
            "LOG_LEVEL": "WARNING",
        }
        count = 1 if self.workers_mode else n
        self.ports = [free_port() for _ in range(count)]
        self.procs: list[asyncio.subprocess.Process | None] = [None] * count

    @property
    def urls(self) -> list[str]:
        return [f"http://127.0.0.1:{p}" for p in self.ports]

    def log(self, i: int) -> Path:
        return self.workdir / f"serve-{i}.log"

    async def start(self, i: int) -> None:
        extra = ["--workers", str(self.n)] if self.workers_mode and self.n > 1 else []
        env = {**self.env, "PORT": str(self.ports[i]), "DATA_DIR": str(self.workdir / f"data-{i}")}
        with self.log(i).open("ab") as out:
            self.procs[i] = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "bot",
                "serve",
                *extra,
                cwd=ROOT,
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=out,
            )

    async def stop(self) -> None:
        for proc in self.procs:
            if proc is not None and proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            if proc is not None:
                try:
                    await asyncio.wait_for(proc.wait(), 40)
                except TimeoutError:
                    proc.kill()
                    await proc.wait()

    def pids(self) -> list[int]:
        """The processes that serve: the replicas, or the parent's workers."""
        if not self.workers_mode or self.n == 1:
            return [p.pid for p in self.procs if p is not None and p.returncode is None]
        parent = self.procs[0]
        return sorted(child_pids(parent.pid)) if parent is not None else []

    async def wait_alive(self, db: Database) -> None:
        """Until N processes have a fresh heartbeat and every URL is ready."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + START_TIMEOUT
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=3)) as s:
            while True:
                for i, proc in enumerate(self.procs):
                    if proc is not None and proc.returncode is not None:
                        raise SystemExit(f"bench.replicas: serve {i} exited:\n{tail(self.log(i))}")
                ready = 0
                for url in self.urls:
                    with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                        async with s.get(url + "/readyz") as r:
                            ready += r.status == 200
                if ready == len(self.urls) and len(await alive_owners(db)) >= self.n:
                    return
                if loop.time() > deadline:
                    logs = "\n".join(tail(self.log(i), 1500) for i in range(len(self.procs)))
                    raise SystemExit(f"bench.replicas: not all up in {START_TIMEOUT:.0f} s:\n{logs}")
                await asyncio.sleep(0.2)


def child_pids(parent: int) -> set[int]:
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", encoding="ascii") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[0] != "Z" and int(fields[1]) == parent:
                found.add(int(entry))
    return found


async def alive_owners(db: Database) -> list[str]:
    async with db.engine.connect() as conn:
        rows = (await conn.execute(sa.select(replicas.c.owner, replicas.c.beat_at))).all()
    now = datetime.now(UTC)
    return [str(owner) for owner, beat in rows if now - beat < timedelta(seconds=ALIVE_SECONDS)]


async def held_by(db: Database, pid: int) -> tuple[list[int], list[int]]:
    """(inbox ids, delivery ids) pending and leased by process `pid` (its owner is host:pid:random)."""
    held = []
    for t in (webhook_inbox, deliveries):
        stmt = sa.select(t.c.id).where(t.c.status == "pending", t.c.lease_owner.like(f"%:{pid}:%"))
        async with db.engine.connect() as conn:
            held.append(sorted(int(r[0]) for r in (await conn.execute(stmt)).all()))
    return held[0], held[1]


async def handed_over(db: Database, inbox_ids: list[int], delivery_ids: list[int]) -> datetime | None:
    """When the last of those posts (and of the posts of those webhooks) was delivered; None while
    one is not."""
    async with db.engine.connect() as conn:
        open_webhooks = await conn.scalar(
            sa.select(sa.func.count())
            .select_from(webhook_inbox)
            .where(webhook_inbox.c.id.in_(inbox_ids or [-1]), webhook_inbox.c.status == "pending")
        )
        rows = (
            await conn.execute(
                sa.select(deliveries.c.delivered_at).where(
                    sa.or_(
                        deliveries.c.id.in_(delivery_ids or [-1]),
                        deliveries.c.inbox_id.in_(inbox_ids or [-1]),
                    )
                )
            )
        ).all()
    times = [r[0] for r in rows]
    if open_webhooks or len(times) < len(delivery_ids) or any(t is None for t in times):
        return None
    return max(times) if times else None


# ------------------------------------------------------------------------------------------- phases


async def send(
    session: aiohttp.ClientSession, urls: Sequence[str], first: int, body: bytes, issue: int, change: int
) -> None:
    """As a load balancer: to `first`, else the next that answers 200 (refused or 503: next).

    Every try carries the change's own `X-Atlassian-Webhook-Identifier`, as Jira's retries do: a
    try that a process stored but died before answering is then not stored a second time by the
    next (one kill -9 run without it had 29 changes posted twice)."""
    params = {"secret": SECRET, "team": TEAM, "channel": f"jira-{issue % CHANNELS}"}
    headers = {"X-Atlassian-Webhook-Identifier": f"bench-replicas-{issue}-{change}"}
    deadline = time.monotonic() + SEND_TIMEOUT
    while time.monotonic() < deadline:
        for k in range(len(urls)):
            url = urls[(first + k) % len(urls)]
            try:
                async with session.post(url + LEGACY, data=body, params=params, headers=headers) as r:
                    if r.status == 200:
                        return
            except (aiohttp.ClientError, TimeoutError):
                continue
        await asyncio.sleep(0.2)
    raise SystemExit(f"bench.replicas: no replica acknowledged a webhook for {SEND_TIMEOUT:.0f} s")


async def stream(
    dep: Deployment, db: Database, fake: FakeInfo, issues: range, changes: int, *, kill: bool
) -> StreamFigures:
    fig = StreamFigures()
    third = asyncio.Event()
    first_send = time.time()
    last_ack = 0.0
    victim_pid: int | None = None
    killed_at: datetime | None = None
    held: tuple[list[int], list[int]] = ([], [])
    # A new connection per request: with --workers, each goes to the worker the kernel picks.
    connector = aiohttp.TCPConnector(limit=len(issues), force_close=True)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as session:

        async def one_issue(issue: int) -> None:
            nonlocal last_ack
            for n in range(changes):
                await send(session, dep.urls, issue + n, change_body(issue, n), issue, n)
                fig.acked += 1
                last_ack = time.time()
                if fig.acked >= len(issues) * changes // 3:
                    third.set()

        async def kill_one() -> None:
            nonlocal victim_pid, killed_at, held
            await third.wait()
            victim_pid = dep.pids()[0]
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 10
            while not any(held) and loop.time() < deadline:
                held = await held_by(db, victim_pid)
            os.kill(victim_pid, signal.SIGKILL)
            killed_at = datetime.now(UTC)

        tasks = [one_issue(i) for i in issues]
        await asyncio.gather(*tasks, *([kill_one()] if kill else []))

    if kill and victim_pid is not None and killed_at is not None:
        await asyncio.sleep(0.2)
        held = await held_by(db, victim_pid)  # what it held when it died
        fig.held = (len(held[0]), len(held[1]))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 60
        while loop.time() < deadline:
            last = await handed_over(db, *held)
            if last is not None:
                fig.takeover_s = max(0.0, (last - killed_at).total_seconds())
                break
            await asyncio.sleep(0.1)
    # Every post, then a moment for any duplicate to show.
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 120
    async with aiohttp.ClientSession() as s:
        while True:
            seen = changes_posted(await fake_posts(s, fake))
            got = sum(len(seen.get(i, [])) for i in issues)
            if got >= len(issues) * changes or loop.time() > deadline:
                break
            await asyncio.sleep(0.2)
        await asyncio.sleep(1.5)
        seen = changes_posted(await fake_posts(s, fake))
    score(fig, seen, issues, changes)
    times = [t for i in issues for t, _ in seen.get(i, [])]
    if times:
        fig.posts_per_s = fig.posts / max(1e-6, max(times) - first_send)
        fig.drain_s = max(0.0, max(times) - last_ack)
    return fig


def postgres_pids() -> list[int]:
    """The PostgreSQL server's processes on this machine (their command name is postgres)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/comm", encoding="utf-8") as f:
                    if f.read().strip() == "postgres":
                        found.append(int(entry))
            except OSError:
                continue
    return found


def machine_busy_seconds() -> float:
    """CPU seconds every core of the machine spent on anything but idling and waiting for I/O."""
    with open("/proc/stat", encoding="ascii") as f:
        fields = [int(x) for x in f.readline().split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


async def intake(
    dep: Deployment, args: argparse.Namespace, payloads: Sequence[Payload]
) -> tuple[float, float, float, float]:
    """(accepted/s over all processes, their CPU ÷ wall, PostgreSQL's, the whole machine's) during
    one wrk run per URL. The last two tell whether cores were left for more workers to use."""
    pids = dep.pids()
    if dep.workers_mode and dep.n > 1 and dep.procs[0] is not None:
        pids.append(dep.procs[0].pid)
    pg0 = {p: proc_cpu_seconds(p) for p in postgres_pids()}
    cpu0 = sum(proc_cpu_seconds(p) for p in pids)
    busy0 = machine_busy_seconds()
    per = max(1, args.concurrency // len(dep.urls))
    started = time.perf_counter()
    runs = await asyncio.gather(
        *(
            drive_wrk(
                args.wrk,
                f"{url}{FIREHOSE}?secret={SECRET}",
                dep.workdir / f"wrk-{i}",
                payloads,
                WRK_START + i * 1_000_000,
                args.duration,
                per,
            )
            for i, url in enumerate(dep.urls)
        )
    )
    wall = time.perf_counter() - started
    cpu = sum(proc_cpu_seconds(p) for p in pids) - cpu0
    # A backend that ended during the run is left out (its last figures are gone); one that
    # started during it counts whole.
    pg1 = {p: proc_cpu_seconds(p) for p in postgres_pids()}
    pg_cpu = sum(max(0.0, t - pg0.get(p, 0.0)) for p, t in pg1.items())
    busy = machine_busy_seconds() - busy0
    return sum(r.rate for r in runs), 100 * cpu / wall, 100 * pg_cpu / wall, 100 * busy / wall


async def run_row(args: argparse.Namespace, n: int, payloads: Sequence[Payload]) -> Row:
    row = Row(args.mode, n)
    workdir = Path(tempfile.mkdtemp(prefix=f"bench-replicas-{n}-"))
    for i in range(n):
        (workdir / f"wrk-{i}").mkdir()
    try:
        async with (
            fake_mattermost(workdir) as fake,
            fresh_database("postgresql", workdir, args.database) as url,
        ):
            db = await Database.open(url)
            dep = Deployment(args, n, url, fake, workdir)
            try:
                await store_subscriptions(db, make_subscriptions(args.subscriptions, fake.channels, payloads))
                for i in range(len(dep.procs)):
                    await dep.start(i)
                await dep.wait_alive(db)
                row.order = await stream(dep, db, fake, range(args.issues), args.changes, kill=False)
                if n > 1:
                    issues = range(args.issues, 2 * args.issues)
                    row.kill = await stream(dep, db, fake, issues, args.changes, kill=True)
                    if not dep.workers_mode:
                        await dep.start(0)  # the killed replica, on its port again
                    await dep.wait_alive(db)
                if args.wrk:
                    (
                        row.accepted_per_s,
                        row.bot_cpu_pct,
                        row.pg_cpu_pct,
                        row.machine_pct,
                    ) = await intake(dep, args, payloads)
            finally:
                await dep.stop()
                await db.close()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return row


# ------------------------------------------------------------------------------------------ report


def print_report(rows: Sequence[Row], ceiling: float, args: argparse.Namespace, load: str) -> None:
    print(
        f"\nmachine: {os.cpu_count()} CPUs; load average before: {load}; {args.issues} issues × "
        f"{args.changes} changes per stream; wrk {args.duration:g} s, {args.concurrency} connections; "
        f"{args.subscriptions:,} subscriptions"
    )
    head = (
        f"{'deployment':<11} {'accepted/s':>10} {'ratio':>5} {'CPU':>5} {'posts/s':>7} {'drain s':>7} "
        f"{'order':>5} {'dup':>3} {'lost':>4} | {'kill: posts/s':>13} {'order':>5} {'dup':>3} {'lost':>4} "
        f"{'held':>7} {'takeover s':>10}"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        o = r.order
        name = f"{r.n} {'workers' if r.mode == 'workers' else 'replicas'}"
        ratio = f"{r.accepted_per_s / ceiling:.2f}" if ceiling and r.accepted_per_s else "n/a"
        line = (
            f"{name:<11} {r.accepted_per_s:>10,.0f} {ratio:>5} {r.bot_cpu_pct:>4.0f}% {o.posts_per_s:>7.1f} "
            f"{o.drain_s:>7.1f} {o.out_of_order:>5} {o.duplicates:>3} {o.lost:>4} | "
        )
        if r.kill is None:
            line += f"{'(no kill with one process)':>50}"
        else:
            k = r.kill
            takeover = f"{k.takeover_s:.1f}" if k.takeover_s is not None else "n/a"
            held = f"{k.held[0]}+{k.held[1]}"
            line += f"{k.posts_per_s:>13.1f} {k.out_of_order:>5} {k.duplicates:>3} {k.lost:>4} "
            line += f"{held:>7} {takeover:>10}"
        print(line)
    ceiling_text = f"{ceiling:,.0f} req/s" if ceiling else "not measured (no wrk)"
    print(
        f"ceiling (bare aiohttp + json.loads, one process): {ceiling_text}; `held` = webhooks+posts "
        "claimed by the killed process; CPU = the serving processes' CPU ÷ wall during wrk (100% = one core)"
    )
    print_scaling(rows)
    for r in rows:
        for note in r.notes:
            print(f"  {r.n} {r.mode}: {note}")


def print_scaling(rows: Sequence[Row]) -> None:
    """Each count against the first: throughput, and accepted webhooks per second of one core busy
    serving them, the figure that says what more cores would give."""
    base = rows[0] if rows else None
    if base is None:
        return
    for r in rows:
        parts = []
        if r.accepted_per_s and r.bot_cpu_pct:  # no intake run without wrk
            per_core = r.accepted_per_s / (r.bot_cpu_pct / 100)
            parts.append(
                f"{per_core:,.0f} accepted per core-second; during wrk PostgreSQL {r.pg_cpu_pct:.0f}%, "
                f"the whole machine {r.machine_pct:.0f}% of {100 * (os.cpu_count() or 1)}%"
            )
        if r is not base:
            if base.accepted_per_s:
                parts.append(f"accepted/s ×{r.accepted_per_s / base.accepted_per_s:.2f}")
            if base.order.posts_per_s:
                parts.append(f"posts/s ×{r.order.posts_per_s / base.order.posts_per_s:.2f} of {base.n}")
        if parts:
            print(f"  {r.n} {r.mode}: " + ", ".join(parts))
    if base.mode == "workers" and base.accepted_per_s and base.bot_cpu_pct:
        # An extrapolation, printed as one: the workers share only the database, so each with a
        # core of its own should add what one accepts per core-second, while PostgreSQL keeps up.
        per_core = base.accepted_per_s / (base.bot_cpu_pct / 100)
        pg_per_1000 = 1000 * base.pg_cpu_pct / base.accepted_per_s
        print(
            f"  expected with a core per worker (not measured): about N × {per_core:,.0f} accepted/s, "
            f"while PostgreSQL has cores for it ({pg_per_1000:.0f}% of a core per 1,000 accepted/s here)"
        )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.replicas", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--database", required=True, help="postgresql://USER@HOST:PORT/DB (server and admin database)"
    )
    group = p.add_mutually_exclusive_group()
    group.add_argument("--replicas", help="comma-separated counts of separate serve processes (default 1,3)")
    group.add_argument("--workers", help="comma-separated counts of workers of one serve, e.g. 1,2")
    p.add_argument("--issues", type=int, default=60, help="issues per stream (default 60)")
    p.add_argument("--changes", type=int, default=10, help="changes per issue (default 10, at most 100)")
    p.add_argument("--subscriptions", type=int, default=1000, help="stored subscriptions (default 1,000)")
    p.add_argument("--duration", type=float, default=8.0, help="seconds of the wrk intake run (default 8)")
    p.add_argument("--concurrency", type=int, default=32, help="wrk connections in all (default 32)")
    p.add_argument(
        "--client", default="auto", metavar="auto|wrk|python|PATH", help="wrk, or python: no intake"
    )
    args = p.parse_args(argv)
    if not args.database.startswith(("postgresql://", "postgres://")):
        p.error("--database takes postgresql://USER@HOST:PORT/DB: several processes need PostgreSQL")
    args.database = args.database.replace("postgres://", "postgresql://", 1)
    args.mode = "workers" if args.workers else "replicas"
    try:
        args.counts = [int(c) for c in (args.workers or args.replicas or "1,3").split(",") if c.strip()]
    except ValueError:
        p.error("--replicas and --workers take comma-separated integers, e.g. 1,3")
    if not args.counts or min(args.counts) < 1 or not 1 <= args.changes <= 100 or args.issues < 1:
        p.error("counts and --issues must be positive, --changes from 1 to 100")
    if args.issues * 100 + 100 >= SEQ_BASE // 2:
        p.error("--issues is too large for the tags")
    args.wrk = find_wrk(args.client)
    args.requests = 5000  # the ceiling's Python client, when wrk is absent
    return args


async def main_async(args: argparse.Namespace) -> None:
    task = asyncio.current_task()
    if task is not None:
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    payloads = load_payloads()
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    ceiling = 0.0
    if args.wrk:
        workdir = Path(tempfile.mkdtemp(prefix="bench-replicas-"))
        try:
            print("ceiling: bare aiohttp + json.loads, wrk ...", flush=True)
            ceiling = max(d.rate for d in await run_ceiling(args, payloads, workdir))
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
    rows = []
    for n in args.counts:
        print(f"{n} {args.mode} on PostgreSQL ...", flush=True)
        rows.append(await run_row(args, n, payloads))
    print_report(rows, ceiling, args, load)


def main(argv: Sequence[str] | None = None) -> int:
    asyncio.run(main_async(parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
