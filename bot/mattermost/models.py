"""What the bot sends to Mattermost, and how a failed send is classified."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol


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
