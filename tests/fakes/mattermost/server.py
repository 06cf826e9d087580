"""An in-process Mattermost speaking the parts of REST API v4 the bot uses, over real HTTP.

Behaviour copied from the Mattermost server where tests depend on it:
- JSON answers carry `Content-Type: application/json` exactly, errors the AppError shape
  {"id", "message", "detailed_error", "request_id", "status_code"}.
- An unknown token gets 401 `api.context.session_expired.app_error` whose detailed_error holds
  "token=<the token>", as the server does: clients must not log error details.
- POST /posts answers 201. A post carrying a `pending_post_id` seen in the last 30 s is not created
  again: the earlier post comes back (server's seenPendingPostIdsCache). While the first request is
  still saving, a repeat gets 500 `api.post.deduplicate_create_post.pending`; a failed create forgets
  the pending id so the client may retry.
- Posting to a channel the user cannot post in (unknown, or private without membership) is 403 for
  ordinary users; a system admin passes the permission check and gets 400 for an unknown channel.
  Public channels are open to every user (team membership is not modelled). Archived: 400.
- A missing post on update/patch is 403 (the server reports a permission error), on GET 404.
- POST /posts/ephemeral needs the system_admin role (create_post_ephemeral).
- A rate-limited request gets 429 with body "limit exceeded" as text/plain and the headers of the
  server's limiter: X-Ratelimit-Limit, X-Ratelimit-Remaining, X-Ratelimit-Reset and Retry-After,
  in whole seconds.
- POST /actions/dialogs/open needs a trigger id the fake issued (`issue_trigger_id`) within the last
  `trigger_ttl` seconds (the server's OutgoingIntegrationRequestsTimeout, 30 s). Unlike recent
  servers, which only log an invalid dialog, the fake refuses it with 400, so tests catch it.
- GET /channels/{id}/members/{user} and /teams/{id}/members/{user} answer the membership with its
  `roles` ("channel_user channel_admin", "team_user team_admin"), 404 for a non-member.
- POST /hooks/commands/{id} is a slash command's response_url (no authentication: the id is the
  secret): at most 5 uses, a JSON CommandResponse when the Content-Type is application/json and
  plain text otherwise. In-channel answers become posts by the command's user, ephemeral ones are
  recorded in `ephemeral_posts`.
- `slash_form`, `action_request` and `dialog_submission` build requests as Mattermost sends them
  to an integration.
- Files: `add_post(..., files=...)` stores uploaded files with the post (`file_ids`, and FileInfos
  under `metadata.files`); GET /posts/{id}/files/info lists them, GET /files/{id}/info describes
  one and GET /files/{id} serves its bytes with its MIME type, for users who may read the channel.
- GET /api/v4/websocket upgrades to the websocket API. The connection is authenticated by an
  `Authorization: Bearer` header on the upgrade, or by an `authentication_challenge` action
  (answered {"status": "OK", "seq_reply": n}); a challenge with an unknown token closes the
  connection, and one on a connection already authenticated is ignored, as the server does.
  Once authenticated the connection gets `hello`, then a `posted` event (`data.post` a JSON
  string, `data.channel_type`, `broadcast.channel_id`) for every post in a channel its user is a
  member of, each event with the connection's next `seq`. `drop_websockets` cuts every connection.
- GET /api/v4/channels/{id}/posts?since=ms answers the posts updated after `since` (deleted ones
  included, as the server does), as a PostList {"order", "posts", ...}, at most 1000.
- GET /api/v4/users/{id}/channels lists the user's channels in every team, direct ones included.
- POST /api/v4/reactions adds a reaction of the session's user (recorded in `reactions`).
"""

from __future__ import annotations

import asyncio
import base64
import json
import math
import re
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import urlencode

from aiohttp import WSMsgType, web
from aiohttp.test_utils import TestServer

from bot.mattermost.models import is_valid_id, new_id

PENDING_POST_IDS_CACHE_TTL = 30.0
TRIGGER_ID_TTL = 30.0
COMMAND_WEBHOOK_MAX_USES = 5
COMMAND_WEBHOOK_TTL = 30 * 60.0
_DIALOG_ELEMENT_TYPES = frozenset({"text", "textarea", "select", "bool", "radio", "date", "datetime"})
_TEXT_SUBTYPES = frozenset({"", "text", "email", "number", "tel", "url", "password"})
_MENTION_RE = re.compile(r"(?<![\w@])@([a-z0-9][a-z0-9._-]*)")
_CHANNEL_MENTION_RE = re.compile(r"(?<![\w~])~([a-z0-9][a-z0-9_-]*)")
MAX_MESSAGE_RUNES = 16383
MAX_PROPS_CHARS = 800000
_PUBLIC_PATHS = frozenset({"/api/v4/system/ping"})
# The websocket authenticates itself: by header on the upgrade or by an authentication_challenge.
_WEBSOCKET_PATH = "/api/v4/websocket"
_SINCE_LIMIT = 1000
_NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9_-]*[a-z0-9])?$")
# Typed request keys where aiohttp has them (3.14+), plain strings before.
_KeyFactory: Any = getattr(web, "RequestKey", None)
_USER: Any = _KeyFactory("user", dict) if _KeyFactory else "user"
_LATENCY_SPENT: Any = _KeyFactory("latency_spent", bool) if _KeyFactory else "latency_spent"


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    method: str
    path: str
    user_id: str  # empty when the request was not authenticated
    status: int


@dataclass(frozen=True, slots=True)
class SlashForm:
    """A slash command request as Mattermost posts it to the command's URL."""

    body: str  # application/x-www-form-urlencoded
    headers: dict[str, str]
    trigger_id: str
    response_url: str
    fields: dict[str, list[str]]


@dataclass(slots=True)
class _CommandHook:
    user_id: str
    channel_id: str
    root_id: str
    expires: float
    uses: int = 0


@dataclass(slots=True)
class _Failure:
    status: int
    retry_after: float | None
    path: str | None
    method: str | None
    body: str | None
    remaining: int | None = None  # fail_next: how many more requests fail
    until: float | None = None  # fail_for: monotonic deadline

    def matches(self, request: web.Request) -> bool:
        if self.path is not None and not _api_path(request).startswith(self.path):
            return False
        return self.method is None or request.method == self.method.upper()

    def active(self, now: float) -> bool:
        if self.remaining is not None:
            return self.remaining > 0
        return self.until is not None and now < self.until


