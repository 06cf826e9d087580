"""Single-use nonces of signed contexts (dialog states, one-time buttons), claimed in the database.

Every replica behind the load balancer checks a submission against the same rows, so a form sent
twice, to one replica or to two, acts once. A claim is the key-value table's `add`: one atomic
insert-if-absent (`INSERT … ON CONFLICT DO UPDATE … WHERE expired`) on SQLite and PostgreSQL
alike, so of concurrent claimers exactly one wins. It lasts until the context expires anyway
(an expired context is refused before its nonce is asked about), after which the row may be
reused or purged; no table of its own is needed.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from bot.store.interfaces import KeyValueRepository

PREFIX = "nonce:"


def _utc_now() -> datetime:
    return datetime.now(UTC)


class StoreNonces:
    """A `bot.security.signing.NonceClaims` backed by the store's key-value table."""

    def __init__(self, kv: KeyValueRepository, clock: Callable[[], datetime] = _utc_now) -> None:
        self._kv = kv
        self._clock = clock

    async def __call__(self, nonce: str, expires_at: datetime) -> bool:
        """Claim `nonce` until `expires_at`; True for the first claimer only."""
        return await self._kv.add(PREFIX + nonce, True, expires_at=expires_at, now=self._clock())

    async def release(self, nonce: str) -> None:
        """Give the nonce back: the next claim wins again."""
        await self._kv.delete(PREFIX + nonce)


__all__ = ["PREFIX", "StoreNonces"]
