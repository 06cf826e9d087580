"""A circuit breaker for one outbound target (Mattermost, one Jira site): the state machine only.

closed: calls go. A failure that says the target is down (5xx, 429, a timeout; see the clients)
counts; `failure_threshold` of them in a row, or one that comes with a Retry-After, open it.
open: no call goes until `retry_at`, which is the server's Retry-After when it gave one (a floor,
never shortened) and otherwise `min_open_seconds` to `max_open_seconds` with jitter
(bot.backoff). The short ceiling is deliberate: while the target is down a replica probes about
once a second, and after it recovers the bot is back at full speed within `max_open_seconds`.
half-open: `retry_at` has passed; exactly one call (the probe) may go at a time. Its success
closes the breaker, its failure opens it again (for longer, up to the ceiling).
A call sent before the breaker opened may succeed while it is open: that closes it, unless the
server asked for quiet (Retry-After) or another replica's opening is being held, which are kept
to the end (the answer may predate the server's request).

Pure: the time is passed in as seconds (any epoch, the caller's clock), the random source too.
One instance serves every task of a process; bot.breakers shares it between replicas.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum

from bot.backoff import retry_delay


class BreakerState(IntEnum):
    """The values of the `jira_chatops_breaker_state` gauge."""

    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2


@dataclass(frozen=True, slots=True)
class BreakerPolicy:
    failure_threshold: int = 3
    min_open_seconds: float = 1.0
    max_open_seconds: float = 2.0
    # A Retry-After beyond this is taken as this (a broken header must not stop the bot for days).
    max_retry_after_seconds: float = 600.0


class CircuitBreaker:
    def __init__(self, policy: BreakerPolicy | None = None, *, rand: Callable[[], float] = random.random):
        self.policy = policy or BreakerPolicy()
        self._rand = rand
        self.state = BreakerState.CLOSED
        self.retry_at = 0.0
        self.failures = 0  # consecutive failures while closed
        self.reopenings = 0  # failed probes since the breaker last closed
        self.probing = False  # a half-open probe is under way
        self.quiet_asked = False  # open on a Retry-After or another replica's word: keep to retry_at

    def delay(self, now: float) -> float:
        """Seconds until a call may go (0: now). While a probe is under way, until the probe
        is due to have an answer is unknown: the policy's minimum open time is the hint."""
        self._advance(now)
        if self.state is BreakerState.OPEN:
            return max(0.0, self.retry_at - now)
        if self.state is BreakerState.HALF_OPEN and self.probing:
            return self.policy.min_open_seconds
        return 0.0

    def acquire(self, now: float) -> bool:
        """Whether a call may go now. In half-open the one caller that gets True is the probe:
        it must report `success`, `failure` or `release`."""
        self._advance(now)
        if self.state is BreakerState.CLOSED:
            return True
        if self.state is BreakerState.HALF_OPEN and not self.probing:
            self.probing = True
            return True
        return False

    def release(self) -> None:
        """The probe ended without a verdict on the target (cancelled): another may probe."""
        self.probing = False

    def success(self, now: float) -> BreakerState | None:
        """The target answered (any answer that is not an outage). Returns the new state when
        it changed. An answer proves the target is up, so a success closes from any state,
        except an opening the server (or another replica) asked to keep until `retry_at`."""
        self.failures = 0
        self._advance(now)
        if self.state is BreakerState.CLOSED:
            self.probing = False
            return None
        if self.state is BreakerState.OPEN and self.quiet_asked:
            return None
        self.probing = False
        self.state = BreakerState.CLOSED
        self.reopenings = 0
        self.retry_at = 0.0
        return BreakerState.CLOSED

    def failure(self, now: float, *, retry_after: float | None = None) -> BreakerState | None:
        """The target failed as a whole (5xx, 429, timeout). Returns the new state when it changed."""
        self._advance(now)
        if self.state is BreakerState.OPEN:
            # A call sent before the breaker opened: only a longer Retry-After changes anything.
            if retry_after is not None:
                self.retry_at = max(self.retry_at, now + self._retry_after(retry_after))
                self.quiet_asked = True
            return None
        if self.state is BreakerState.HALF_OPEN:
            self.probing = False
            self.reopenings += 1
            return self._open(now, retry_after)
        self.failures += 1
        if self.failures >= self.policy.failure_threshold or retry_after is not None:
            return self._open(now, retry_after)
        return None

    def hold(self, until: float, now: float) -> BreakerState | None:
        """Another replica opened the breaker of this target until `until`: stay off it too."""
        self._advance(now)
        if until <= now or (self.state is BreakerState.OPEN and until <= self.retry_at):
            return None
        changed = self.state is not BreakerState.OPEN
        self.state = BreakerState.OPEN
        self.retry_at = until
        self.probing = False
        self.quiet_asked = True
        return BreakerState.OPEN if changed else None

    def _open(self, now: float, retry_after: float | None) -> BreakerState:
        p = self.policy
        wait = max(
            p.min_open_seconds,
            retry_delay(self.reopenings, base=p.min_open_seconds, cap=p.max_open_seconds, rand=self._rand),
        )
        if retry_after is not None:
            wait = max(wait, self._retry_after(retry_after))
        self.state = BreakerState.OPEN
        self.retry_at = now + wait
        self.failures = 0
        self.quiet_asked = retry_after is not None
        return BreakerState.OPEN

    def _retry_after(self, seconds: float) -> float:
        return min(max(0.0, seconds), self.policy.max_retry_after_seconds)

    def _advance(self, now: float) -> None:
        """open → half-open once `retry_at` has passed (reported by the next transition, or
        seen through `state`)."""
        if self.state is BreakerState.OPEN and now >= self.retry_at:
            self.state = BreakerState.HALF_OPEN
            self.probing = False
