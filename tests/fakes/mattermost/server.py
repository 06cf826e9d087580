"""The fake Mattermost itself: its state, the aiohttp application and middleware (authentication,
injected failures and latency, the request log), and serving it on a port."""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer

from bot.mattermost.models import new_id
from tests.fakes.mattermost.channels import TeamsAndChannels
from tests.fakes.mattermost.common import (
    _LATENCY_SPENT,
    _USER,
    _api_path,
    _json_response,
    _MattermostError,
)
from tests.fakes.mattermost.interactions import TRIGGER_ID_TTL, Interactions, _CommandHook
from tests.fakes.mattermost.posts import Posts
from tests.fakes.mattermost.users import Users
from tests.fakes.mattermost.websocket import Websockets, _WebsocketConnection

PENDING_POST_IDS_CACHE_TTL = 30.0
_PUBLIC_PATHS = frozenset({"/api/v4/system/ping"})
# The websocket authenticates itself: by header on the upgrade or by an authentication_challenge.
_WEBSOCKET_PATH = "/api/v4/websocket"


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    method: str
    path: str
    user_id: str  # empty when the request was not authenticated
    status: int


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
class FakeMattermost(Users, TeamsAndChannels, Posts, Interactions, Websockets):
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

    def requests_to(self, path: str, method: str | None = None) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path == path and (method is None or r.method == method.upper())]

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

    async def _ping(self, request: web.Request) -> web.Response:
        return _json_response({"ActiveSearchBackend": "database", "AndroidLatestVersion": "", "status": "OK"})

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
