"""The subscription index the workers route with, rebuilt when subscriptions change.

Any replica may change subscriptions, so a version stamp in the database says when to reload;
it is read at most every `refresh_seconds`. JQL is compiled with the names learnt from Jira
(`names`, bot/pipeline/jira_names.py) for the instances whose subscriptions need them; the index
is rebuilt when those change.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime

from bot.pipeline.jira_names import JiraNamesCache
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
        # Set by the composition root when Jira can be asked (custom field names, priorities).
        self.names: JiraNamesCache | None = None
        self._names_version = -1
        self._names_wanted: frozenset[str] = frozenset()

    async def index(self) -> SubscriptionIndex:
        now = time.monotonic()
        if self._index is not None and now - self._checked < self._refresh:
            return self._index
        version = await self._kv.get(VERSION_KEY, now=datetime.now(UTC))
        if self.names is not None:
            for instance in self._names_wanted:  # reads Jira only when due
                await self.names.learn(instance)
        names_version = self.names.version if self.names is not None else -1
        if self._index is None or version != self._version or names_version != self._names_version:
            self._index = await self._build()
            self._version = version
            if self.names is not None and self._names_wanted - self.names.known().keys():
                # JQL names what was never learnt (a new subscription): learn it, then rebuild.
                for instance in self._names_wanted:
                    await self.names.learn(instance)
                if self.names.version != names_version:
                    self._index = await self._build()
            self._names_version = self.names.version if self.names is not None else -1
        self._checked = now
        return self._index

    async def _build(self) -> SubscriptionIndex:
        # Streamed: only the index's compact entries are kept, never all the subscriptions.
        builder = IndexBuilder(self.names.known() if self.names is not None else None)
        async for sub in self._store.iter_all():
            builder.add(sub)
        index = builder.build()
        self._names_wanted = frozenset(builder.names_wanted)
        return index

    async def changed(self) -> None:
        """Record that subscriptions changed, so every replica reloads them."""
        await self._kv.put(VERSION_KEY, uuid.uuid4().hex)
        self._checked = float("-inf")

    async def all(self) -> list[Subscription]:
        return await self._store.list_all()
