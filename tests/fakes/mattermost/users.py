"""Users of the fake Mattermost: creating them, and the /users endpoints."""

from __future__ import annotations

from aiohttp import web

from bot.mattermost.models import is_valid_id, new_id
from tests.fakes.mattermost.common import (
    _USER,
    _invalid_body_param,
    _invalid_url_param,
    _json_response,
    _now_ms,
    _read_json,
    _user_not_found,
)


class Users:
    """Users: `add_user` and GET /users/{id}, /users/username/{name}, POST /users/ids.

    State lives on `FakeMattermost` (server.py).
    """

    def add_user(
        self,
        username: str,
        *,
        email: str | None = None,
        first_name: str = "",
        last_name: str = "",
        nickname: str = "",
        roles: str = "system_user",
        is_bot: bool = False,
        token: str | None = None,
    ) -> str:
        """A user; with `token`, requests bearing that token act as this user."""
        if any(u["username"] == username for u in self.users.values()):
            raise ValueError(f"user {username} exists already")
        user_id = new_id()
        now = _now_ms()
        self.users[user_id] = {
            "id": user_id,
            "create_at": now,
            "update_at": now,
            "delete_at": 0,
            "username": username,
            "auth_data": "",
            "auth_service": "",
            "email": email if email is not None else f"{username}@example.com",
            "email_verified": True,
            "nickname": nickname,
            "first_name": first_name,
            "last_name": last_name,
            "position": "",
            "roles": roles,
            "locale": "en",
            "timezone": {"automaticTimezone": "", "manualTimezone": "", "useAutomaticTimezone": "true"},
            "is_bot": is_bot,
            "disable_welcome_email": False,
        }
        if token is not None:
            self._tokens[token] = user_id
        return user_id

    async def _get_user(self, request: web.Request) -> web.Response:
        user_id = request.match_info["user_id"]
        if user_id == "me":
            return _json_response(request[_USER])
        if not is_valid_id(user_id):
            raise _invalid_url_param("user_id")
        user = self.users.get(user_id)
        if user is None:
            raise _user_not_found()
        return _json_response(user)

    async def _get_user_by_username(self, request: web.Request) -> web.Response:
        username = request.match_info["username"].lower()
        for user in self.users.values():
            if user["username"] == username:
                return _json_response(user)
        raise _user_not_found()

    async def _get_users_by_ids(self, request: web.Request) -> web.Response:
        ids = await _read_json(request, "user_ids")
        if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
            raise _invalid_body_param("user_ids")
        return _json_response([self.users[i] for i in ids if i in self.users])

    def _user_id_by_name(self, username: str) -> str:
        name = username.removeprefix("@").lower()
        for user in self.users.values():
            if user["username"] == name:
                return str(user["id"])
        raise KeyError(f"no user {username!r}")
