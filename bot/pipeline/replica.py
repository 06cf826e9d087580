"""This process as one replica of several: its heartbeat, and its clean stop.

Heartbeat: every `HEARTBEAT_SECONDS` the process writes its owner id and the time to the
database (bot.store.replicas). Once that is older than `LIVENESS_SECONDS`, the other replicas
take over the webhooks and posts it had claimed, without waiting for their leases.

Clean stop (SIGTERM), in this order:
1. `stopping` turns true: /readyz answers 503 and the webhook intake 503 with Retry-After, so
   the load balancer and Jira turn to the other replicas;
2. the workers claim nothing more; the round under way (posts in flight) may finish within the
   grace period, then it is cancelled (a cancelled post keeps its pending_post_id, so if it did
   reach Mattermost the replica that sends it again does not double it);
3. every claim still held is released and the heartbeat row removed: the other replicas take the
   work at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine, Sequence
from datetime import datetime, timedelta
from typing import Any

from bot.store.interfaces import DeliveryRepository, InboxRepository, ReplicaRepository
from bot.store.replicas import HEARTBEAT_SECONDS

log = logging.getLogger(__name__)

# Heartbeat rows older than this (replicas long gone) are deleted at start.
_FORGET_AFTER = timedelta(days=1)


class ReplicaLifecycle:
    def __init__(
        self,
        *,
        replicas: ReplicaRepository,
        inbox: InboxRepository,
        deliveries: DeliveryRepository,
        owner: str,
        clock: Callable[[], datetime],
        wakes: Sequence[asyncio.Event] = (),
    ) -> None:
        self._replicas = replicas
        self._inbox = inbox
        self._deliveries = deliveries
        self._owner = owner
        self._clock = clock
        self._wakes = wakes
        # Set at the start of a clean stop; the workers' loops end on it.
        self.stop = asyncio.Event()
        self._workers: list[asyncio.Task[None]] = []
        self._beating: asyncio.Task[None] | None = None
        self._drained: asyncio.Future[None] | None = None

    @property
    def stopping(self) -> bool:
        return self.stop.is_set()

    async def start(self, workers: Sequence[tuple[str, Coroutine[Any, Any, None]]]) -> None:
        """Register the heartbeat (before the first claim), keep it beating, start `workers`."""
        try:
            await self._replicas.purge(before=self._clock() - _FORGET_AFTER)
            await self._replicas.beat(self._owner, now=self._clock())
        except Exception as e:  # the database may be back by the next beat; leases still hold
            log.warning("replica heartbeat not written: %s", e)
        self._beating = asyncio.create_task(self._beat(), name="replica-heartbeat")
        self._workers = [asyncio.create_task(work, name=name) for name, work in workers]

    async def _beat(self) -> None:
        failing = False
        while True:
            await asyncio.sleep(HEARTBEAT_SECONDS)
            try:
                await self._replicas.beat(self._owner, now=self._clock())
            except Exception as e:
                if not failing:
                    log.warning("replica heartbeat not written (the others may take over): %s", e)
                failing = True
            else:
                failing = False

    async def drain(self, grace: float) -> None:
        """The clean stop described above; once, however often called."""
        if self._drained is None:
            self._drained = asyncio.ensure_future(self._drain(grace))
        await asyncio.shield(self._drained)

    async def _drain(self, grace: float) -> None:
        self.stop.set()
        for wake in self._wakes:
            wake.set()
        unfinished: set[asyncio.Task[None]] = set()
        if self._workers:
            _done, unfinished = await asyncio.wait(self._workers, timeout=grace)
            for task in unfinished:
                task.cancel()
            for task in self._workers:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        if self._beating is not None:
            self._beating.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._beating
        if not self._workers:
            return
        try:
            webhooks = await self._inbox.release_held(owner=self._owner)
            posts = await self._deliveries.release_held(owner=self._owner)
            await self._replicas.forget(self._owner)
        except Exception as e:  # their leases and the stale heartbeat hand them over instead
            log.warning("claims not released at stop: %s", e)
            return
        log.info(
            "stopped: %s; released %d webhook(s) and %d post(s) to the other replicas",
            f"{len(unfinished)} worker round(s) cut short after {grace:g} s"
            if unfinished
            else "work finished",
            webhooks,
            posts,
        )


__all__ = ["ReplicaLifecycle"]
