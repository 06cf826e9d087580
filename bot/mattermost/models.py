"""What the bot sends to Mattermost, and how a failed send is classified."""

from __future__ import annotations

import base64
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

# Mattermost ids are 16 random bytes in base32 with this alphabet, without padding: 26 lowercase chars.
_ID_ALPHABET = "ybndrfg8ejkmcpqxot1uwisza345h769"
_ID_TRANSLATION = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", _ID_ALPHABET)


def encode_id(raw: bytes) -> str:
    """The 26-char Mattermost-style id for 16 bytes (stable: the same bytes give the same id)."""
    if len(raw) != 16:
        raise ValueError("a Mattermost id encodes exactly 16 bytes")
    return base64.b32encode(raw).decode("ascii").rstrip("=").translate(_ID_TRANSLATION)


def new_id() -> str:
    """A fresh random id shaped like the ones Mattermost assigns."""
    return encode_id(secrets.token_bytes(16))


def is_valid_id(value: str) -> bool:
    """Mattermost's own check: 26 letters or digits."""
    return len(value) == 26 and value.isascii() and value.isalnum()


@dataclass(frozen=True, slots=True)
class OutgoingPost:
    channel_id: str
    message: str
    props: Mapping[str, Any] = field(default_factory=dict)
    root_id: str = ""
    # Stable per delivery: Mattermost drops a second create with the same pending_post_id,
    # so a post retried after a timeout or a crash is not duplicated.
    pending_post_id: str = ""


class DeliveryError(Exception):
    """A post could not be made. `retryable` says whether trying later may succeed."""

    def __init__(self, message: str, *, retryable: bool, retry_after: float | None = None, status: int = 0):
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after
        self.status = status


class MattermostNotConfigured(DeliveryError):
    """What was asked needs a Mattermost server, and none is configured (no `mattermost.url`).
    The message is a sentence for the user."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=False)


class PostSink(Protocol):
    """Where posts go: the Mattermost REST API, or the console when no Mattermost is configured."""

    async def create_post(self, post: OutgoingPost) -> str:
        """Create the post and return its id. Raises DeliveryError."""
        ...

    async def resolve_channel(self, team: str, channel: str) -> str | None:
        """Channel id for a team name and channel name, or None when there is no such channel."""
        ...

    async def channel_exists(self, channel_id: str) -> bool: ...

    async def ping(self) -> bool:
        """Whether Mattermost is reachable (readiness)."""
        ...

    async def close(self) -> None: ...
