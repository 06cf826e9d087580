"""What JQL needs to know of each Jira instance that events do not carry, learnt from Jira with
the instance's service account: custom field names (GET /rest/api/2/field) for clauses such as
`"Story Points" > 3`, and the priority order (GET /rest/api/2/priority) for `priority > High`.

Learnt only for instances whose subscriptions need it (the index builder says which), again every
`refresh_seconds`, and at once when a subscription being saved names something unknown. A failed
read keeps what was known and is not tried again for `retry_seconds`. Never raises: JQL that
needs names nobody could learn stays refused (or checked by Jira) as without them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta

from bot.instances import InstanceDirectory
from bot.jira.client import JiraGateway
from bot.jira.errors import JiraError
from bot.pipeline.issue_fetch import service_credentials
from bot.routing.jql import JiraNames
from bot.routing.matcher import normalise_instance_id

log = logging.getLogger(__name__)


class JiraNamesCache:
    """Per instance (normalised URL): the names learnt, and when."""

    def __init__(
        self,
        *,
        gateway: JiraGateway,
        instances: InstanceDirectory,
        clock: Callable[[], datetime],
        refresh_seconds: float = 3600.0,
        retry_seconds: float = 60.0,
    ) -> None:
        self._gateway = gateway
        self._instances = instances
        self._clock = clock
        self._refresh = timedelta(seconds=refresh_seconds)
        self._retry = timedelta(seconds=retry_seconds)
        self._known: dict[str, JiraNames] = {}
        self._learnt_at: dict[str, datetime] = {}
        self._failed_at: dict[str, datetime] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        # Changes whenever what is known changes, so that indexes built with it are rebuilt.
        self.version = 0

    def known(self) -> Mapping[str, JiraNames]:
        return dict(self._known)

    def get(self, instance_id: str) -> JiraNames | None:
        return self._known.get(normalise_instance_id(instance_id))

    async def learn(self, instance_id: str, *, force: bool = False) -> JiraNames | None:
        """The instance's names, read from Jira when older than the refresh time (`force`: even
        if not, as a subscription being saved names something unknown), unless a read failed
        less than `retry_seconds` ago."""
        key = normalise_instance_id(instance_id)
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:  # concurrent callers share one read
            now = self._clock()
            learnt, failed = self._learnt_at.get(key), self._failed_at.get(key)
            if failed is not None and now - failed < self._retry:
                return self._known.get(key)
            if (
                learnt is not None
                and (now - learnt < self._refresh)
                and not (force and now - learnt >= self._retry)
            ):
                return self._known.get(key)
            return await self._read(key)

    async def _read(self, key: str) -> JiraNames | None:
        inst = self._instances.find(key)
        creds = service_credentials(inst.service_account) if inst is not None else None
        if inst is None or creds is None:
            return self._known.get(key)  # nobody may ask: JQL needing names stays as it is
        session = self._gateway.session(inst.url, creds, is_cloud=inst.is_cloud)
        try:
            fields = await session.custom_field_names()
            priorities = tuple(await session.priority_names())
        except JiraError as e:
            self._failed_at[key] = self._clock()
            log.warning("custom field names and priorities of %s not read (%s); kept as they were", key, e)
            return self._known.get(key)
        names = JiraNames.of(fields, priorities)
        self._learnt_at[key] = self._clock()
        self._failed_at.pop(key, None)
        if self._known.get(key) != names:
            self._known[key] = names
            self.version += 1
            log.info("%s: %d custom field names and %d priorities learnt", key, len(fields), len(priorities))
        return names
