"""The loop every background worker runs: work while there is work, then sleep until woken."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)


async def work_loop(
    name: str,
    run_once: Callable[[], Awaitable[int]],
    wake: asyncio.Event,
    idle_wait: Callable[[], Awaitable[float]],
    stop: asyncio.Event | None = None,
) -> None:
    """Call `run_once` until it finds nothing (it returns how many items it took), then wait for
    `wake` or `idle_wait()` seconds. An error is logged and retried after the idle wait: a
    worker never dies of one bad round. Once `stop` is set (and `wake` with it), the loop ends
    after the round under way: a clean stop lets the posts in flight finish."""
    while stop is None or not stop.is_set():
        # Cleared before claiming, so a wake-up during the claim is not lost.
        wake.clear()
        try:
            if await run_once():
                continue
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s failed; retrying", name)
        timeout = await idle_wait()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), timeout=timeout)


async def give_way(busy: Callable[[], bool], *, step: float = 0.005, longest: float = 1.0) -> None:
    """Wait while `busy()` says the webhook intake needs the process, but at most `longest` seconds.

    Background workers share the event loop (and the database) with the intake. During a burst,
    answering Jira quickly matters more than posting a few milliseconds sooner, and the stored
    backlog is there to absorb it. The bound keeps the workers going under sustained load (and
    the intake stops claiming priority once the backlog fills up, see `Intake.busy`).
    """
    # Polled: the intake's state changes with every request, too often to signal each change.
    for _ in range(max(1, round(longest / step))):
        if not busy():
            return
        await asyncio.sleep(step)
