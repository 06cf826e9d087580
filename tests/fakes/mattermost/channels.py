"""Teams, channels and memberships of the fake Mattermost, and their endpoints."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from bot.mattermost.models import is_valid_id, new_id
from tests.fakes.mattermost.common import (
    _USER,
    _check_name,
    _invalid_param,
    _invalid_url_param,
    _is_admin,
    _json_response,
    _MattermostError,
    _now_ms,
    _permission_error,
    _read_json,
)


def _team_not_found() -> _MattermostError:
    return _MattermostError(
        404, "app.team.get_by_name.missing.app_error", "Unable to find the existing team."
    )


class TeamsAndChannels:
    """Teams, channels (direct ones included) and who is a member, with their endpoints.

    State lives on `FakeMattermost` (server.py).
    """

    def add_team(self, name: str, display_name: str | None = None) -> str:
        _check_name(name)
        team_id = new_id()
        now = _now_ms()
        self.teams[team_id] = {
            "id": team_id,
            "create_at": now,
            "update_at": now,
            "delete_at": 0,
            "display_name": display_name or name,
            "name": name,
            "description": "",
            "email": "",
            "type": "O",
            "allowed_domains": "",
            "invite_id": new_id(),
            "allow_open_invite": True,
        }
        return team_id

    def add_channel(
        self,
        team: str,
        name: str,
        *,
        display_name: str | None = None,
        private: bool = False,
        members: tuple[str, ...] | list[str] = (),
    ) -> str:
        """A channel in the team named `team` (created when missing). `members` are user ids;
        only private channels require the poster to be one."""
        _check_name(name)
        team_id = self._team_id(team) or self.add_team(team)
        if self._find_channel(team_id, name) is not None:
            raise ValueError(f"channel {team}/{name} exists already")
        return self._insert_channel(
            team_id, name, display_name or name, "P" if private else "O", set(members)
        )

    def add_member(self, channel_id: str, user_id: str, *, admin: bool = False) -> None:
        """Make the user a member of the channel; `admin` gives the channel_admin role."""
        self._members[channel_id].add(user_id)
        if admin:
            self._channel_admins.add((channel_id, user_id))

    def add_team_member(self, team: str, user_id: str, *, admin: bool = False) -> str:
        """Make the user a member of the team named `team` (created when missing); `admin` gives
        the team_admin role. Returns the team id."""
        team_id = self._team_id(team) or self.add_team(team)
        self._team_members.setdefault(team_id, {})[user_id] = "team_user team_admin" if admin else "team_user"
        return team_id

    def direct_channel(self, user_a: str, user_b: str) -> str:
        """Id of the direct channel between two users (ids), created when missing."""
        name = "__".join(sorted((user_a, user_b)))
        existing = self._find_channel("", name)
        return existing["id"] if existing else self._insert_channel("", name, "", "D", {user_a, user_b})

    def archive_channel(self, channel_id: str) -> None:
        self.channels[channel_id]["delete_at"] = _now_ms()

    async def _get_team_by_name(self, request: web.Request) -> web.Response:
        team_id = self._team_id(request.match_info["team_name"])
        if team_id is None:
            raise _team_not_found()
        return _json_response(self.teams[team_id])

    async def _get_channel_by_name(self, request: web.Request) -> web.Response:
        team_id = self._team_id(request.match_info["team_name"])
        if team_id is None:
            raise _team_not_found()
        channel = self._find_channel(team_id, request.match_info["channel_name"])
        include_deleted = request.query.get("include_deleted", "").lower() == "true"
        if (
            channel is None
            or (channel["delete_at"] and not include_deleted)
            or not self._can_access(request[_USER], channel)
        ):
            # The server answers "does not exist" for a channel the user may not read, too.
            raise _MattermostError(
                404, "app.channel.get_by_name.missing.app_error", "Channel does not exist."
            )
        return _json_response(channel)

    async def _get_channel(self, request: web.Request) -> web.Response:
        channel_id = request.match_info["channel_id"]
        if not is_valid_id(channel_id):
            raise _invalid_url_param("channel_id")
        channel = self.channels.get(channel_id)
        if channel is None:
            raise _MattermostError(
                404, "app.channel.get.existing.app_error", "Unable to find the existing channel."
            )
        if not self._can_access(request[_USER], channel):
            raise _permission_error()
        return _json_response(channel)

    async def _create_direct_channel(self, request: web.Request) -> web.Response:
        ids = await _read_json(request, "user_ids")
        if not isinstance(ids, list) or len(ids) != 2 or not all(isinstance(i, str) for i in ids):
            raise _invalid_param("user_ids")
        if not all(is_valid_id(i) for i in ids):
            raise _invalid_param("user_id")
        me = request[_USER]
        if me["id"] not in ids and not _is_admin(me):
            raise _permission_error()
        if not all(i in self.users for i in ids):
            raise _MattermostError(
                400,
                "api.channel.create_direct_channel.invalid_user.app_error",
                "Invalid user ID for direct channel creation.",
            )
        name = "__".join(sorted(ids))
        existing = self._find_channel("", name)
        channel_id = existing["id"] if existing else self._insert_channel("", name, "", "D", set(ids))
        return _json_response(self.channels[channel_id], status=201)

    async def _get_channel_member(self, request: web.Request) -> web.Response:
        channel_id, user_id = request.match_info["channel_id"], request.match_info["user_id"]
        if not is_valid_id(channel_id):
            raise _invalid_url_param("channel_id")
        if not is_valid_id(user_id):
            raise _invalid_url_param("user_id")
        channel = self.channels.get(channel_id)
        if channel is None or not self._can_access(request[_USER], channel):
            raise _permission_error()
        if user_id not in self._members.get(channel_id, set()):
            raise _MattermostError(
                404,
                "app.channel.get_member.missing.app_error",
                "No channel member found for that user ID and channel ID.",
            )
        admin = (channel_id, user_id) in self._channel_admins
        return _json_response(
            {
                "channel_id": channel_id,
                "user_id": user_id,
                "roles": "channel_user channel_admin" if admin else "channel_user",
                "last_viewed_at": 0,
                "msg_count": 0,
                "mention_count": 0,
                "notify_props": {"desktop": "default", "mark_unread": "all", "push": "default"},
                "last_update_at": _now_ms(),
                "scheme_guest": False,
                "scheme_user": True,
                "scheme_admin": admin,
                "explicit_roles": "",
            }
        )

    async def _get_team_member(self, request: web.Request) -> web.Response:
        team_id, user_id = request.match_info["team_id"], request.match_info["user_id"]
        if not is_valid_id(team_id):
            raise _invalid_url_param("team_id")
        if not is_valid_id(user_id):
            raise _invalid_url_param("user_id")
        if team_id not in self.teams:
            raise _permission_error()  # the server checks view_team before looking
        roles = self._team_members.get(team_id, {}).get(user_id)
        if roles is None:
            raise _MattermostError(
                404,
                "app.team.get_member.missing.app_error",
                "No team member found for that user ID and team ID.",
            )
        return _json_response(
            {
                "team_id": team_id,
                "user_id": user_id,
                "roles": roles,
                "delete_at": 0,
                "scheme_guest": False,
                "scheme_user": True,
                "scheme_admin": "team_admin" in roles.split(),
                "explicit_roles": "",
            }
        )

    async def _get_channels_for_user(self, request: web.Request) -> web.Response:
        user_id = request.match_info["user_id"]
        me = request[_USER]
        if user_id == "me":
            user_id = me["id"]
        if user_id != me["id"] and not _is_admin(me):
            raise _permission_error()
        include_deleted = request.query.get("include_deleted", "").lower() == "true"
        return _json_response(
            [
                c
                for c in self.channels.values()
                if user_id in self._members.get(c["id"], set()) and (include_deleted or not c["delete_at"])
            ]
        )

    def _team_id(self, name: str) -> str | None:
        return next((t["id"] for t in self.teams.values() if t["name"] == name), None)

    def _find_channel(self, team_id: str, name: str) -> dict[str, Any] | None:
        return next(
            (c for c in self.channels.values() if c["team_id"] == team_id and c["name"] == name), None
        )

    def _insert_channel(
        self, team_id: str, name: str, display_name: str, kind: str, members: set[str]
    ) -> str:
        channel_id = new_id()
        now = _now_ms()
        self.channels[channel_id] = {
            "id": channel_id,
            "create_at": now,
            "update_at": now,
            "delete_at": 0,
            "team_id": team_id,
            "type": kind,
            "display_name": display_name,
            "name": name,
            "header": "",
            "purpose": "",
            "last_post_at": 0,
            "total_msg_count": 0,
            "extra_update_at": 0,
            "creator_id": "",
        }
        self._members[channel_id] = members
        return channel_id

    def _can_access(self, user: dict[str, Any], channel: dict[str, Any]) -> bool:
        if channel["type"] == "O" or _is_admin(user):
            return True
        return user["id"] in self._members.get(channel["id"], set())

    def _can_post(self, user: dict[str, Any], channel: dict[str, Any]) -> bool:
        roles = user["roles"].split()
        if "system_post_all" in roles or (channel["type"] == "O" and "system_post_all_public" in roles):
            return True
        return self._can_access(user, channel)