@dataclass(eq=False)
class _WebsocketConnection:
    ws: web.WebSocketResponse
    request: web.Request
    user_id: str = ""
    seq: int = 0
    outbox: asyncio.Queue[dict[str, Any]] = field(default_factory=asyncio.Queue)

    def send_event(self, event: str, data: dict[str, Any], broadcast: dict[str, Any]) -> None:
        # `data` may hold the post itself: it is serialised when sent, so what a test helper adds
        # to the post right after saving it (files) is part of the event, as on the server.
        self.outbox.put_nowait({"event": event, "data": data, "broadcast": broadcast, "seq": self.seq})
        self.seq += 1

    def send_reply(self, seq_reply: int, status: str = "OK", data: dict[str, Any] | None = None) -> None:
        reply: dict[str, Any] = {"status": status, "seq_reply": seq_reply}
        if data is not None:
            reply["data"] = data
        self.outbox.put_nowait(reply)


class _MattermostError(Exception):
    def __init__(self, status: int, error_id: str, message: str, detailed: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.error_id = error_id
        self.message = message
        self.detailed = detailed


def _permission_error() -> _MattermostError:
    return _MattermostError(
        403, "api.context.permissions.app_error", "You do not have the appropriate permissions."
    )


def _invalid_param(name: str) -> _MattermostError:
    return _MattermostError(400, "api.context.invalid_param.app_error", f"Invalid {name} parameter.")


def _invalid_body_param(name: str) -> _MattermostError:
    return _MattermostError(
        400, "api.context.invalid_body_param.app_error", f"Invalid or missing {name} in request body."
    )


def _invalid_url_param(name: str) -> _MattermostError:
    return _MattermostError(
        400, "api.context.invalid_url_param.app_error", f"Invalid or missing {name} parameter in request URL."
    )


def _user_not_found() -> _MattermostError:
    return _MattermostError(404, "app.user.missing_account.const", "Unable to find the user.")


def _json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    # Exactly "application/json": the driver treats anything else (even with "; charset=utf-8") as raw.
    return web.Response(
        body=json.dumps(data).encode(),
        status=status,
        headers={"Content-Type": "application/json", **(headers or {})},
    )


def _now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(eq=False)
class FakeMattermost:
    """Recorded Mattermost state plus an aiohttp application serving it.

    The bot's account is created up front: `token` authenticates as it (`bot_user_id`).
    """

    token: str = "fake-bot-token"
    bot_username: str = "jira"
    bot_roles: str = "system_user"
    latency: float = 0.0
    pending_post_ttl: float = PENDING_POST_IDS_CACHE_TTL
    posts: list[dict[str, Any]] = field(default_factory=list)
    ephemeral_posts: list[dict[str, Any]] = field(default_factory=list)
    requests: list[RecordedRequest] = field(default_factory=list)
    # Opened dialogs: {"user_id", "trigger_id", "url", "dialog"}.
    dialogs: list[dict[str, Any]] = field(default_factory=list)
    # Bodies received on response URLs: {"hook_id", "content_type", "response"}.
    command_responses: list[dict[str, Any]] = field(default_factory=list)
    trigger_ttl: float = TRIGGER_ID_TTL

    def __post_init__(self) -> None:
        self.teams: dict[str, dict[str, Any]] = {}
        self.channels: dict[str, dict[str, Any]] = {}
        self.users: dict[str, dict[str, Any]] = {}
        self._tokens: dict[str, str] = {}
        self._members: dict[str, set[str]] = {}
        self._posts_by_id: dict[str, dict[str, Any]] = {}
        # pending_post_id -> (post id, or "" while the first request is saving; monotonic expiry)
        self._pending_post_ids: dict[str, tuple[str, float]] = {}
        self._failures: list[_Failure] = []
        self._path_latency: dict[str, float] = {}
        self._last_create_at = 0
        self._post_event: asyncio.Event | None = None
        self._server: TestServer | None = None
        self._saving: set[asyncio.Future[dict[str, Any]]] = set()
        self._channel_admins: set[tuple[str, str]] = set()
        # team id -> user id -> roles
        self._team_members: dict[str, dict[str, str]] = {}
        # trigger id -> (user id, monotonic expiry)
        self._trigger_ids: dict[str, tuple[str, float]] = {}
        self._command_hooks: dict[str, _CommandHook] = {}
        self._websockets: set[_WebsocketConnection] = set()
        self._websockets_refused = False
        # Authenticated websocket connections made so far (reconnections included).
        self.websocket_connects = 0
        # Reactions added through the API: {"user_id", "post_id", "emoji_name", "create_at"}.
        self.reactions: list[dict[str, Any]] = []
        # file id -> (FileInfo, content) of files attached to posts
        self.files: dict[str, tuple[dict[str, Any], bytes]] = {}
        self.bot_user_id = self.add_user(
            self.bot_username, roles=self.bot_roles, is_bot=True, token=self.token, first_name="Jira"
        )

    # -- setup ------------------------------------------------------------------------------------

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

    def issue_trigger_id(self, user_id: str) -> str:
        """A trigger id as Mattermost puts in slash commands and clicks: it lets the integration
        open one dialog for this user within `trigger_ttl` seconds."""
        millis = str(_now_ms())
        signature = base64.b64encode(secrets.token_bytes(32)).decode()
        trigger_id = base64.b64encode(f"{new_id()}:{user_id}:{millis}:{signature}".encode()).decode()
        self._trigger_ids[trigger_id] = (user_id, time.monotonic() + self.trigger_ttl)
        return trigger_id

    def new_response_url(
        self, base_url: str | None = None, *, user_id: str = "", channel_id: str = "", root_id: str = ""
    ) -> str:
        """A slash command's response_url, served by this fake. `base_url` is where the fake is
        served (default: `url`, when started with `start`)."""
        hook_id = new_id()
        self._command_hooks[hook_id] = _CommandHook(
            user_id, channel_id, root_id, time.monotonic() + COMMAND_WEBHOOK_TTL
        )
        return f"{(base_url or self.url).rstrip('/')}/hooks/commands/{hook_id}"

    # -- requests as Mattermost sends them to integrations ----------------------------------------

    def slash_form(
        self,
        user_id: str,
        channel_id: str,
        text: str,
        token: str,
        *,
        command: str = "/jira",
        team: str | None = None,
        base_url: str | None = None,
        root_id: str = "",
    ) -> SlashForm:
        """The form Mattermost posts for `command text` typed by the user in the channel
        (server's App.ExecuteCommand): a fresh trigger id and response_url, the users and public
        channels the text mentions, the token as a field and as "Authorization: Token …".
        `team` (a name) is the team the user is in, needed for direct channels."""
        user = self.users[user_id]
        channel = self.channels[channel_id]
        team_id = self._team_id(team) if team else channel["team_id"]
        if not team_id:
            raise ValueError("a direct or group channel needs the `team` the user is in")
        trigger_id = self.issue_trigger_id(user_id)
        response_url = self.new_response_url(
            base_url, user_id=user_id, channel_id=channel_id, root_id=root_id
        )
        pairs: list[tuple[str, str]] = [
            ("token", token),
            ("team_id", team_id),
            ("team_domain", self.teams[team_id]["name"]),
            ("channel_id", channel_id),
            ("channel_name", channel["name"]),
            ("user_id", user_id),
            ("user_name", user["username"]),
            ("command", command),
            ("text", text),
            ("trigger_id", trigger_id),
            ("response_url", response_url),
        ]
        for name in dict.fromkeys(_MENTION_RE.findall(text.lower())):
            found = next((u for u in self.users.values() if u["username"] == name.rstrip(".")), None)
            if found is not None:
                pairs += [("user_mentions", found["username"]), ("user_mentions_ids", found["id"])]
        for name in dict.fromkeys(_CHANNEL_MENTION_RE.findall(text.lower())):
            found = self._find_channel(team_id, name)
            if found is not None and found["type"] == "O":
                pairs += [("channel_mentions", name), ("channel_mentions_ids", found["id"])]
        if root_id:
            pairs.append(("root_id", root_id))
        # Go's url.Values.Encode sorts by key; values of one key keep their order.
        pairs.sort(key=lambda kv: kv[0])
        fields: dict[str, list[str]] = {}
        for key, value in pairs:
            fields.setdefault(key, []).append(value)
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "Accept": "application/json",
            "Authorization": f"Token {token}",
        }
        return SlashForm(urlencode(pairs), headers, trigger_id, response_url, fields)

    def action_request(
        self,
        user_id: str,
        action: Mapping[str, Any],
        *,
        channel_id: str,
        post_id: str = "",
        selected_option: str | None = None,
    ) -> tuple[str, dict[str, Any]]:
        """(integration URL, JSON body) of a click on `action` (a props.attachments[].actions[]
        entry) as Mattermost posts it (server's DoPostActionWithCookie): the action's context,
        plus `selected_option` for a menu, and a fresh trigger id."""
        integration = action.get("integration") or {}
        context = json.loads(json.dumps(integration.get("context") or {}))  # Go's map round trip
        kind = action.get("type") or "button"
        data_source = ""
        if kind == "select" and selected_option:
            context["selected_option"] = selected_option
            data_source = action.get("data_source") or ""
        channel = self.channels.get(channel_id, {})
        team = self.teams.get(channel.get("team_id", ""), {})
        body = {
            "user_id": user_id,
            "user_name": self.users[user_id]["username"],
            "channel_id": channel_id,
            "channel_name": channel.get("name", ""),
            "team_id": channel.get("team_id", ""),
            "team_domain": team.get("name", ""),
            "post_id": post_id,
            "trigger_id": self.issue_trigger_id(user_id),
            "type": kind,
            "data_source": data_source,
            "context": context,
        }
        return str(integration.get("url", "")), body

    @staticmethod
    def find_action(props: Mapping[str, Any], name: str) -> dict[str, Any]:
        """The action called `name` among props.attachments[].actions[] (of a post or a reply)."""
        for attachment in props.get("attachments") or ():
            for action in attachment.get("actions") or ():
                if action.get("name") == name:
                    return dict(action)
        raise KeyError(f"no action named {name!r}")

    def dialog_submission(
        self,
        opened: Mapping[str, Any],
        submission: Mapping[str, Any],
        *,
        channel_id: str = "",
        team_id: str = "",
        cancelled: bool = False,
    ) -> tuple[str, dict[str, Any]]:
        """(URL, JSON body) of the submission of a dialog recorded in `dialogs`, as Mattermost
        posts it (server's SubmitInteractiveDialog); a cancellation carries no submission."""
        dialog = opened["dialog"]
        body = {
            "type": "dialog_submission",
            "callback_id": dialog.get("callback_id", ""),
            "state": dialog.get("state", ""),
            "user_id": opened["user_id"],
            "channel_id": channel_id,
            "team_id": team_id,
            "submission": None if cancelled else dict(submission),
            "cancelled": cancelled,
        }
        return str(opened["url"]), body

    def add_post(
        self,
        user_id: str,
        channel_id: str,
        message: str,
        *,
        root_id: str = "",
        files: tuple[tuple[str, bytes, str], ...] | list[tuple[str, bytes, str]] = (),
    ) -> str:
        """A post written by the user (as if from their client), with `files` given as
        (name, content, MIME type) uploaded with it. Returns the post id."""
        post = self._save_post(
            self.users[user_id], self.channels[channel_id], {"message": message, "root_id": root_id}
        )
        infos = []
        for name, content, mime_type in files:
            file_id = new_id()
            info = {
                "id": file_id,
                "user_id": user_id,
                "post_id": post["id"],
                "channel_id": channel_id,
                "create_at": post["create_at"],
                "update_at": post["create_at"],
                "delete_at": 0,
                "name": name,
                "extension": name.rsplit(".", 1)[-1].lower() if "." in name else "",
                "size": len(content),
                "mime_type": mime_type,
                "width": 0,
                "height": 0,
                "has_preview_image": False,
            }
            self.files[file_id] = (info, content)
            infos.append(info)
        if infos:
            post["file_ids"] = [i["id"] for i in infos]
            post["metadata"] = {"files": infos}
        return str(post["id"])

    def user_posts(self, user: str, channel: str, message: str, root_id: str = "") -> dict[str, Any]:
        """`user` (id or username) writes `message` in `channel` (id), in the thread `root_id`,
        as from their own client: the post is saved and pushed to the websockets. Returns it."""
        user_id = user if user in self.users else self._user_id_by_name(user)
        return self._save_post(
            self.users[user_id], self.channels[channel], {"message": message, "root_id": root_id}
        )

    def direct_channel(self, user_a: str, user_b: str) -> str:
        """Id of the direct channel between two users (ids), created when missing."""
        name = "__".join(sorted((user_a, user_b)))
        existing = self._find_channel("", name)
        return existing["id"] if existing else self._insert_channel("", name, "", "D", {user_a, user_b})

    async def drop_websockets(self, *, refuse: bool = False) -> int:
        """Cut every websocket connection, as a network failure would (no close handshake);
        with `refuse`, new upgrades get 503 until `allow_websockets`. Returns how many were cut."""
        self._websockets_refused = refuse
        connections = list(self._websockets)
        for conn in connections:
            transport = conn.request.transport
            if transport is not None:
                transport.abort()
        # Let the handlers notice, so `websocket_count` is right when this returns.
        for _ in range(400):
            if not any(c in self._websockets for c in connections):
                break
            await asyncio.sleep(0.005)
        return len(connections)

    def allow_websockets(self) -> None:
        self._websockets_refused = False

    @property
    def websocket_count(self) -> int:
        """Websocket connections open and authenticated now."""
        return sum(1 for c in self._websockets if c.user_id)

    async def wait_for_websocket(self, connects: int = 1, timeout: float = 5.0) -> None:  # noqa: ASYNC109
        """Wait until `connects` authenticated connections were made in all, one of them open."""
        deadline = time.monotonic() + timeout
        while self.websocket_connects < connects or not self.websocket_count:
            if time.monotonic() >= deadline:
                raise AssertionError(
                    f"expected websocket connection #{connects} within {timeout} s "
                    f"(made {self.websocket_connects}, open {self.websocket_count})"
                )
            await asyncio.sleep(0.01)

    def archive_channel(self, channel_id: str) -> None:
        self.channels[channel_id]["delete_at"] = _now_ms()

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

    # -- failure and latency injection ------------------------------------------------------------

    def fail_next(
        self,
        n: int = 1,
        status: int = 503,
        *,
        retry_after: float | None = None,
        path: str | None = None,
        method: str | None = None,
        body: str | None = None,
    ) -> None:
        """The next `n` requests (matching the path prefix and method, when given) get `status`.

        429 imitates the server's rate limiter (Retry-After defaults to 1 s). `body` replaces the
        JSON error with a text/html page, like a proxy in front of Mattermost.
        """
        self._failures.append(_Failure(status, retry_after, path, method, body, remaining=n))

    def fail_for(
        self,
        seconds: float,
        status: int = 503,
        *,
        retry_after: float | None = None,
        path: str | None = None,
        method: str | None = None,
        body: str | None = None,
    ) -> None:
        """Every matching request in the next `seconds` gets `status` (see fail_next)."""
        deadline = time.monotonic() + seconds
        self._failures.append(_Failure(status, retry_after, path, method, body, until=deadline))

    def clear_failures(self) -> None:
        self._failures.clear()

    def set_latency(self, seconds: float, path: str | None = None) -> None:
        """Delay answers: all of them (path None), or those whose path starts with `path`.

        POST /posts spends the delay between accepting and saving the post, so a client that
        times out leaves a post that still appears, as with a slow server.
        """
        if path is None:
            self.latency = seconds
        else:
            self._path_latency[path] = seconds

    # -- inspection -------------------------------------------------------------------------------

    def posts_in(self, channel_id: str) -> list[dict[str, Any]]:
        return [p for p in self.posts if p["channel_id"] == channel_id]

    def get_post(self, post_id: str) -> dict[str, Any] | None:
        return self._posts_by_id.get(post_id)

    async def wait_for_command_responses(self, n: int, timeout: float = 5.0) -> list[dict[str, Any]]:  # noqa: ASYNC109
        """Wait until at least `n` bodies arrived on response URLs; fails the test on timeout."""
        deadline = time.monotonic() + timeout
        while len(self.command_responses) < n:
            if time.monotonic() >= deadline:
                raise AssertionError(
                    f"expected {n} response_url posts within {timeout} s, got {len(self.command_responses)}"
                )
            await asyncio.sleep(0.01)
        return list(self.command_responses)

    def requests_to(self, path: str, method: str | None = None) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path == path and (method is None or r.method == method.upper())]

    # A plain timeout argument keeps call sites short: `await fake.wait_for_posts(3, 2.0)`.
    async def wait_for_posts(self, n: int, timeout: float = 5.0) -> list[dict[str, Any]]:  # noqa: ASYNC109
        """Wait until at least `n` posts exist; returns them. Fails the test on timeout."""
        deadline = time.monotonic() + timeout
        while len(self.posts) < n:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                got = [p["message"][:60] for p in self.posts[-5:]]
                raise AssertionError(
                    f"expected {n} Mattermost posts within {timeout} s, got {len(self.posts)}: {got}"
                )
            event = self._event()
            event.clear()
            try:
                await asyncio.wait_for(event.wait(), remaining)
            except TimeoutError:
                continue
        return list(self.posts)

    # -- serving ----------------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware])
        r = app.router
        r.add_get("/api/v4/system/ping", self._ping)
        r.add_get("/api/v4/users/username/{username}", self._get_user_by_username)
        r.add_post("/api/v4/users/ids", self._get_users_by_ids)
        r.add_get("/api/v4/users/{user_id}", self._get_user)
        r.add_get("/api/v4/users/{user_id}/channels", self._get_channels_for_user)
        r.add_get("/api/v4/websocket", self._websocket)
        r.add_get("/api/v4/channels/{channel_id}/posts", self._get_channel_posts)
        r.add_post("/api/v4/reactions", self._add_reaction)
        r.add_get("/api/v4/teams/name/{team_name}", self._get_team_by_name)
        r.add_get("/api/v4/teams/name/{team_name}/channels/name/{channel_name}", self._get_channel_by_name)
        r.add_post("/api/v4/channels/direct", self._create_direct_channel)
        r.add_get("/api/v4/channels/{channel_id}", self._get_channel)
        r.add_get("/api/v4/channels/{channel_id}/members/{user_id}", self._get_channel_member)
        r.add_get("/api/v4/teams/{team_id}/members/{user_id}", self._get_team_member)
        r.add_post("/api/v4/actions/dialogs/open", self._open_dialog)
        r.add_post("/hooks/commands/{hook_id}", self._command_webhook)
        r.add_post("/api/v4/posts", self._create_post)
        r.add_post("/api/v4/posts/ephemeral", self._create_ephemeral_post)
        r.add_get("/api/v4/posts/{post_id}", self._get_post)
        r.add_get("/api/v4/posts/{post_id}/files/info", self._get_post_file_infos)
        r.add_get("/api/v4/files/{file_id}", self._get_file)
        r.add_get("/api/v4/files/{file_id}/info", self._get_file_info)
        r.add_put("/api/v4/posts/{post_id}", self._update_post)
        r.add_put("/api/v4/posts/{post_id}/patch", self._patch_post)
        return app

    async def start(self, host: str = "127.0.0.1", port: int | None = None) -> str:
        """Serve on a local port (for tests not using the aiohttp_server fixture); returns the URL."""
        if self._server is None:
            self._server = TestServer(self.app(), host=host, port=port)
            await self._server.start_server()
        return self.url

    async def stop(self) -> None:
        if self._saving:
            await asyncio.gather(*self._saving, return_exceptions=True)
        # Open websockets would hold the server's shutdown until its timeout.
        await self.drop_websockets(refuse=True)
        if self._server is not None:
            await self._server.close()
            self._server = None

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("FakeMattermost.start() has not been called")
        return str(self._server.make_url("")).rstrip("/")

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        user_id = ""
        try:
            failure = self._take_failure(request)
            if failure is not None:
                response: web.StreamResponse = self._failure_response(failure)
            else:
                path = _api_path(request)
                # Command webhooks authenticate by their unguessable id, like the server's /hooks.
                if path not in _PUBLIC_PATHS and path != _WEBSOCKET_PATH and not path.startswith("/hooks/"):
                    user_id = self._authenticate(request)
                    request[_USER] = self.users[user_id]
                response = await handler(request)
        except _MattermostError as exc:
            response = self._error_response(exc)
        except web.HTTPNotFound:
            response = self._error_response(
                _MattermostError(404, "api.context.404.app_error", "Sorry, we could not find the page.")
            )
        except web.HTTPMethodNotAllowed:
            response = self._error_response(
                _MattermostError(405, "api.context.405.app_error", "Method not allowed.")
            )
        if not request.get(_LATENCY_SPENT):
            await self._sleep_latency(request)
        self.requests.append(RecordedRequest(request.method, _api_path(request), user_id, response.status))
        return response

    # -- handlers ---------------------------------------------------------------------------------

    async def _ping(self, request: web.Request) -> web.Response:
        return _json_response({"ActiveSearchBackend": "database", "AndroidLatestVersion": "", "status": "OK"})

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

    async def _open_dialog(self, request: web.Request) -> web.Response:
        body = await _read_json(request, "dialog")
        if not isinstance(body, dict):
            raise _invalid_body_param("dialog")
        if not body.get("url"):
            raise _invalid_param("url")
        trigger_id = body.get("trigger_id")
        if not trigger_id:
            raise _invalid_param("trigger_id")
        issued = self._trigger_ids.get(trigger_id)
        if issued is None:
            raise _MattermostError(
                400,
                "interactive_message.decode_trigger_id.verify_signature_failed",
                "Failed to verify signature of trigger ID for interactive dialog.",
            )
        if issued[1] <= time.monotonic():
            raise _MattermostError(
                400,
                "interactive_message.decode_trigger_id.expired",
                "Trigger ID for interactive dialog is expired.",
            )
        dialog = body.get("dialog")
        problems = _dialog_problems(dialog)
        if problems:
            raise _MattermostError(
                400,
                "api.context.invalid_body_param.app_error",
                "Invalid dialog.",
                detailed="; ".join(problems),
            )
        self.dialogs.append(
            {"user_id": issued[0], "trigger_id": trigger_id, "url": body["url"], "dialog": dialog}
        )
        return _json_response({"status": "OK"})

    async def _command_webhook(self, request: web.Request) -> web.Response:
        hook_id = request.match_info["hook_id"]
        hook = self._command_hooks.get(hook_id)
        if hook is None or hook.expires <= time.monotonic():
            raise _MattermostError(
                400, "app.command_webhook.try_use.invalid.app_error", "Unable to find the webhook."
            )
        if hook.uses >= COMMAND_WEBHOOK_MAX_USES:
            raise _MattermostError(
                400,
                "app.command_webhook.try_use.app_error",
                f"Unable to use the webhook {hook_id}: it was used {COMMAND_WEBHOOK_MAX_USES} times already.",
            )
        hook.uses += 1
        content_type = request.headers.get("Content-Type", "")
        raw = await request.read()
        # As the server's CommandResponseFromHTTPBody: JSON only for application/json.
        if content_type.split(";")[0].strip() == "application/json":
            try:
                response = json.loads(raw)
            except ValueError:
                raise _invalid_body_param("response") from None
            if not isinstance(response, dict):
                raise _invalid_body_param("response")
        else:
            response = {"text": raw.decode("utf-8", "replace")}
        self.command_responses.append(
            {"hook_id": hook_id, "content_type": content_type, "response": response}
        )
        self._show_command_response(hook, response)
        return web.Response(text="ok", headers={"Content-Type": "text/plain"})

    def _show_command_response(self, hook: _CommandHook, response: dict[str, Any]) -> None:
        channel = self.channels.get(hook.channel_id)
        user = self.users.get(hook.user_id)
        if channel is None or user is None:
            return
        props: dict[str, Any] = dict(response.get("props") or {})
        if response.get("attachments"):
            props["attachments"] = response["attachments"]
        message = str(response.get("text") or "")
        if response.get("response_type") == "in_channel":
            self._save_post(user, channel, {"message": message, "props": props, "root_id": hook.root_id})
            return
        now = _now_ms()
        post = {
            "id": new_id(),
            "create_at": now,
            "update_at": now,
            "edit_at": 0,
            "delete_at": 0,
            "user_id": self.bot_user_id,
            "channel_id": channel["id"],
            "root_id": hook.root_id,
            "message": message,
            "type": "system_ephemeral",
            "props": props,
        }
        self.ephemeral_posts.append({"user_id": user["id"], "post": post})

    async def _create_post(self, request: web.Request) -> web.Response:
        body = await _read_json(request, "post")
        if not isinstance(body, dict):
            raise _invalid_body_param("post")
        for key in ("channel_id", "message", "root_id", "pending_post_id", "type"):
            if key in body and not isinstance(body[key], str):
                raise _invalid_body_param("post")
        if "props" in body and not isinstance(body["props"], dict | None):
            raise _invalid_body_param("post")
        user = request[_USER]
        channel = self.channels.get(body.get("channel_id", ""))
        if not _is_admin(user) and (channel is None or not self._can_post(user, channel)):
            raise _permission_error()
        if channel is None:
            raise _invalid_param("post.channel_id")
        if str(body.get("type", "")).startswith("system_"):
            raise _invalid_param("post.type")
        if channel["delete_at"]:
            raise _MattermostError(
                400, "api.post.create_post.can_not_post_to_deleted.error", "Can not post to deleted channel."
            )

        pending_id = body.get("pending_post_id", "")
        if pending_id:
            now = time.monotonic()
            seen = self._pending_post_ids.get(pending_id)
            if seen is not None and seen[1] > now:
                if not seen[0]:
                    raise _MattermostError(
                        500,
                        "api.post.deduplicate_create_post.pending",
                        "Post rejected by server. Please try again.",
                    )
                return _json_response(self._posts_by_id[seen[0]], status=201)
            self._pending_post_ids[pending_id] = ("", now + self.pending_post_ttl)

        request[_LATENCY_SPENT] = True
        # Shielded: like the real server, a post being saved is saved even if the client hangs up.
        task = asyncio.ensure_future(self._finish_create(request, user, channel, body, pending_id))
        self._saving.add(task)
        task.add_done_callback(self._saved)
        post = await asyncio.shield(task)
        # The incoming post echoes its pending id; the stored one (returned on a repeat) has none.
        return _json_response({**post, "pending_post_id": pending_id}, status=201)

    def _saved(self, task: asyncio.Future[dict[str, Any]]) -> None:
        self._saving.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved: nobody awaits it when the client hung up

    async def _finish_create(
        self,
        request: web.Request,
        user: dict[str, Any],
        channel: dict[str, Any],
        body: dict[str, Any],
        pending_id: str,
    ) -> dict[str, Any]:
        try:
            await self._sleep_latency(request)
            post = self._save_post(user, channel, body)
        except BaseException:
            # A failed create forgets the pending id, so the client's retry is a fresh attempt.
            if pending_id:
                self._pending_post_ids.pop(pending_id, None)
            raise
        if pending_id:
            self._pending_post_ids[pending_id] = (post["id"], time.monotonic() + self.pending_post_ttl)
        return post

    async def _create_ephemeral_post(self, request: web.Request) -> web.Response:
        body = await _read_json(request, "body")
        if not isinstance(body, dict):
            raise _invalid_body_param("body")
        if not body.get("user_id"):
            raise _invalid_param("user_id")
        if not isinstance(body.get("post"), dict):
            raise _invalid_param("post")
        if not _is_admin(request[_USER]):
            raise _permission_error()
        incoming = body["post"]
        now = _now_ms()
        post = {
            "id": new_id(),
            "create_at": now,
            "update_at": now,
            "edit_at": 0,
            "delete_at": 0,
            "user_id": request[_USER]["id"],
            "channel_id": incoming.get("channel_id", ""),
            "root_id": incoming.get("root_id", ""),
            "message": incoming.get("message", ""),
            "type": "system_ephemeral",
            "props": incoming.get("props") or {},
        }
        self.ephemeral_posts.append({"user_id": body["user_id"], "post": post})
        return _json_response(post, status=201)

    async def _get_post(self, request: web.Request) -> web.Response:
        post_id = request.match_info["post_id"]
        if not is_valid_id(post_id):
            raise _invalid_url_param("post_id")
        post = self._posts_by_id.get(post_id)
        if post is None:
            raise _MattermostError(404, "app.post.get.app_error", "Unable to get the post.")
        if not self._can_access(request[_USER], self.channels[post["channel_id"]]):
            raise _permission_error()
        return _json_response(post)

    async def _get_post_file_infos(self, request: web.Request) -> web.Response:
        post_id = request.match_info["post_id"]
        if not is_valid_id(post_id):
            raise _invalid_url_param("post_id")
        post = self._posts_by_id.get(post_id)
        if post is None or not self._can_access(request[_USER], self.channels[post["channel_id"]]):
            raise _permission_error()
        return _json_response([self.files[f][0] for f in post.get("file_ids") or ()])

    def _readable_file(self, request: web.Request) -> tuple[dict[str, Any], bytes]:
        file_id = request.match_info["file_id"]
        if not is_valid_id(file_id):
            raise _invalid_url_param("file_id")
        found = self.files.get(file_id)
        if found is None:
            raise _MattermostError(404, "app.file_info.get.app_error", "Unable to get the file info.")
        if not self._can_access(request[_USER], self.channels[found[0]["channel_id"]]):
            raise _permission_error()
        return found

    async def _get_file_info(self, request: web.Request) -> web.Response:
        return _json_response(self._readable_file(request)[0])

    async def _get_file(self, request: web.Request) -> web.Response:
        info, content = self._readable_file(request)
        return web.Response(
            body=content,
            headers={
                "Content-Type": info["mime_type"] or "application/octet-stream",
                "Content-Disposition": f'attachment;filename="{info["name"]}"',
            },
        )

    async def _update_post(self, request: web.Request) -> web.Response:
        post_id = request.match_info["post_id"]
        body = await _read_json(request, "post")
        if not isinstance(body, dict):
            raise _invalid_body_param("post")
        if body.get("id") != post_id:
            raise _invalid_param("id")
        post = self._editable_post(request[_USER], post_id)
        # A full update replaces message and props: what the body leaves out is cleared.
        return _json_response(self._edit(post, str(body.get("message", "")), body.get("props") or {}))

    async def _patch_post(self, request: web.Request) -> web.Response:
        post_id = request.match_info["post_id"]
        body = await _read_json(request, "post")
        if not isinstance(body, dict):
            raise _invalid_body_param("post")
        post = self._editable_post(request[_USER], post_id)
        if "is_pinned" in body:
            post["is_pinned"] = bool(body["is_pinned"])
        message = str(body["message"]) if body.get("message") is not None else post["message"]
        props = body["props"] if isinstance(body.get("props"), dict) else post["props"]
        return _json_response(self._edit(post, message, props))

    # -- websocket, channel posts, reactions ------------------------------------------------------

    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        if self._websockets_refused:
            raise _MattermostError(503, "fake.websocket_refused.app_error", "Service Unavailable")
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        conn = _WebsocketConnection(ws=ws, request=request)
        self._websockets.add(conn)
        writer = asyncio.create_task(self._websocket_writer(conn))
        try:
            # An unknown header token leaves the connection unauthenticated (the server's
            # websocket route does not require a session); the challenge may still succeed.
            scheme, _, token = request.headers.get("Authorization", "").partition(" ")
            header_user = self._tokens.get(token.strip()) if scheme.lower() in ("bearer", "token") else None
            if header_user is not None:
                self._websocket_authenticated(conn, header_user)
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                try:
                    action = json.loads(msg.data)
                except ValueError:
                    continue
                if not isinstance(action, dict):
                    continue
                seq = int(action.get("seq") or 0)
                if action.get("action") == "authentication_challenge":
                    if conn.user_id:
                        continue  # the server ignores a challenge on an authenticated connection
                    data = action.get("data") or {}
                    user_id = self._tokens.get(str(data.get("token", ""))) if isinstance(data, dict) else None
                    if user_id is None:
                        break  # an unknown token: the server closes the connection
                    conn.send_reply(seq)
                    self._websocket_authenticated(conn, user_id)
                elif not conn.user_id:
                    conn.send_reply(
                        seq,
                        "FAIL",
                        {"id": "api.web_socket_router.not_authenticated.app_error"},
                    )
                elif action.get("action") == "ping":
                    conn.send_reply(seq, data={"text": "pong", "server_time": _now_ms()})
        finally:
            self._websockets.discard(conn)
            writer.cancel()
            await asyncio.gather(writer, return_exceptions=True)
            if not ws.closed:
                await ws.close()
        return ws

    def _websocket_authenticated(self, conn: _WebsocketConnection, user_id: str) -> None:
        conn.user_id = user_id
        self.websocket_connects += 1
        conn.send_event(
            "hello",
            {"server_version": "10.11.0.fake", "connection_id": new_id()},
            {"omit_users": None, "user_id": user_id, "channel_id": "", "team_id": ""},
        )

    async def _websocket_writer(self, conn: _WebsocketConnection) -> None:
        while True:
            message = await conn.outbox.get()
            data = message.get("data")
            if isinstance(data, dict) and isinstance(data.get("post"), dict):
                message = {**message, "data": {**data, "post": json.dumps(data["post"])}}
            try:
                await conn.ws.send_str(json.dumps(message))
            except (ConnectionError, RuntimeError):
                return

    def _broadcast_post(self, user: dict[str, Any], channel: dict[str, Any], post: dict[str, Any]) -> None:
        members = self._members.get(channel["id"], set())
        data = {
            "channel_display_name": channel["display_name"],
            "channel_name": channel["name"],
            "channel_type": channel["type"],
            "post": post,
            "sender_name": user["username"],
            "set_online": True,
            "team_id": channel["team_id"],
        }
        broadcast = {"omit_users": None, "user_id": "", "channel_id": channel["id"], "team_id": ""}
        for conn in list(self._websockets):
            if conn.user_id and conn.user_id in members:
                conn.send_event("posted", data, broadcast)

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

    async def _get_channel_posts(self, request: web.Request) -> web.Response:
        channel_id = request.match_info["channel_id"]
        if not is_valid_id(channel_id):
            raise _invalid_url_param("channel_id")
        channel = self.channels.get(channel_id)
        if channel is None or not self._can_access(request[_USER], channel):
            raise _permission_error()
        try:
            since = int(request.query.get("since", "0") or 0)
            per_page = min(int(request.query.get("per_page", "60") or 60), 200)
        except ValueError:
            raise _invalid_url_param("since") from None
        in_channel = [p for p in self.posts if p["channel_id"] == channel_id]
        if since > 0:
            # The server's GetPostsSince: by update time, deleted posts included, at most 1000.
            chosen = [p for p in in_channel if p["update_at"] > since][:_SINCE_LIMIT]
        else:
            chosen = [p for p in in_channel if not p["delete_at"]][-per_page:]
        chosen.sort(key=lambda p: p["create_at"], reverse=True)
        return _json_response(
            {
                "order": [p["id"] for p in chosen],
                "posts": {p["id"]: p for p in chosen},
                "next_post_id": "",
                "prev_post_id": "",
                "has_next": False,
            }
        )

    async def _add_reaction(self, request: web.Request) -> web.Response:
        body = await _read_json(request, "reaction")
        if not isinstance(body, dict):
            raise _invalid_body_param("reaction")
        user = request[_USER]
        if body.get("user_id") != user["id"]:
            raise _permission_error()  # only the session's own reactions
        post = self._posts_by_id.get(str(body.get("post_id", "")))
        if post is None or post["delete_at"] or not self._can_access(user, self.channels[post["channel_id"]]):
            raise _permission_error()
        emoji = str(body.get("emoji_name") or "")
        if not emoji or len(emoji) > 64:
            raise _invalid_body_param("reaction")
        reaction = {"user_id": user["id"], "post_id": post["id"], "emoji_name": emoji, "create_at": _now_ms()}
        if not any(
            r["user_id"] == user["id"] and r["post_id"] == post["id"] and r["emoji_name"] == emoji
            for r in self.reactions
        ):
            self.reactions.append(reaction)
        return _json_response(reaction, status=201)

    def _user_id_by_name(self, username: str) -> str:
        name = username.removeprefix("@").lower()
        for user in self.users.values():
            if user["username"] == name:
                return str(user["id"])
        raise KeyError(f"no user {username!r}")

    # -- internals --------------------------------------------------------------------------------

    def _event(self) -> asyncio.Event:
        if self._post_event is None:
            self._post_event = asyncio.Event()
        return self._post_event

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

    def _editable_post(self, user: dict[str, Any], post_id: str) -> dict[str, Any]:
        post = self._posts_by_id.get(post_id)
        if post is None or post["delete_at"]:
            raise _permission_error()
        if post["user_id"] != user["id"] and not _is_admin(user):
            raise _permission_error()
        return post

    def _save_post(
        self, user: dict[str, Any], channel: dict[str, Any], body: dict[str, Any]
    ) -> dict[str, Any]:
        root_id = body.get("root_id", "")
        root: dict[str, Any] | None = None
        if root_id:
            root = self._posts_by_id.get(root_id)
            if root is None or root["root_id"]:
                raise _MattermostError(
                    400, "api.post.create_post.root_id.app_error", "Invalid RootId parameter."
                )
            if root["channel_id"] != channel["id"]:
                raise _MattermostError(
                    400,
                    "api.post.create_post.channel_root_id.app_error",
                    "Invalid ChannelId for RootId parameter.",
                )
        message = body.get("message", "")
        if len(message) > MAX_MESSAGE_RUNES:
            raise _MattermostError(400, "model.post.is_valid.msg.app_error", "Invalid Message.")
        props = dict(body.get("props") or {})
        if len(json.dumps(props)) > MAX_PROPS_CHARS:
            raise _MattermostError(400, "model.post.is_valid.props.app_error", "Invalid Props.")
        if user["is_bot"]:
            props["from_bot"] = "true"
        # Strictly increasing, so ordering by create_at matches creation order.
        create_at = max(_now_ms(), self._last_create_at + 1)
        self._last_create_at = create_at
        post = {
            "id": new_id(),
            "create_at": create_at,
            "update_at": create_at,
            "edit_at": 0,
            "delete_at": 0,
            "is_pinned": False,
            "user_id": user["id"],
            "channel_id": channel["id"],
            "root_id": root_id,
            "original_id": "",
            "message": message,
            "type": body.get("type", ""),
            "props": props,
            "hashtags": "",
            "pending_post_id": "",
            "reply_count": 0,
            "last_reply_at": 0,
            "participants": None,
            "metadata": {},
        }
        self.posts.append(post)
        self._posts_by_id[post["id"]] = post
        channel["last_post_at"] = create_at
        channel["total_msg_count"] += 1
        if root is not None:
            root["reply_count"] += 1
            root["last_reply_at"] = create_at
        self._broadcast_post(user, channel, post)
        self._event().set()
        return post

    def _edit(self, post: dict[str, Any], message: str, props: dict[str, Any]) -> dict[str, Any]:
        now = _now_ms()
        if message != post["message"]:
            post["edit_at"] = now
        post["message"] = message
        post["props"] = dict(props)
        post["update_at"] = now
        return post

    def _authenticate(self, request: web.Request) -> str:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() not in ("bearer", "token") or not token:
            raise _MattermostError(
                401,
                "api.context.session_expired.app_error",
                "Invalid or expired session, please login again.",
            )
        user_id = self._tokens.get(token.strip())
        if user_id is None:
            raise _MattermostError(
                401,
                "api.context.session_expired.app_error",
                "Invalid or expired session, please login again.",
                detailed=f"token={token.strip()}",
            )
        return user_id

    def _take_failure(self, request: web.Request) -> _Failure | None:
        now = time.monotonic()
        self._failures = [f for f in self._failures if f.active(now)]
        for failure in self._failures:
            if failure.matches(request):
                if failure.remaining is not None:
                    failure.remaining -= 1
                return failure
        return None

    def _failure_response(self, failure: _Failure) -> web.Response:
        headers: dict[str, str] = {}
        if failure.status == 429:
            wait = str(math.ceil(failure.retry_after if failure.retry_after is not None else 1.0))
            headers = {
                "X-Ratelimit-Limit": "10",
                "X-Ratelimit-Remaining": "0",
                "X-Ratelimit-Reset": wait,
                "Retry-After": wait,
                "X-Content-Type-Options": "nosniff",
            }
            return web.Response(
                text="limit exceeded\n",
                status=429,
                headers={"Content-Type": "text/plain; charset=utf-8", **headers},
            )
        if failure.retry_after is not None:
            headers["Retry-After"] = str(math.ceil(failure.retry_after))
        if failure.body is not None:
            return web.Response(
                text=failure.body, status=failure.status, headers={"Content-Type": "text/html", **headers}
            )
        try:
            phrase = HTTPStatus(failure.status).phrase
        except ValueError:
            phrase = "Error"
        error = _MattermostError(failure.status, "fake.injected_failure.app_error", phrase)
        return self._error_response(error, headers)

    def _error_response(self, error: _MattermostError, headers: dict[str, str] | None = None) -> web.Response:
        body = {
            "id": error.error_id,
            "message": error.message,
            "detailed_error": error.detailed,
            "request_id": new_id(),
            "status_code": error.status,
        }
        return _json_response(body, status=error.status, headers=headers)

    async def _sleep_latency(self, request: web.Request) -> None:
        seconds = self.latency
        matched = ""
        for prefix, value in self._path_latency.items():
            if _api_path(request).startswith(prefix) and len(prefix) > len(matched):
                matched, seconds = prefix, value
        if seconds > 0:
            await asyncio.sleep(seconds)


