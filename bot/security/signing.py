"""HMAC-signed contexts for Mattermost buttons, menus and dialogs.

Mattermost hands the `context` of a clicked button (and the `state` of a submitted dialog) back to
the bot exactly as the bot wrote it, but anyone who can reach the bot's URL can send one too. So
every context the bot hands out carries an expiry, a nonce and an HMAC-SHA256 signature over its
canonical JSON, and nothing is acted on before the signature is checked.

Contexts travel through Mattermost's Go server as `map[string]any`: numbers come back as float64
and keys get re-ordered. Signing therefore covers the canonical JSON of the parsed values (sorted
keys, no spaces) and refuses floats and integers beyond 2**53, which would not survive the trip.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Protocol

EXPIRES = "_exp"
NONCE = "_nonce"
SIGNATURE = "_sig"
USER = "_uid"
ONCE = "_once"
RESERVED_KEYS = frozenset({EXPIRES, NONCE, SIGNATURE, USER, ONCE})

_MAX_SAFE_INT = 2**53
_MIN_KEY_BYTES = 16


class ForgedContext(Exception):
    """A context that must not be acted on: unsigned, tampered with, expired, replayed or
    meant for another user. `reason` is safe to log; it names no secret."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ExpiredContext(ForgedContext):
    """A genuine context whose time is over (an old button or an abandoned dialog)."""


class ReplayedContext(ForgedContext):
    """A genuine single-use context that was already used (a second click on a choice)."""


# Records a nonce until `expires_at`; True when it was not known before (the first use wins).
# The store's `kv.add(key, value, expires_at=..., now=...)` has exactly this meaning.
NonceRecorder = Callable[[str, datetime], Awaitable[bool]]


class NonceClaims(Protocol):
    """A NonceRecorder that can also give a nonce back, so that a dialog answered with an error
    (left open for a correction) can be submitted again. `bot.store.nonces.StoreNonces` is the
    one replicas share; `MemoryNonces` serves a single process and tests."""

    async def __call__(self, nonce: str, expires_at: datetime) -> bool: ...

    async def release(self, nonce: str) -> None: ...


def derive_key(master: bytes, purpose: str) -> bytes:
    """A key for one purpose from the master key, so that signing contexts and encrypting tokens
    never use the same key material."""
    if len(master) < _MIN_KEY_BYTES:
        raise ValueError(f"the master key must be at least {_MIN_KEY_BYTES} bytes")
    return hmac.new(master, b"jira-chatops/" + purpose.encode(), hashlib.sha256).digest()


