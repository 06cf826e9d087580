"""The subscription index the workers route with, rebuilt when subscriptions change.

Any replica may change subscriptions, so a version stamp in the database says when to reload;
it is read at most every `refresh_seconds`.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime

from bot.routing.matcher import IndexBuilder, SubscriptionIndex
from bot.routing.model import Subscription
from bot.store.interfaces import KeyValueRepository, SubscriptionRepository

VERSION_KEY = "subscriptions:version"


class SubscriptionCache:
    def __init__(
        self, store: SubscriptionRepository, kv: KeyValueRepository, refresh_seconds: float = 2.0
    ) -> None:
        self._store = store
        self._kv = kv
        self._refresh = refresh_seconds
        self._index: SubscriptionIndex | None = None
        self._version: object = None
        self._checked = float("-inf")

    async def index(self) -> SubscriptionIndex:
        now = time.monotonic()
        if self._index is not None and now - self._checked < self._refresh:
            return self._index
        version = await self._kv.get(VERSION_KEY, now=datetime.now(UTC))
        if self._index is None or version != self._version:
            # Streamed: only the index's compact entries are kept, never all the subscriptions.
            builder = IndexBuilder()
            async for sub in self._store.iter_all():
                builder.add(sub)
            self._index = builder.build()
            self._version = version
        self._checked = now
        return self._index

    async def changed(self) -> None:
        """Record that subscriptions changed, so every replica reloads them."""
        await self._kv.put(VERSION_KEY, uuid.uuid4().hex)
        self._checked = float("-inf")

    async def all(self) -> list[Subscription]:
        return await self._store.list_all()