def _api_path(request: web.Request) -> str:
    """The path from /api/v4 on, so the app also works mounted under a site path (/mattermost/...)."""
    start = request.path.find("/api/v4")
    return request.path[start:] if start > 0 else request.path


def _dialog_problems(dialog: Any) -> list[str]:
    """What the server's Dialog.IsValid would report (lengths are Go byte lengths)."""
    if not isinstance(dialog, dict):
        return ["dialog is missing"]
    problems: list[str] = []
    title = str(dialog.get("title") or "")
    if not title or len(title.encode()) > 24:
        problems.append(f"invalid dialog title {title!r}")
    names: set[str] = set()
    for element in dialog.get("elements") or []:
        if not isinstance(element, dict):
            problems.append("an element is not an object")
            continue
        name = str(element.get("name") or "")
        if name in names:
            problems.append(f"duplicate dialog element {name!r}")
        names.add(name)
        display = str(element.get("display_name") or "")
        if not display or len(display.encode()) > 24:
            problems.append(f"{name}: invalid display_name {display!r}")
        if not name or len(name.encode()) > 300:
            problems.append(f"invalid element name {name!r}")
        if len(str(element.get("help_text") or "").encode()) > 150:
            problems.append(f"{name}: help_text over 150")
        kind = element.get("type")
        if kind not in _DIALOG_ELEMENT_TYPES:
            problems.append(f"{name}: invalid element type {kind!r}")
        if kind in ("text", "textarea") and element.get("subtype", "") not in _TEXT_SUBTYPES:
            problems.append(f"{name}: invalid subtype {element.get('subtype')!r}")
        if int(element.get("min_length") or 0) > int(element.get("max_length") or 0) and element.get(
            "max_length"
        ):
            problems.append(f"{name}: min_length over max_length")
        default = str(element.get("default") or "")
        if kind in ("select", "radio") and not element.get("data_source") and default:
            values = {str(o.get("value")) for o in element.get("options") or [] if isinstance(o, dict)}
            wanted = default.replace(" ", "").split(",") if element.get("multiselect") else [default]
            if any(v and v not in values for v in wanted):
                problems.append(f"{name}: default {default!r} is not an option")
        if kind == "bool" and default not in ("", "true", "false"):
            problems.append(f"{name}: invalid default of bool")
    return problems


def _is_admin(user: dict[str, Any]) -> bool:
    return "system_admin" in user["roles"].split()


def _team_not_found() -> _MattermostError:
    return _MattermostError(
        404, "app.team.get_by_name.missing.app_error", "Unable to find the existing team."
    )


def _check_name(name: str) -> None:
    # Mattermost keeps team and channel names as lowercase URL slugs.
    if not _NAME_RE.match(name):
        raise ValueError(f"not a Mattermost team/channel name (lowercase slug): {name!r}")


async def _read_json(request: web.Request, name: str) -> Any:
    try:
        return json.loads(await request.read() or b"null")
    except ValueError:
        raise _invalid_body_param(name) from None
