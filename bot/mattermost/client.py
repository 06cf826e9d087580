"""PostSink over the Mattermost REST API v4, through mattermostautodriver's AsyncTypedDriver.

Every failure leaves this module as a DeliveryError whose `retryable` flag tells the durable
delivery queue whether to try again. The driver's own retry loop is kept short (a couple of quick
429 retries): long waits belong to the queue, which survives restarts.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import httpx
from mattermostautodriver import AsyncTypedDriver
from mattermostautodriver.exceptions import (
    InvalidMattermostError,
    MattermostError,
    TooManyRequests,
)

from bot.breakers import Breaker
from bot.mattermost.models import DeliveryError, OutgoingPost
from bot.mattermost.reads import MattermostReads
from bot.mattermost.rest import (
    API,
    error_message,
    is_outage,
    plain,
    retry_after_of,
    shorten,
    split_base_url,
    url_host,
)

log = logging.getLogger(__name__)
# The driver's REST client logs under this name (not only its websocket, which the bot never
# opens: bot/mattermost/websocket.py is the one connection): each error answer at ERROR with its
# bare message ("Channel does not exist."), each quick retry at WARNING.
DRIVER_LOGGER = "mattermostautodriver.websocket"


class _DriverLinesToDebug(logging.Filter):
    """Lowers the driver's lines to DEBUG: the bot logs its own line, saying what it was doing
    (`_status_error`), or hands the DeliveryError to a caller that does."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno > logging.DEBUG:
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return logging.getLogger("bot").isEnabledFor(logging.DEBUG)


logging.getLogger(DRIVER_LOGGER).addFilter(_DriverLinesToDebug())

# HTTP statuses worth retrying later besides 429 and 5xx: the request may simply have been too early.
_RETRYABLE_4XX = frozenset({408, 425})


