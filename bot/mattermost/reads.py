"""Read-only Mattermost calls: users, channels, memberships, a channel's recent posts, the bot's channels."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from bot.mattermost.models import DeliveryError

ROLE_SYSTEM_ADMIN = "system_admin"
# GET /channels/{id}/posts?since= returns at most this many posts (server's GetPostsSince).
_SINCE_PAGE_LIMIT = 1000
_MAX_SINCE_PAGES = 20


class MattermostReads:
    """The read-only calls of MattermostClient, which supplies the two request methods below."""

    async def _get_json(self, path: str, *, what: str = "") -> dict[str, Any]:
        raise NotImplementedError

    async def _call(
        self, method: str, path: str, body: dict[str, Any] | list[Any] | None, *, what: str
    ) -> Any:
        raise NotImplementedError

    # -- users, channels, roles ------------------------------------------------------------------

    async def get_user(self, user_id: str) -> dict[str, Any]:
        """The user as Mattermost has it (username, email, `roles`, ...). Raises DeliveryError
        (status 404 for an unknown user)."""
        return await self._get_json(f"/users/{quote(user_id, safe='')}", what=f"user {user_id}")

    async def get_user_by_username(self, username: str) -> dict[str, Any] | None:
        """The user named `username` (a leading @ is ignored), or None when there is none."""
        name = username.strip().removeprefix("@").lower()
        if not name:
            return None
        try:
            return await self._get_json(f"/users/username/{quote(name, safe='')}", what=f"user @{name}")
        except DeliveryError as exc:
            if exc.status in (400, 404):
                return None
            raise

    async def is_system_admin(self, user_id: str) -> bool:
        """Whether Mattermost gives the user the system_admin role. Asked of Mattermost each
        time: a role claimed in a request is never trusted."""
        user = await self.get_user(user_id)
        return ROLE_SYSTEM_ADMIN in str(user.get("roles", "")).split()

    async def get_channel(self, channel_id: str) -> dict[str, Any]:
        """The channel (`type` O public, P private, D direct, G group; `team_id`, `name`, ...).
        Raises DeliveryError (404 unknown, 403 when the bot may not read it)."""
        return await self._get_json(f"/channels/{quote(channel_id, safe='')}", what=f"channel {channel_id}")

    async def get_channel_member(self, channel_id: str, user_id: str) -> dict[str, Any] | None:
        """The user's membership of the channel (`roles` holds channel_admin for its admins),
        or None when the user is not a member."""
        path = f"/channels/{quote(channel_id, safe='')}/members/{quote(user_id, safe='')}"
        try:
            return await self._get_json(path, what=f"membership of {user_id} in channel {channel_id}")
        except DeliveryError as exc:
            if exc.status == 404:
                return None
            raise

    async def get_team_member(self, team_id: str, user_id: str) -> dict[str, Any] | None:
        """The user's membership of the team (`roles` holds team_admin for its admins), or None
        when the user is not a member."""
        path = f"/teams/{quote(team_id, safe='')}/members/{quote(user_id, safe='')}"
        try:
            return await self._get_json(path, what=f"membership of {user_id} in team {team_id}")
        except DeliveryError as exc:
            if exc.status == 404:
                return None
            raise

    # -- posts and channels the bot reads -----------------------------------------------------

    async def get_posts_since(self, channel_id: str, since_ms: int) -> list[dict[str, Any]]:
        """Posts of the channel created or changed after `since_ms` (Unix milliseconds), oldest
        first. Mattermost answers at most 1000 posts by update time, and adds the thread roots of
        the replies it returns: callers filter on `create_at` and `delete_at` themselves."""
        found: dict[str, dict[str, Any]] = {}
        since = since_ms
        # Each page moves `since` forward to the newest update seen, so a long absence is read
        # in full; the page cap guards against a server that ignores `since`.
        for _ in range(_MAX_SINCE_PAGES):
            path = f"/channels/{quote(channel_id, safe='')}/posts?since={int(since)}"
            page = await self._get_json(path, what=f"posts of channel {channel_id}")
            posts = page.get("posts") or {}
            if not isinstance(posts, dict):
                break
            newest = since
            for post in posts.values():
                if isinstance(post, dict) and isinstance(post.get("id"), str):
                    found[post["id"]] = post
                    newest = max(newest, int(post.get("update_at") or 0))
            if len(posts) < _SINCE_PAGE_LIMIT or newest <= since:
                break
            since = newest
        return sorted(found.values(), key=lambda p: (int(p.get("create_at") or 0), p["id"]))

    async def my_channels(self) -> list[dict[str, Any]]:
        """Every channel the bot is a member of, in all teams, direct and group messages
        included (GET /users/me/channels, Mattermost 6.1+)."""
        result = await self._call("get", "/users/me/channels", None, what="the bot's channels")
        if not isinstance(result, list):
            raise DeliveryError(
                "Mattermost answered the channel list with something other than a list", retryable=False
            )
        return [c for c in result if isinstance(c, dict) and isinstance(c.get("id"), str)]
