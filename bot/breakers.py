"""The circuit breakers of a process, one per outbound target, shared by all its workers and,
through the database, by all replicas.

A replica whose breaker opens writes `{"open_until": …}` under `breaker:<target>` in the
key-value store (expiring then); the others read that key at most once per `shared_poll_seconds`
while their own breaker is closed, and stay off the target until then as well, so the replicas
back off together. Closing deletes the key. The store failing never stops a call: the breaker
then works per replica.

The clients consult the breaker on every call (bot.mattermost.client, bot.jira.client): while it
is open they fail at once, without a request. The delivery worker waits for it before claiming,
so an outage burns no attempts and keeps the order (bot.pipeline.delivery).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol

from bot.breaker import BreakerPolicy, BreakerState, CircuitBreaker
from bot.metrics import Metrics

log = logging.getLogger(__name__)

MATTERMOST = "mattermost"
_KEY_PREFIX = "breaker:"


def jira_target(site_url: str) -> str:
    """The breaker target of one Jira site (its URL, without a trailing slash)."""
    return "jira:" + site_url.rstrip("/")


class SharedOpenings(Protocol):
    """Where replicas tell each other a target is down: the key-value store (bot.store.kv)."""

    async def get(self, key: str, *, now: datetime) -> Any | None: ...

    async def put(self, key: str, value: Any, *, expires_at: datetime | None = None) -> None: ...

    async def delete(self, key: str) -> bool: ...


class Breaker:
    """One target's breaker for the whole process."""

    def __init__(
        self,
        target: str,
        *,
        clock: Callable[[], datetime],
        metrics: Metrics | None = None,
        shared: SharedOpenings | None = None,
        policy: BreakerPolicy | None = None,
        shared_poll_seconds: float = 1.0,
    ) -> None:
        self.target = target
        self._machine = CircuitBreaker(policy)
        self._clock = clock
        self._metrics = metrics
        self._shared = shared
        self._shared_poll = shared_poll_seconds
        self._next_shared_read = 0.0
        self._reported = BreakerState.CLOSED
        self._tasks: set[asyncio.Task[None]] = set()
        if metrics is not None:
            metrics.breaker_state.labels(target).set(BreakerState.CLOSED)
            for state in BreakerState:
                metrics.breaker_transitions.labels(target, state.name.lower())

    @property
    def state(self) -> BreakerState:
        self._note(self._now())
        return self._machine.state

    @property
    def probing(self) -> bool:
        """Whether the breaker is half-open: one call at a time, the probe."""
        return self.state is BreakerState.HALF_OPEN

    def delay(self) -> float:
        """Seconds until a call may go (0: now), as this replica knows it."""
        now = self._now()
        wait = self._machine.delay(now)
        self._note(now)
        return wait

    async def ready(self) -> float:
        """Like `delay`, having first looked at what the other replicas said (at most once per
        `shared_poll_seconds`, and only while this replica's breaker is closed)."""
        now = self._now()
        if (
            self._shared is not None
            and self._machine.state is BreakerState.CLOSED
            and now >= self._next_shared_read
        ):
            self._next_shared_read = now + self._shared_poll
            until = await self._read_shared()
            if until is not None and self._machine.hold(until, now) is not None:
                log.warning(
                    "%s: another replica found it down; holding off for %.1f s", self.target, until - now
                )
        return self.delay()

    async def wait(self, *, longest: float = 5.0) -> None:
        """Sleep until a call may go, but at most `longest` seconds (the caller loops)."""
        wait = await self.ready()
        if wait > 0:
            await asyncio.sleep(min(wait, longest))

    def acquire(self) -> bool:
        now = self._now()
        allowed = self._machine.acquire(now)
        self._note(now)
        return allowed

    def release(self) -> None:
        self._machine.release()

    def success(self) -> None:
        now = self._now()
        changed = self._machine.success(now)
        self._note(now)
        if changed is BreakerState.CLOSED:
            log.warning("%s answers again; circuit closed", self.target)
            self._share(None)

    def failure(self, *, retry_after: float | None = None) -> None:
        now = self._now()
        changed = self._machine.failure(now, retry_after=retry_after)
        self._note(now)
        if changed is BreakerState.OPEN:
            log.warning(
                "%s is failing; circuit open, next try in %.1f s", self.target, self._machine.retry_at - now
            )
            self._share(self._machine.retry_at)

    async def close(self) -> None:
        """Let the writes to the shared store under way finish."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    # -- plumbing ---------------------------------------------------------------------------------

    def _now(self) -> float:
        return self._clock().timestamp()

    def _note(self, now: float) -> None:
        """Report a change of state (including open → half-open, which happens by time) to the
        metrics."""
        self._machine.delay(now)  # advances open → half-open when due
        state = self._machine.state
        if state is self._reported:
            return
        self._reported = state
        if self._metrics is not None:
            self._metrics.breaker_state.labels(self.target).set(state)
            self._metrics.breaker_transitions.labels(self.target, state.name.lower()).inc()

    async def _read_shared(self) -> float | None:
        assert self._shared is not None
        try:
            value = await self._shared.get(_KEY_PREFIX + self.target, now=self._clock())
        except Exception as e:  # the store is down too: go on per replica
            log.debug("%s: cannot read the shared breaker: %s", self.target, e)
            return None
        if isinstance(value, dict) and isinstance(value.get("open_until"), int | float):
            return float(value["open_until"])
        return None

    def _share(self, open_until: float | None) -> None:
        if self._shared is None:
            return
        try:
            task = asyncio.get_running_loop().create_task(self._write_shared(open_until))
        except RuntimeError:  # no loop (a synchronous caller in a test)
            return
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _write_shared(self, open_until: float | None) -> None:
        assert self._shared is not None
        key = _KEY_PREFIX + self.target
        try:
            if open_until is None:
                await self._shared.delete(key)
            else:
                expires = datetime.fromtimestamp(open_until, UTC)
                await self._shared.put(key, {"open_until": open_until}, expires_at=expires)
        except Exception as e:
            log.warning("%s: cannot share the breaker's state: %s", self.target, e)


class Breakers:
    """The breakers of a process, by target, made on first use with the same store and metrics."""

    def __init__(
        self,
        *,
        clock: Callable[[], datetime],
        metrics: Metrics | None = None,
        shared: SharedOpenings | None = None,
        policy: BreakerPolicy | None = None,
        shared_poll_seconds: float = 1.0,
    ) -> None:
        self._make: Callable[[str], Breaker] = lambda target: Breaker(
            target,
            clock=clock,
            metrics=metrics,
            shared=shared,
            policy=policy,
            shared_poll_seconds=shared_poll_seconds,
        )
        self._by_target: dict[str, Breaker] = {}

    def get(self, target: str) -> Breaker:
        breaker = self._by_target.get(target)
        if breaker is None:
            breaker = self._by_target[target] = self._make(target)
        return breaker

    async def close(self) -> None:
        for breaker in list(self._by_target.values()):
            await breaker.close()
