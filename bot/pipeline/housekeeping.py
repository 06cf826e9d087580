"""Housekeeping: delete what the bot no longer needs, done by one replica at a time.

Every `interval` each replica asks for the "housekeeping" duty lease (`bot.store.leases.Duty`);
the one holding it purges webhooks processed and posts delivered more than `keep` ago, thread
roots and stored values past their expiry, and leases long expired. The purges are idempotent
deletes, so a round repeated after a takeover does no harm; the lease only keeps N replicas from
running the same deletes N times. When the purging replica stops, its lease is released (or runs
out, when it died) and another one purges at its next round.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from bot.store.interfaces import Store
from bot.store.leases import Duty

log = logging.getLogger(__name__)

DUTY = "housekeeping"
# Expired leases are kept this long (so `jira-chatops stats` and logs can still name a holder).
LEASE_KEEP = timedelta(hours=1)


class Housekeeping:
    def __init__(
        self,
        store: Store,
        *,
        owner: str,
        keep: timedelta,
        interval_seconds: float,
        clock: Callable[[], datetime],
    ) -> None:
        self._store = store
        self._keep = keep
        self.interval_seconds = interval_seconds
        self._clock = clock
        # Longer than a round, and than the gap between two rounds of the holder.
        self.duty = Duty(
            store.leases, DUTY, owner=owner, ttl_seconds=max(2 * interval_seconds, 30.0), clock=clock
        )
        self._task: asyncio.Task[None] | None = None

    async def purge(self) -> dict[str, int]:
        """One round of deletes, whoever holds the lease; how many rows each removed."""
        now = self._clock()
        store = self._store
        done = {
            "webhooks": await store.inbox.purge(before=now - self._keep),
            "posts": await store.deliveries.purge(before=now - self._keep),
            "threads": await store.threads.purge_expired(now=now),
            "values": await store.kv.purge_expired(now=now),
            "leases": await store.leases.purge_expired(before=now - LEASE_KEEP),
        }
        if any(done.values()):
            log.info("housekeeping: purged %s", ", ".join(f"{n} {what}" for what, n in done.items() if n))
        return done

    async def run_once(self) -> dict[str, int] | None:
        """Purge when this replica holds the duty; None when another replica does."""
        if not await self.duty.hold():
            return None
        return await self.purge()

    async def run_forever(self) -> None:
        while True:
            try:
                await self.run_once()
            except Exception:  # the next round tries again
                log.exception("housekeeping round failed")
            await asyncio.sleep(self.interval_seconds)

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self.run_forever(), name="housekeeping")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.duty.release()
