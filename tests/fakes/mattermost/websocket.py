"""The websocket API of the fake Mattermost: authentication, `hello`, `posted` events, pings,
and cutting connections."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from bot.mattermost.models import new_id
from tests.fakes.mattermost.common import (
    _MattermostError,
    _now_ms,
)


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


class Websockets:
    """Websocket connections and the `posted` events they get.

    State lives on `FakeMattermost` (server.py).
    """

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
        # The server's `posted` event (App.SendNotifications, server/channels/app/notification.go):
        # data.post is the post as a JSON string; "mentions" and "followers" (JSON lists of user
        # ids) are added only when there are any and are not modelled. The bot reads data.post
        # and data.channel_type (bot/chat/listener.py).
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