def canonical_json(value: Any) -> bytes:
    """The bytes that are signed: sorted keys, no whitespace, ASCII only."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def _check_portable(value: Any, path: str = "context") -> None:
    """Raise ValueError for values that would not come back unchanged from Mattermost."""
    if value is None or isinstance(value, bool | str):
        return
    if isinstance(value, int):
        if abs(value) >= _MAX_SAFE_INT:
            raise ValueError(f"{path}: integer {value} does not survive a JSON round trip through Go")
        return
    if isinstance(value, float):
        raise ValueError(f"{path}: floats do not survive a round trip through Mattermost; use a string")
    if isinstance(value, Mapping):
        for k, v in value.items():
            if not isinstance(k, str):
                raise ValueError(f"{path}: keys must be strings, not {type(k).__name__}")
            _check_portable(v, f"{path}.{k}")
        return
    if isinstance(value, list | tuple):
        for i, v in enumerate(value):
            _check_portable(v, f"{path}[{i}]")
        return
    raise ValueError(f"{path}: {type(value).__name__} is not JSON")


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _timestamp(now: datetime) -> int:
    if now.tzinfo is None:
        raise ValueError("`now` must be timezone-aware")
    return int(now.timestamp())


class ContextSigner:
    """Signs and checks contexts with one HMAC-SHA256 key (use `derive_key` to get one)."""

    def __init__(self, key: bytes) -> None:
        if len(key) < _MIN_KEY_BYTES:
            raise ValueError(f"a signing key must be at least {_MIN_KEY_BYTES} bytes")
        self._key = key

    def __repr__(self) -> str:  # the key stays out of logs and tracebacks
        return "ContextSigner(<key>)"

    def sign(
        self,
        context: Mapping[str, Any],
        *,
        ttl_seconds: float,
        now: datetime,
        user_id: str | None = None,
        once: bool = False,
    ) -> dict[str, Any]:
        """A copy of `context` with `_exp`, `_nonce` and `_sig` added.

        `user_id` binds it to one Mattermost user (others are refused); `once` marks it
        single-use, which `verify_once` enforces. Raises ValueError for reserved keys or values
        that would not survive the round trip through Mattermost.
        """
        if ttl_seconds <= 0:
            raise ValueError("ttl_seconds must be positive")
        clash = RESERVED_KEYS.intersection(context)
        if clash:
            raise ValueError(f"context uses reserved keys: {sorted(clash)}")
        _check_portable(context)
        signed: dict[str, Any] = json.loads(canonical_json(context))  # a deep, plain copy
        signed[EXPIRES] = _timestamp(now) + max(1, int(ttl_seconds))
        signed[NONCE] = secrets.token_urlsafe(12)
        if user_id is not None:
            signed[USER] = user_id
        if once:
            signed[ONCE] = True
        signed[SIGNATURE] = self._mac(signed)
        return signed

    def verify(
        self, context: Mapping[str, Any] | None, now: datetime, *, user_id: str | None = None
    ) -> dict[str, Any]:
        """The context without its signature fields, once the signature and expiry are checked.

        With `user_id`, a context bound to another user is refused. Raises ForgedContext (or its
        ExpiredContext subclass). Does not check single use: see `verify_once`.
        """
        if not isinstance(context, Mapping):
            raise ForgedContext("no context")
        given = context.get(SIGNATURE)
        if not isinstance(given, str) or not given:
            raise ForgedContext("context is not signed")
        unsigned = {k: v for k, v in context.items() if k != SIGNATURE}
        try:
            expected = self._mac(unsigned)
        except (TypeError, ValueError):
            raise ForgedContext("context is not JSON") from None
        if not hmac.compare_digest(given.encode("ascii", "replace"), expected.encode("ascii")):
            raise ForgedContext("bad signature")
        expires = unsigned.get(EXPIRES)
        if not isinstance(expires, int | float) or isinstance(expires, bool):
            raise ForgedContext("context has no expiry")
        if _timestamp(now) >= expires:
            raise ExpiredContext("context expired")
        bound = unsigned.get(USER)
        if bound is not None and user_id is not None and bound != user_id:
            raise ForgedContext("context belongs to another user")
        return {k: v for k, v in unsigned.items() if k not in RESERVED_KEYS}

    async def verify_once(
        self,
        context: Mapping[str, Any] | None,
        now: datetime,
        remember: NonceRecorder,
        *,
        user_id: str | None = None,
    ) -> dict[str, Any]:
        """`verify`, and for a context signed with `once=True`, refuse a second use.

        `remember(nonce, expires_at)` records the nonce until the context expires anyway and
        returns True on its first use. Raises ReplayedContext on a repeat.
        """
        plain = self.verify(context, now, user_id=user_id)
        assert context is not None  # verify refused None
        if context.get(ONCE) is True:
            expires_at = datetime.fromtimestamp(float(context[EXPIRES]), UTC)
            if not await remember(str(context[NONCE]), expires_at):
                raise ReplayedContext("context was already used")
        return plain

    # -- dialog state: a signed context as one string --------------------------------------------

    def dumps(
        self,
        context: Mapping[str, Any],
        *,
        ttl_seconds: float,
        now: datetime,
        user_id: str | None = None,
        once: bool = False,
    ) -> str:
        """A signed context serialised as a string, for a dialog's `state`."""
        signed = self.sign(context, ttl_seconds=ttl_seconds, now=now, user_id=user_id, once=once)
        return canonical_json(signed).decode("ascii")

    def loads(self, state: str | None, now: datetime, *, user_id: str | None = None) -> dict[str, Any]:
        """The context of a `dumps` string, checked as `verify` does. Raises ForgedContext."""
        return self.verify(self._parse_state(state), now, user_id=user_id)

    async def loads_once(
        self,
        state: str | None,
        now: datetime,
        remember: NonceRecorder,
        *,
        user_id: str | None = None,
        require_once: bool = False,
    ) -> dict[str, Any]:
        """`loads` with the single-use check of `verify_once`.

        With `require_once`, a state not signed with `once=True` is refused too, as expired: it
        can only come from a form opened before every form became single-use.
        """
        parsed = self._parse_state(state)
        if require_once and parsed.get(ONCE) is not True:
            self.verify(parsed, now, user_id=user_id)  # a forgery is still told apart
            raise ExpiredContext("state is not single-use")
        return await self.verify_once(parsed, now, remember, user_id=user_id)

    async def release_once(self, state: str | None, claims: NonceClaims) -> None:
        """Give back the nonce of a single-use state that `loads_once` accepted, so that the
        same state may be used once more. Only for a state this process has just verified."""
        parsed = self._parse_state(state)
        if parsed.get(ONCE) is True and isinstance(parsed.get(NONCE), str):
            await claims.release(parsed[NONCE])

    @staticmethod
    def _parse_state(state: str | None) -> dict[str, Any]:
        if not state:
            raise ForgedContext("no state")
        try:
            parsed = json.loads(state)
        except ValueError:
            raise ForgedContext("state is not JSON") from None
        if not isinstance(parsed, dict):
            raise ForgedContext("state is not an object")
        return parsed

    def _mac(self, unsigned: Mapping[str, Any]) -> str:
        return _b64(hmac.new(self._key, canonical_json(unsigned), hashlib.sha256).digest())


class MemoryNonces:
    """A process-local NonceRecorder, for a single replica and for tests; several replicas need
    a shared one (the store's key-value table)."""

    def __init__(self, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._clock = clock
        self._seen: dict[str, datetime] = {}

    async def __call__(self, nonce: str, expires_at: datetime) -> bool:
        now = self._clock()
        # Expired nonces can go: their contexts are refused for expiry before this is asked.
        self._seen = {n: exp for n, exp in self._seen.items() if exp > now}
        if nonce in self._seen:
            return False
        self._seen[nonce] = expires_at
        return True

    async def release(self, nonce: str) -> None:
        self._seen.pop(nonce, None)
