"""What the bot remembers of an issue between webhooks: its security level.

Jira Cloud sends comment events with only a handful of issue fields and no security level, so
such an event alone cannot tell whether the issue is restricted. The level seen in the issue's
last complete webhook fills the gap; an issue never seen complete stays unroutable rather than
risk posting restricted content to a channel.
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from datetime import datetime, timedelta

from bot.jira.events import IssueEvent, NamedValue
from bot.store.interfaces import KeyValueRepository

SECURITY_FIELD = "security"


def _key(instance_id: str, issue_id: str) -> str:
    return f"issue-security:{instance_id}:{issue_id}"


def _encode(level: NamedValue | None) -> dict[str, str] | None:
    return None if level is None else {"id": level.id, "name": level.name}


def with_security_level(event: IssueEvent, level: NamedValue | None) -> IssueEvent:
    """The event with its issue's security level known (no longer partial)."""
    values = dict(event.issue.field_values)
    values[SECURITY_FIELD] = () if level is None else (level,)
    issue = dataclasses.replace(event.issue, security_level=level, field_values=values, fields_partial=False)
    return dataclasses.replace(event, issue=issue)


class IssueMemory:
    def __init__(
        self, kv: KeyValueRepository, *, ttl: timedelta = timedelta(days=180), cache_size: int = 10_000
    ):
        self._kv = kv
        self._ttl = ttl
        # Last level written per key: most events repeat it, and a write per event would double
        # the database work of processing.
        self._written: OrderedDict[str, dict[str, str] | None] = OrderedDict()
        self._cache_size = cache_size
        # Levels learnt since the last `save`, by key: the processor writes a batch's in one
        # transaction (a transaction per event cost more than the rest of processing it).
        self._unsaved: dict[str, tuple[dict[str, str] | None, datetime]] = {}

    async def complete(self, event: IssueEvent, instance_id: str, now: datetime) -> IssueEvent:
        """Remember the level of a complete event; fill it into a partial one when known."""
        key = _key(instance_id, event.issue.id)
        if not event.issue.fields_partial:
            value = _encode(event.issue.security_level)
            if key not in self._written or self._written[key] != value:
                self._unsaved[key] = (value, now + self._ttl)
                self._remember(key, value)
            return event
        if key in self._unsaved:
            level = self._unsaved[key][0]
        else:
            stored = await self._kv.get(key, now=now)
            if not isinstance(stored, dict) or "security" not in stored:
                return event
            level = stored["security"]
        return with_security_level(event, None if level is None else NamedValue(level["id"], level["name"]))

    async def save(self) -> None:
        """Write the levels learnt since the last save, in one transaction. On an error none is
        taken for written: the events that taught them are processed again, and learn them again."""
        if not self._unsaved:
            return
        unsaved, self._unsaved = self._unsaved, {}
        try:
            await self._kv.put_many([(key, {"security": v}, until) for key, (v, until) in unsaved.items()])
        except BaseException:
            for key in unsaved:
                self._written.pop(key, None)
            raise

    def _remember(self, key: str, value: dict[str, str] | None) -> None:
        self._written[key] = value
        self._written.move_to_end(key)
        while len(self._written) > self._cache_size:
            self._written.popitem(last=False)
