"""Re-evaluates waiting gates in the background, whether or not any pipeline is polling.

Each round: gates checking the same CR share one Jira read; gates still without a CR are resolved
one by one; a Jira instance that answered 429 is left alone until the time it asked for (the
service remembers it, so API calls honour it too). Rounds are spaced by the poll interval with
jitter, so replicas (and many bots against one Jira) do not fall into step. Changes reach
Mattermost through the service's listeners (`GateService.add_listener`).

With several replicas on one database, one of them polls: each round starts by taking or renewing
the "gate-poller" duty lease (`bot.store.leases.Duty`), and the replicas without it skip the
round. So each CR is read once per interval whatever the number of replicas; when the polling
replica dies, the next replica to try takes over once its heartbeat is stale (a few seconds,
bot.store.replicas), or once its lease runs out (two intervals) when it had no heartbeat. The
replicas without the duty ask for it every `STANDBY_SECONDS` (or the interval, when shorter),
so a takeover waits for the stale heartbeat, not for a whole interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType

from bot.gate.service import GateService
from bot.gate.store import DEFAULT_INSTANCE
from bot.gate_rules.model import Gate
from bot.store.leases import Duty

log = logging.getLogger(__name__)

# How often a replica without the "gate-poller" duty asks for it (at most; the interval when shorter).
STANDBY_SECONDS = 2.0


@dataclass(frozen=True, slots=True)
class PollRound:
    """What one round did."""

    waiting: int  # waiting gates found
    reads: int  # Jira reads of known CRs (one per CR, however many gates check it)
    resolved: int  # gates without a CR that were looked up
    changed: int  # gates whose stored state changed
    skipped: int  # gates left for later because their Jira instance asked for a pause (429)
    failed: int  # gates whose evaluation raised (logged; retried next round)


class GatePoller:
    def __init__(
        self,
        service: GateService,
        *,
        clock: Callable[[], datetime],
        interval_seconds: float | None = None,
        jitter: float = 0.1,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
        concurrency: int = 4,
        batch: int = 1000,
        duty: Duty | None = None,
    ) -> None:
        """`duty`: the lease that makes this the one polling replica (None: always poll)."""
        self._service = service
        self._clock = clock
        self.interval_seconds = float(interval_seconds or service.policy.poll_interval_seconds)
        self._jitter = jitter
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._limit = asyncio.Semaphore(concurrency)
        self._batch = batch
        self._duty = duty
        self._task: asyncio.Task[None] | None = None

    def next_delay(self) -> float:
        """Seconds until the next round: the interval, give or take `jitter` of it."""
        spread = self.interval_seconds * self._jitter
        return max(0.0, self.interval_seconds + self._rng.uniform(-spread, spread))

    async def run_once(self) -> PollRound:
        now = self._clock()
        service = self._service
        finished = await service.finish_stale(now=now)
        if finished:
            log.info("closed %d proceeded gate(s) that never reported a deployment", len(finished))
        waiting = await service.waiting_gates(limit=self._batch)
        by_cr: dict[tuple[str, str], list[Gate]] = {}
        unresolved: list[Gate] = []
        for gate in waiting:
            if gate.change_request is None:
                unresolved.append(gate)
            else:
                by_cr.setdefault(
                    (gate.target.instance or DEFAULT_INSTANCE, gate.change_request.id), []
                ).append(gate)
        counts = {"reads": 0, "resolved": 0, "changed": 0, "skipped": 0, "failed": 0}

        async def evaluate_all(gates: list[Gate], read_first: bool) -> None:
            async with self._limit:
                instance = gates[0].target.instance
                if service.backoff_until(instance, now=now) is not None:
                    counts["skipped"] += len(gates)
                    return
                try:
                    read = None
                    if read_first:
                        known = gates[0].change_request
                        assert known is not None  # grouped by CR
                        read = await service.read_change_request(instance, known, now=now)
                        counts["reads"] += 1
                    else:
                        counts["resolved"] += 1
                except Exception:
                    log.exception("reading the CR of gate %s failed", gates[0].id)
                    counts["failed"] += len(gates)
                    return
                for gate in gates:
                    try:
                        stored = await service.evaluate(gate, now, read=read)
                    except Exception:
                        log.exception("evaluating gate %s failed", gate.id)
                        counts["failed"] += 1
                        continue
                    if stored.revision != gate.revision:
                        counts["changed"] += 1

        await asyncio.gather(
            *(evaluate_all(group, True) for group in by_cr.values()),
            *(evaluate_all([gate], False) for gate in unresolved),
        )
        await service.retry_comments(now=now)
        return PollRound(waiting=len(waiting), **counts)

    async def run_forever(self) -> None:
        """Rounds until cancelled; a failing round is logged and the next one runs as planned.
        With a duty lease, only the rounds in which this replica holds it run."""
        while True:
            held = True
            try:
                held = self._duty is None or await self._duty.hold()
                if held:
                    await self.run_once()
            except Exception:
                log.exception("change gate poll round failed")
            delay = self.next_delay()
            # A replica without the duty asks for it again sooner than the interval, so that the
            # duty of a polling replica that died is taken as soon as its heartbeat is stale.
            await self._sleep(delay if held else min(delay, STANDBY_SECONDS))

    # ------------------------------------------------------------------------------ lifecycle

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        if not self.running:
            self._task = asyncio.create_task(self.run_forever(), name="change-gate-poller")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        if self._duty is not None:
            await self._duty.release()  # another replica polls from its next round

    async def __aenter__(self) -> GatePoller:
        self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
