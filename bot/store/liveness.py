"""Whether the holder of a claim kept in the store (a kv entry naming its replica) has died."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from bot.store.interfaces import ReplicaRepository

log = logging.getLogger(__name__)


async def holder_is_dead(replicas: ReplicaRepository | None, holder: Any, *, now: datetime) -> bool:
    """Whether `holder` is a replica whose heartbeat went stale. False when it cannot be told
    (no heartbeats, a holder that is not a replica's name, heartbeats unreadable): the claim's
    own expiry still hands it over then."""
    if replicas is None or not isinstance(holder, str):
        return False
    try:
        return await replicas.is_dead(holder, now=now)
    except Exception as e:
        log.warning("replica heartbeats not read: %s", e)
        return False
