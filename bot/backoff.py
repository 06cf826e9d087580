"""Retry timing: capped exponential backoff with jitter, shared by every retrying client.

Pure: the random source is passed in."""

from __future__ import annotations

import random
from collections.abc import Callable


def retry_delay(
    attempt: int,
    *,
    base: float,
    cap: float,
    retry_after: float | None = None,
    rand: Callable[[], float] = random.random,
) -> float:
    """Seconds to wait before attempt number `attempt + 1` (attempt counts from 0).

    Capped exponential backoff with full jitter over the upper half, so that a burst of failures
    does not come back in lockstep; a server's Retry-After is a floor, never shortened.
    """
    exp = min(cap, base * (2 ** min(attempt, 30)))
    delay = exp / 2 + rand() * exp / 2
    if retry_after is not None and retry_after > delay:
        delay = retry_after
    return delay
