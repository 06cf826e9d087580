"""The Mattermost client of a bot run without `mattermost.url`: slash commands still work.

A slash command's answer is the HTTP response, so commands need no Mattermost server. What
does need one (opening a dialog, direct messages, reading users, channels and posts) raises
MattermostNotConfigured, whose message says so in a sentence; channel posts (such as the
announcement of a new subscription) go where the webhooks' posts go: the console.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bot.mattermost.client import MattermostClient
from bot.mattermost.models import MattermostNotConfigured, OutgoingPost, PostSink

NEEDS_MATTERMOST = (
    "{what} needs a Mattermost server, and this bot runs without one: "
    "set `mattermost.url` (MATTERMOST_URL) and `mattermost.bot_token` (MATTERMOST_BOT_TOKEN)."
)


class OfflineMattermost(MattermostClient):
    """Stands in for MattermostClient when no Mattermost is configured (see module doc)."""

    def __init__(self, posts: PostSink) -> None:
        super().__init__("http://mattermost.invalid", "")
        self._console = posts

    def __repr__(self) -> str:
        return "OfflineMattermost()"

    @staticmethod
    def _refuse(what: str) -> MattermostNotConfigured:
        return MattermostNotConfigured(NEEDS_MATTERMOST.format(what=what))

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def ping(self) -> bool:
        return True

    async def login(self) -> str:
        raise self._refuse("Logging in to Mattermost")

    async def create_post(self, post: OutgoingPost) -> str:
        return await self._console.create_post(post)

    async def update_post(
        self, post_id: str, message: str | None = None, props: Mapping[str, Any] | None = None
    ) -> None:
        update = getattr(self._console, "update_post", None)
        if update is not None:
            await update(post_id, message, props)

    async def resolve_channel(self, team: str, channel: str) -> str | None:
        return await self._console.resolve_channel(team, channel)

    async def channel_exists(self, channel_id: str) -> bool:
        return await self._console.channel_exists(channel_id)

    async def is_system_admin(self, user_id: str) -> bool:
        raise self._refuse("Knowing who is a Mattermost system admin")

    async def open_dialog(self, trigger_id: str, url: str, dialog: Mapping[str, Any]) -> None:
        raise self._refuse("This command opens a dialog, which")

    async def direct_channel(self, user_id: str) -> str:
        raise self._refuse("A direct message")

    async def get_file(self, file_id: str, *, max_bytes: int) -> bytes:
        raise self._refuse("Reading a file from Mattermost")

    async def _call(
        self, method: str, path: str, body: dict[str, Any] | list[Any] | None, *, what: str
    ) -> Any:
        # Every other read and write of the REST API comes through here.
        raise self._refuse(f"Asking Mattermost ({what})")