class MattermostClient(MattermostReads):
    """Posts to Mattermost as the bot account that owns `token` (a bot or personal access token)."""

    def __init__(
        self,
        url: str,
        token: str,
        *,
        timeout: float = 10.0,
        max_retries: int = 2,
        retry_max_sleep: float = 5.0,
        verify: bool | str = True,
        ping_timeout: float = 5.0,
        channel_cache_ttl: float = 3600.0,
        channel_miss_ttl: float = 60.0,
    ) -> None:
        self._scheme, self._host, self._port, self._base_path = split_base_url(url)
        self._token = token
        self._timeout = timeout
        self._max_retries = max_retries
        self._retry_max_sleep = retry_max_sleep
        self._verify = verify
        self._ping_timeout = ping_timeout
        self._channel_cache_ttl = channel_cache_ttl
        self._channel_miss_ttl = channel_miss_ttl
        # (team, channel) -> (channel id or None for "no such channel", monotonic expiry)
        self._channel_cache: dict[tuple[str, str], tuple[str | None, float]] = {}
        # user id -> id of the bot's direct channel with that user (such a channel never changes)
        self._dm_cache: dict[str, str] = {}
        self._driver: AsyncTypedDriver | None = None
        self._bot_user_id = ""
        self._bot_username = ""
        self._login_error: str | None = None
        # The process's circuit breaker for Mattermost (bot.breakers), set by the composition
        # root: while it is open, calls fail at once instead of adding to the outage.
        self.breaker: Breaker | None = None

    def __repr__(self) -> str:  # the token stays out of reprs, which end up in logs and tracebacks
        return f"MattermostClient(url={self.base_url!r})"

    @property
    def base_url(self) -> str:
        return f"{self._scheme}://{url_host(self._host)}:{self._port}{self._base_path}"

    @property
    def websocket_url(self) -> str:
        """Where Mattermost serves its websocket API (ws:// or wss:// after the site URL)."""
        scheme = "wss" if self._scheme == "https" else "ws"
        return f"{scheme}://{url_host(self._host)}:{self._port}{self._base_path}{API}/websocket"

    @property
    def verify(self) -> bool | str:
        """The TLS verification setting (a CA bundle path, or False), for other connections."""
        return self._verify

    @property
    def bot_user_id(self) -> str:
        """Id of the account behind the token; empty until a login succeeded."""
        return self._bot_user_id

    @property
    def bot_username(self) -> str:
        return self._bot_username

    @property
    def login_error(self) -> str | None:
        """Why the last login attempt failed (for readiness), or None after a successful one."""
        return self._login_error

    async def start(self) -> None:
        """Build the driver and learn the bot's user id. A failed login is remembered, not raised."""
        if self._driver is None:
            self._driver = AsyncTypedDriver(
                {
                    "scheme": self._scheme,
                    "url": url_host(self._host),
                    "port": self._port,
                    "token": self._token,
                    "verify": self._verify,
                    "timeout": self._timeout,
                    "request_timeout": self._timeout,
                    "max_retries": self._max_retries,
                    "retry_max_sleep": self._retry_max_sleep,
                }
            )
            self._driver.client.token = self._token
        try:
            await self.login()
        except DeliveryError as exc:
            log.warning("Mattermost login at %s failed at start: %s", self.base_url, exc)

    async def login(self) -> str:
        """Ask Mattermost who the token belongs to; returns the user id. Raises DeliveryError."""
        try:
            me = await self._get_json("/users/me")
        except DeliveryError as exc:
            self._login_error = str(exc)
            raise
        self._bot_user_id = str(me.get("id", ""))
        self._bot_username = str(me.get("username", ""))
        driver = self._require_driver()
        driver.client.userid = self._bot_user_id
        driver.client.username = self._bot_username
        self._login_error = None
        log.info("Connected to Mattermost at %s as @%s", self.base_url, self._bot_username)
        return self._bot_user_id

    async def close(self) -> None:
        if self._driver is not None:
            await self._driver.close()
            self._driver = None

    async def __aenter__(self) -> MattermostClient:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def create_post(self, post: OutgoingPost) -> str:
        body: dict[str, Any] = {
            "channel_id": post.channel_id,
            "message": post.message,
            "props": plain(post.props),
        }
        if post.root_id:
            body["root_id"] = post.root_id
        if post.pending_post_id:
            body["pending_post_id"] = post.pending_post_id
        # The typed posts.create_post has no pending_post_id parameter, hence the generic call.
        created = await self._call("post", "/posts", body, what=f"post to channel {post.channel_id}")
        post_id = created.get("id") if isinstance(created, dict) else None
        if not isinstance(post_id, str) or not post_id:
            raise DeliveryError("Mattermost answered the post without an id", retryable=False)
        return post_id

    async def update_post(
        self, post_id: str, message: str | None = None, props: Mapping[str, Any] | None = None
    ) -> None:
        """Change a post made earlier: only the given parts are replaced (PUT .../patch)."""
        patch: dict[str, Any] = {}
        if message is not None:
            patch["message"] = message
        if props is not None:
            patch["props"] = plain(props)
        await self._call(
            "put", f"/posts/{quote(post_id, safe='')}/patch", patch, what=f"edit of post {post_id}"
        )

    async def get_post(self, post_id: str) -> dict[str, Any]:
        """The post (message, props, root_id, user_id, file_ids, ...). Mattermost leaves the
        integrations (URL and signed context) out of the actions it returns, so props read here
        cannot be written back to keep buttons working. Raises DeliveryError (404 unknown,
        403 when the bot may not read the channel)."""
        return await self._get_json(f"/posts/{quote(post_id, safe='')}", what=f"post {post_id}")

    async def get_file_infos(self, post_id: str) -> list[dict[str, Any]]:
        """The files attached to a post (`id`, `name`, `size`, `mime_type`, ...)."""
        found = await self._call(
            "get", f"/posts/{quote(post_id, safe='')}/files/info", None, what=f"files of post {post_id}"
        )
        if not isinstance(found, list):
            raise DeliveryError(
                f"Mattermost answered the files of post {post_id} with no list", retryable=False
            )
        return [f for f in found if isinstance(f, dict)]

    async def get_file(self, file_id: str, *, max_bytes: int) -> bytes:
        """The content of an uploaded file, read as a stream and refused (DeliveryError, status
        413) past `max_bytes`. Read around the driver, which would parse a JSON file."""
        what = f"file {file_id}"
        url = self._api_url(f"/files/{quote(file_id, safe='')}")
        client = self._require_driver().client.client
        try:
            async with client.stream(
                "GET", url, headers={"Authorization": f"Bearer {self._token}"}, timeout=self._timeout
            ) as response:
                if response.status_code != 200:
                    body = (await response.aread())[:2000]
                    message, error_id = error_message(body)
                    raise self._status_error(response.status_code, message, error_id, what)
                chunks: list[bytes] = []
                size = 0
                async for chunk in response.aiter_bytes():
                    size += len(chunk)
                    if size > max_bytes:
                        raise DeliveryError(
                            f"{what} is larger than {max_bytes} bytes", retryable=False, status=413
                        )
                    chunks.append(chunk)
                return b"".join(chunks)
        except httpx.TimeoutException:
            raise DeliveryError(
                f"Mattermost did not answer within {self._timeout:g} s ({what})", retryable=True
            ) from None
        except httpx.TransportError as exc:
            raise DeliveryError(
                f"cannot reach Mattermost at {self.base_url} ({what}): {type(exc).__name__}", retryable=True
            ) from None

    async def resolve_channel(self, team: str, channel: str) -> str | None:
        """Channel id for team and channel names (the URL slugs), cached in memory.

        Returns None when Mattermost says there is no such channel (or the bot cannot see it).
        Raises DeliveryError when Mattermost cannot be asked.
        """
        team, channel = team.strip(), channel.strip()
        if not team or not channel:
            return None
        key = (team.lower(), channel.lower())
        cached = self._channel_cache.get(key)
        if cached is not None and cached[1] > time.monotonic():
            return cached[0]
        path = f"/teams/name/{quote(key[0], safe='')}/channels/name/{quote(key[1], safe='')}"
        try:
            found = await self._get_json(path, what=f"channel {team}/{channel}")
            channel_id: str | None = str(found["id"]) if found.get("id") else None
        except DeliveryError as exc:
            if exc.status != 404:
                raise
            channel_id = None
        ttl = self._channel_cache_ttl if channel_id else self._channel_miss_ttl
        self._channel_cache[key] = (channel_id, time.monotonic() + ttl)
        return channel_id

    async def channel_exists(self, channel_id: str) -> bool:
        """False when the channel is unknown or archived. A channel the bot may not read (403) exists:
        the caller should not forget it, and posting there reports the permission problem."""
        try:
            channel = await self._get_json(
                f"/channels/{quote(channel_id, safe='')}", what=f"channel {channel_id}"
            )
        except DeliveryError as exc:
            if exc.status in (400, 404):
                return False
            if exc.status == 403:
                return True
            raise
        return not channel.get("delete_at")

    async def add_reaction(self, post_id: str, emoji_name: str) -> None:
        """React to a post as the bot (e.g. `white_check_mark`)."""
        if not self._bot_user_id:
            await self.login()
        body = {"user_id": self._bot_user_id, "post_id": post_id, "emoji_name": emoji_name}
        await self._call("post", "/reactions", body, what=f"reaction on post {post_id}")

    # -- talking to one user ---------------------------------------------------------------------

    async def open_dialog(self, trigger_id: str, url: str, dialog: Mapping[str, Any]) -> None:
        """Open an interactive dialog for the user whose action produced `trigger_id` (valid for
        a few seconds only); its submission is posted to `url`."""
        body = {"trigger_id": trigger_id, "url": url, "dialog": plain(dialog)}
        await self._call("post", "/actions/dialogs/open", body, what="opening a dialog")

    async def send_ephemeral(
        self,
        user_id: str,
        channel_id: str,
        message: str,
        props: Mapping[str, Any] | None = None,
        root_id: str = "",
    ) -> str:
        """Show a post to one user only; returns its id. Mattermost lets only accounts with the
        create_post_ephemeral permission (system admins) do this."""
        post: dict[str, Any] = {"channel_id": channel_id, "message": message, "props": plain(props or {})}
        if root_id:
            post["root_id"] = root_id
        created = await self._call(
            "post",
            "/posts/ephemeral",
            {"user_id": user_id, "post": post},
            what=f"ephemeral post to {user_id}",
        )
        return str(created.get("id", "")) if isinstance(created, dict) else ""

    async def direct_channel(self, user_id: str) -> str:
        """Id of the direct message channel between the bot and the user (created if needed)."""
        if not self._bot_user_id:
            await self.login()
        cached = self._dm_cache.get(user_id)
        if cached is not None:
            return cached
        created = await self._call(
            "post", "/channels/direct", [self._bot_user_id, user_id], what=f"direct channel with {user_id}"
        )
        channel_id = created.get("id") if isinstance(created, dict) else None
        if not isinstance(channel_id, str) or not channel_id:
            raise DeliveryError("Mattermost answered the direct channel without an id", retryable=False)
        self._dm_cache[user_id] = channel_id
        return channel_id

    async def send_direct_message(
        self, user_id: str, message: str, props: Mapping[str, Any] | None = None
    ) -> str:
        """Post a direct message from the bot to the user; returns the post id."""
        channel_id = await self.direct_channel(user_id)
        return await self.create_post(OutgoingPost(channel_id=channel_id, message=message, props=props or {}))

    async def ping(self) -> bool:
        """Whether Mattermost answers its health check. One quick attempt, no retries."""
        driver = self._driver
        if driver is None:
            return False
        try:
            response = await driver.client.client.get(
                self._api_url("/system/ping"), timeout=min(self._ping_timeout, self._timeout)
            )
        except httpx.HTTPError as exc:
            log.debug("Mattermost ping failed: %s", type(exc).__name__)
            return False
        if response.status_code != 200:
            return False
        try:
            status = response.json().get("status")
        except (ValueError, AttributeError):
            return False
        if status != "OK":
            return False
        if not self._bot_user_id:
            # Mattermost came back after a failed start: learn the bot id now, quietly.
            with contextlib.suppress(DeliveryError):
                await self.login()
        return True

    # -- plumbing ---------------------------------------------------------------------------------

    def _require_driver(self) -> AsyncTypedDriver:
        if self._driver is None:
            raise RuntimeError("MattermostClient.start() has not been called")
        return self._driver

    def _api_url(self, path: str) -> str:
        return f"{self._require_driver().client.url}{self._base_path}{API}{path}"

    async def _get_json(self, path: str, *, what: str = "") -> dict[str, Any]:
        result = await self._call("get", path, None, what=what or path)
        if not isinstance(result, dict):
            # The driver hands back the raw response when it is not application/json: a proxy page.
            raise DeliveryError(f"Mattermost answered {path} with something other than JSON", retryable=False)
        return result

    async def _call(
        self, method: str, path: str, body: dict[str, Any] | list[Any] | None, *, what: str
    ) -> Any:
        """One API call through the circuit breaker: refused at once while it is open; its
        outcome (an outage or an answer) reported to it."""
        breaker = self.breaker
        if breaker is None:
            return await self._request(method, path, body, what=what)
        if not breaker.acquire():
            raise DeliveryError(
                f"Mattermost is unavailable, not asked ({what}); circuit open",
                retryable=True,
                retry_after=breaker.delay(),
                status=503,
            )
        try:
            result = await self._request(method, path, body, what=what)
        except DeliveryError as exc:
            if is_outage(exc):
                breaker.failure(retry_after=exc.retry_after)
            else:
                breaker.success()
            raise
        except BaseException:
            breaker.release()
            raise
        breaker.success()
        return result

    async def _request(
        self, method: str, path: str, body: dict[str, Any] | list[Any] | None, *, what: str
    ) -> Any:
        client = self._require_driver().client
        endpoint = f"{self._base_path}{API}{path}"
        try:
            if method == "get":
                return await client.get(endpoint)
            if method == "put":
                return await client.put(endpoint, options=body)
            return await client.post(endpoint, options=body)
        except TooManyRequests as exc:
            log.warning("Mattermost rate limit on %s; retry after %s s", what, exc.retry_after)
            raise DeliveryError(
                f"rate limited by Mattermost ({what})",
                retryable=True,
                retry_after=exc.retry_after,
                status=429,
            ) from None
        except MattermostError as exc:
            error = self._status_error(exc.status_code, str(exc), exc.error_id, what)
            error.retry_after = retry_after_of(exc)
            raise error from None
        except InvalidMattermostError as exc:
            # An error page that is not Mattermost's JSON: typically a proxy in front of it.
            error = self._status_error(exc.status_code, shorten(str(exc)), None, what)
            error.retry_after = retry_after_of(exc)
            raise error from None
        except httpx.UnsupportedProtocol as exc:
            raise DeliveryError(f"bad Mattermost URL {self.base_url}: {exc}", retryable=False) from None
        except httpx.TimeoutException:
            raise DeliveryError(
                f"Mattermost did not answer within {self._timeout:g} s ({what})", retryable=True
            ) from None
        except httpx.TransportError as exc:
            raise DeliveryError(
                f"cannot reach Mattermost at {self.base_url} ({what}): {type(exc).__name__}", retryable=True
            ) from None
        except ValueError:
            # A 2xx whose body is not JSON: the URL points at something that is not Mattermost.
            raise DeliveryError(
                f"unexpected non-JSON answer from {self.base_url} ({what})", retryable=False
            ) from None

    def _status_error(self, status: int, message: str, error_id: str | None, what: str) -> DeliveryError:
        detail = f"Mattermost answered {status} for {what}: {message}" + (
            f" [{error_id}]" if error_id else ""
        )
        if status == 401:
            log.error(
                "Mattermost rejected the bot token (401) at %s: check the configured access token",
                self.base_url,
            )
        elif status == 403:
            log.error(
                "Mattermost bot lacks permission for %s (403): add it to the channel or grant it a role",
                what,
            )
        else:
            log.info("%s", detail)
        # 501 is Mattermost's "feature disabled": waiting does not enable it.
        retryable = (status >= 500 and status != 501) or status in _RETRYABLE_4XX
        return DeliveryError(detail, retryable=retryable, status=status)
