"""The load generator: webhooks sent as fast as `concurrency` allows, or paced at a steady rate."""

from __future__ import annotations

import asyncio
import itertools
import math
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import aiohttp

from bench.pipeline.scenarios import Payload

REQUEST_TIMEOUT = 30.0
# Delivery ids differ between runs, so a reused database would not take replays for duplicates.
RUN_ID = uuid.uuid4().hex[:8]


@dataclass
class Drive:
    wall: float = 0.0
    statuses: Counter[int] = field(default_factory=Counter)
    errors: int = 0
    ignored: int = 0  # 200 answers saying the webhook carries nothing to post
    send_times: dict[int, float] = field(default_factory=dict)  # seq -> time.time() at send
    client_cpu: float = 0.0  # seconds of this process's CPU during the drive
    sent: Sequence[int] = ()  # the sequence numbers sent
    latency_p50_ms: float = math.nan  # answer times (wrk measures them; the Python client does not)
    latency_p99_ms: float = math.nan

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
    *,
    seconds: float | None = None,
) -> Drive:
    """Send one webhook per sequence number, `concurrency` at a time; with `seconds`, stop
    sending once that time has passed (the rest of `seqs` is left unsent)."""
    run = Drive()
    pending = iter(seqs)
    deadline = None if seconds is None else time.perf_counter() + seconds

    async def worker() -> None:
        for seq in pending:  # one iterator shared by all workers: each seq is sent once
            await _send(session, url, payloads, seq, run)
            if deadline is not None and time.perf_counter() >= deadline:
                return

    cpu0 = time.process_time()
    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    run.wall = time.perf_counter() - started
    run.client_cpu = time.process_time() - cpu0
    run.sent = sorted(run.send_times)
    return run


def unbounded(start: int) -> itertools.count[int]:
    """Sequence numbers from `start` on, for a drive bounded by time."""
    return itertools.count(start)


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
    run.sent = list(seqs)
    return run
