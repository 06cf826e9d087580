"""A client of Mattermost's websocket API that stays connected.

Mattermost pushes events (`posted`, ...) to every websocket connection of an account. This
client authenticates with the bot's token (as an `Authorization` header on the upgrade, and with
an `authentication_challenge` for proxies that drop the header), counts a connection as live once
the server's `hello` arrives, keeps it alive with ping frames, and reconnects after any failure
with capped exponential backoff and jitter. It never catches up by itself: `on_connected` runs
after every `hello`, so the caller can fetch what was posted while the connection was down.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import ssl
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from bot.backoff import retry_delay

log = logging.getLogger(__name__)

_CHALLENGE_SEQ = 1


@dataclass(frozen=True, slots=True)
class WebsocketEvent:
    """One event as Mattermost sends it; `data` values are as sent (a post is a JSON string)."""

    event: str
    data: Mapping[str, Any] = field(default_factory=dict)
    broadcast: Mapping[str, Any] = field(default_factory=dict)
    seq: int = 0


class WebsocketRejected(Exception):
    """Mattermost refused the connection in a way retrying soon will not fix (e.g. the token)."""


EventHandler = Callable[[WebsocketEvent], Awaitable[None]]
ConnectedHandler = Callable[[], Awaitable[None]]


class MattermostWebsocket:
    """Connects to `url` (ws:// or wss://…/api/v4/websocket) as the owner of `token`.

    `on_event` gets every event after `hello`, in order, and should return quickly (queue the
    work): while it runs, no other event is read. `on_connected` runs after each `hello`.
    A failure of either is logged and does not drop the connection.
    """

    def __init__(
        self,
        url: str,
        token: str,
        *,
        on_event: EventHandler,
        on_connected: ConnectedHandler | None = None,
        heartbeat_seconds: float = 30.0,
        hello_timeout_seconds: float = 10.0,
        backoff_base_seconds: float = 1.0,
        backoff_max_seconds: float = 60.0,
        stable_after_seconds: float = 30.0,
        verify: bool | str = True,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self._url = url
        self._token = token
        self._on_event = on_event
        self._on_connected = on_connected
        self._heartbeat = heartbeat_seconds
        self._hello_timeout = hello_timeout_seconds
        self._backoff_base = backoff_base_seconds
        self._backoff_max = backoff_max_seconds
        self._stable_after = stable_after_seconds
        self._ssl = _ssl_setting(url, verify)
        self._rand = rand
        self._session: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._task: asyncio.Task[None] | None = None
        self._connected = False
        self.connects = 0  # connections that got as far as `hello`

    def __repr__(self) -> str:  # the token stays out of reprs
        return f"MattermostWebsocket(url={self._url!r})"

    @property
    def connected(self) -> bool:
        return self._connected

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self.run(), name="mattermost-websocket")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def reconnect(self) -> None:
        """Drop the current connection; the run loop connects again (and catches up again)."""
        ws = self._ws
        if ws is not None and not ws.closed:
            await ws.close()

    async def run(self) -> None:
        """Stay connected until cancelled."""
        failures = 0
        while True:
            connected_at: float | None = None
            try:
                connected_at = await self._connect_once()
            except asyncio.CancelledError:
                raise
            except WebsocketRejected as exc:
                log.error("Mattermost refused the websocket at %s: %s", self._url, exc)
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                log.warning("Mattermost websocket at %s failed: %s", self._url, _describe(exc))
            except Exception:  # a bug must not end the listener: log it and connect again
                log.exception("Mattermost websocket at %s failed unexpectedly", self._url)
            finally:
                self._connected = False
                self._ws = None
            # A connection that held for a while was healthy: start the backoff over.
            if connected_at is not None and time.monotonic() - connected_at >= self._stable_after:
                failures = 0
            delay = retry_delay(failures, base=self._backoff_base, cap=self._backoff_max, rand=self._rand)
            failures += 1
            log.info("Reconnecting to the Mattermost websocket in %.1f s", delay)
            await asyncio.sleep(delay)

    async def _connect_once(self) -> float | None:
        """One connection, until it ends; returns when `hello` arrived (monotonic), if it did."""
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
        connected_at: float | None = None
        async with self._session.ws_connect(
            self._url,
            headers={"Authorization": f"Bearer {self._token}"},
            heartbeat=self._heartbeat,
            ssl=self._ssl,
            timeout=aiohttp.ClientWSTimeout(ws_close=5.0),
            max_msg_size=0,  # posts with large props exceed aiohttp's 4 MiB default
        ) as ws:
            self._ws = ws
            await ws.send_str(
                json.dumps(
                    {
                        "seq": _CHALLENGE_SEQ,
                        "action": "authentication_challenge",
                        "data": {"token": self._token},
                    }
                )
            )
            deadline = time.monotonic() + self._hello_timeout
            while True:
                timeout = None if connected_at is not None else max(0.0, deadline - time.monotonic())
                try:
                    msg = await ws.receive(timeout=timeout)
                except TimeoutError:
                    raise WebsocketRejected(
                        f"no hello within {self._hello_timeout:g} s (is the bot token valid?)"
                    ) from None
                if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED):
                    if connected_at is None:
                        # The server closes a connection whose challenge carried an unknown token.
                        raise WebsocketRejected("closed before hello (is the bot token valid?)")
                    log.warning("Mattermost closed the websocket (code %s)", ws.close_code)
                    return connected_at
                if msg.type == aiohttp.WSMsgType.ERROR:
                    raise aiohttp.ClientError(f"websocket error: {ws.exception()!r}")
                if msg.type != aiohttp.WSMsgType.TEXT:
                    continue
                payload = _parse(msg.data)
                if payload is None:
                    continue
                if "seq_reply" in payload:
                    if payload.get("status") == "FAIL" and payload.get("seq_reply") == _CHALLENGE_SEQ:
                        raise WebsocketRejected("authentication failed (is the bot token valid?)")
                    continue
                data, broadcast = payload.get("data"), payload.get("broadcast")
                event = WebsocketEvent(
                    event=str(payload.get("event", "")),
                    data=data if isinstance(data, dict) else {},
                    broadcast=broadcast if isinstance(broadcast, dict) else {},
                    seq=int(payload.get("seq") or 0),
                )
                if event.event == "hello":
                    if connected_at is None:
                        connected_at = time.monotonic()
                        self._connected = True
                        self.connects += 1
                        log.info("Listening to Mattermost events at %s", self._url)
                        if self._on_connected is not None:
                            await self._guarded(self._on_connected(), "the connection handler")
                    continue
                if connected_at is not None:
                    await self._guarded(self._on_event(event), f"the {event.event!r} event handler")

    @staticmethod
    async def _guarded(call: Awaitable[None], what: str) -> None:
        try:
            await call
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("Mattermost websocket: %s failed", what)


def _parse(text: str) -> dict[str, Any] | None:
    try:
        payload = json.loads(text)
    except ValueError:
        log.debug("ignoring a websocket message that is not JSON")
        return None
    return payload if isinstance(payload, dict) else None


def _ssl_setting(url: str, verify: bool | str) -> ssl.SSLContext | bool:
    if not url.startswith("wss://") or verify is True:
        return True
    if verify is False:
        return False
    return ssl.create_default_context(cafile=verify)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, aiohttp.WSServerHandshakeError):
        return f"upgrade refused with HTTP {exc.status}"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
