"""Group commit for the webhook inbox: concurrent webhooks share one transaction.

A commit costs about as much for one row as for dozens, so each webhook waits (at most
`max_wait` seconds, or until `max_batch` rows are queued) for others to join its transaction.
Every waiting request is answered only after that transaction commits; when it fails, every
request of the batch gets the error (and Jira retries each of them).

With `concurrency` > 1 (PostgreSQL, see `SqlInboxRepository.write_concurrency`) several batches
are committed at once, each on a connection of its own, so their commit waits overlap. Batches
may then commit in another order than they were cut; webhooks of one issue keep theirs, as Jira
sends the next one only after the previous one was answered, i.e. committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import datetime

from bot.store.interfaces import InboxRepository, NewInboxRow

log = logging.getLogger(__name__)

_Waiter = tuple[NewInboxRow, "asyncio.Future[tuple[int, bool]]"]


class InboxWriter:
    """Batches `enqueue` calls into `InboxRepository.enqueue_many` transactions.

    One transaction at a time by default: batches are stored, and so processed, in the order the
    webhooks came in. No task runs while nothing is queued: the first waiting row starts a
    flusher, which stops once the queue is empty, so the writer needs no start or stop of its own.
    """

    def __init__(
        self,
        inbox: InboxRepository,
        *,
        clock: Callable[[], datetime],
        max_batch: int = 64,
        max_wait: float = 0.001,
        concurrency: int = 1,
    ) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self._concurrency = concurrency
        # Batches being written while the flusher cuts the next ones (concurrency > 1).
        self._writing: set[asyncio.Task[None]] = set()
        self._inbox = inbox
        self._clock = clock
        self._max_batch = max_batch
        self._max_wait = max_wait
        self._queue: list[_Waiter] = []
        self._full = asyncio.Event()
        self._flusher: asyncio.Task[None] | None = None
        self.batches = 0  # transactions committed (or attempted): for tests and diagnostics
        self.rows = 0

    @property
    def queued(self) -> int:
        return len(self._queue)

    async def enqueue(self, row: NewInboxRow) -> tuple[int, bool]:
        """Store `row` with whatever else is queued; (id, created) once committed.

        A cancelled caller's row may still be committed (its transaction is shared): a webhook
        whose answer was lost is redelivered by Jira and recognised by its dedupe key.
        """
        future: asyncio.Future[tuple[int, bool]] = asyncio.get_running_loop().create_future()
        self._queue.append((row, future))
        if len(self._queue) >= self._max_batch:
            self._full.set()
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush_all(), name="inbox-writer")
        return await future

    async def close(self) -> None:
        """Wait for the rows already queued to be written."""
        if self._flusher is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(self._flusher)
        if self._writing:
            await asyncio.wait(self._writing)

    async def _flush_all(self) -> None:
        try:
            while self._queue:
                if len(self._queue) < self._max_batch and self._max_wait > 0:
                    # Let concurrent webhooks join this transaction.
                    self._full.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._full.wait(), self._max_wait)
                batch = self._queue[: self._max_batch]
                del self._queue[: self._max_batch]
                if self._concurrency == 1:
                    await self._write(batch)
                    continue
                task = asyncio.create_task(self._write(batch), name="inbox-writer-batch")
                self._writing.add(task)
                task.add_done_callback(self._writing.discard)
                if len(self._writing) >= self._concurrency:
                    # Every connection busy: rows queue meanwhile, and the next batch is bigger.
                    await asyncio.wait(self._writing, return_when=asyncio.FIRST_COMPLETED)
        except BaseException as e:
            # Cancelled at shutdown: no queued caller may wait forever.
            for _, future in self._queue:
                if future.done():
                    continue
                if isinstance(e, Exception):
                    future.set_exception(e)
                else:
                    future.cancel()
            self._queue.clear()
            raise
        finally:
            self._flusher = None

    async def _write(self, batch: list[_Waiter]) -> None:
        self.batches += 1
        try:
            results = await self._inbox.enqueue_many([row for row, _ in batch], now=self._clock())
        except asyncio.CancelledError:
            for _, future in batch:
                future.cancel()
            raise
        except Exception as e:
            log.warning("storing %d webhook(s) failed: %s", len(batch), e)
            for _, future in batch:
                if not future.done():
                    future.set_exception(e)
            return
        self.rows += len(batch)
        for (_, future), result in zip(batch, results, strict=True):
            if not future.done():
                future.set_result(result)
