"""The HTTP server's edges over raw sockets: slow request heads and bodies are cut off, an
oversized body announced with `Expect: 100-continue` is refused before `100 Continue`; and the
slash command adapter's log lines cannot be forged (issue 14: findings 3, 5 and 6)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from urllib.parse import urlencode

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from bot.logs import TRACEBACK_PREFIX, RedactingFormatter
from bot.mattermost.payloads import CommandResponse, SlashCommandRequest
from bot.web.mm_command import FAILED_TEXT, SlashCommandHandler
from bot.web.server import GuardedAppRunner, body_deadline

PATIENCE = 30.0  # seconds: generous, for a loaded machine; the timeouts under test are ~1 s
MAX_BODY = 1_048_576


async def echo(request: web.Request) -> web.Response:
    return web.Response(text=f"got {len(await request.read())} bytes")


@asynccontextmanager
async def serving(
    app: web.Application, *, head_timeout: float = 10.0, max_body_bytes: int = MAX_BODY
) -> AsyncIterator[tuple[str, int]]:
    runner = GuardedAppRunner(app, head_timeout=head_timeout, max_body_bytes=max_body_bytes, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        yield host, port
    finally:
        await runner.cleanup()


def small_app(
    *middlewares: object, handler: Callable[[web.Request], Awaitable[web.StreamResponse]] = echo
) -> web.Application:
    app = web.Application(client_max_size=MAX_BODY, middlewares=list(middlewares))  # type: ignore[arg-type]
    app.router.add_post("/upload", handler)
    return app


async def closed_by_server(reader: asyncio.StreamReader) -> bytes:
    """Everything the server sends until it closes the connection."""
    received = b""
    try:
        while chunk := await reader.read(65536):
            received += chunk
    except ConnectionResetError:
        pass
    return received


async def dribble_until_closed(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, data: bytes, pause: float = 0.1
) -> tuple[int, bytes]:
    """Send `data` a byte at a time; (bytes sent, bytes received) when the server closes."""
    closed = asyncio.create_task(closed_by_server(reader))
    sent = 0
    for byte in data:
        if closed.done():
            break
        try:
            writer.write(bytes([byte]))
            await writer.drain()
        except ConnectionError:
            break
        sent += 1
        await asyncio.sleep(pause)
    return sent, await asyncio.wait_for(closed, PATIENCE)


# -- request head deadline -----------------------------------------------------------------------


async def test_a_request_head_sent_slowly_is_cut_off() -> None:
    # 0.1 s a byte: this head would take about 20 s; the deadline is 1 s.
    head = b"POST /upload HTTP/1.1\r\nHost: x\r\n" + b"X-Slow: " + b"a" * 150 + b"\r\n\r\n"
    async with serving(small_app(), head_timeout=1.0) as (host, port):
        reader, writer = await asyncio.open_connection(host, port)
        sent, received = await dribble_until_closed(reader, writer, head)
        writer.close()
    assert sent < len(head)
    assert received == b""  # nothing answered: the connection was closed


async def test_a_connection_that_sends_nothing_is_closed() -> None:
    async with serving(small_app(), head_timeout=1.0) as (host, port):
        reader, writer = await asyncio.open_connection(host, port)
        assert await asyncio.wait_for(closed_by_server(reader), PATIENCE) == b""
        writer.close()


async def test_the_next_head_on_a_kept_alive_connection_has_a_deadline_too() -> None:
    async with serving(small_app(), head_timeout=1.0) as (host, port):
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc")
        await writer.drain()
        status = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), PATIENCE)
        assert status.startswith(b"HTTP/1.1 200")
        await asyncio.wait_for(reader.readuntil(b"got 3 bytes"), PATIENCE)
        sent, _ = await dribble_until_closed(
            reader, writer, b"POST /upload HTTP/1.1\r\nHost: x\r\n" + b"a" * 200
        )
        writer.close()
    assert sent < 200


async def test_a_head_in_time_is_served_and_its_body_may_take_longer() -> None:
    # The head deadline stops at the end of the head: a body that takes longer is the body
    # deadline's business.
    async with serving(small_app(), head_timeout=1.0) as (host, port):
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 20\r\n\r\n")
        for _ in range(20):  # about 2 s
            writer.write(b"z")
            await writer.drain()
            await asyncio.sleep(0.1)
        answer = await asyncio.wait_for(reader.readuntil(b"got 20 bytes"), PATIENCE)
        writer.close()
    assert answer.startswith(b"HTTP/1.1 200")


# -- request body deadline -----------------------------------------------------------------------


async def test_a_body_sent_slowly_is_answered_408_and_the_connection_closed() -> None:
    async with serving(small_app(body_deadline(1.0))) as (host, port):
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n")
        sent, received = await dribble_until_closed(reader, writer, b"b" * 1000)
        writer.close()
    assert sent < 1000
    assert received.startswith(b"HTTP/1.1 408")


async def test_the_body_deadline_ends_with_the_body() -> None:
    async def slow_after_reading(request: web.Request) -> web.Response:
        body = await request.read()
        await asyncio.sleep(1.5)  # three times the body deadline, after the body is in
        return web.Response(text=f"got {len(body)} bytes")

    async with serving(small_app(body_deadline(0.5), handler=slow_after_reading)) as (host, port):
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc")
        await writer.drain()
        answer = await asyncio.wait_for(reader.readuntil(b"got 3 bytes"), PATIENCE)
        writer.close()
    assert answer.startswith(b"HTTP/1.1 200")


async def test_a_handler_timeout_is_not_taken_for_the_body_deadline() -> None:
    async def times_out(request: web.Request) -> web.Response:
        await request.read()
        async with asyncio.timeout(0.01):
            await asyncio.sleep(1)
        return web.Response()

    app = small_app(body_deadline(30), handler=times_out)
    async with TestClient(TestServer(app)) as client:
        r = await client.post("/upload", data=b"abc")
        assert r.status == 504  # aiohttp's answer to a handler's TimeoutError, not our 408


# -- Expect: 100-continue ------------------------------------------------------------------------


async def test_an_oversized_body_is_refused_before_100_continue() -> None:
    async with serving(small_app()) as (host, port):
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(
            b"POST /upload HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 50000000\r\n\r\n"
        )
        await writer.drain()
        received = await asyncio.wait_for(closed_by_server(reader), PATIENCE)
        writer.close()
    assert received.startswith(b"HTTP/1.1 413")
    assert b"100 Continue" not in received


async def test_a_body_within_the_limit_gets_100_continue() -> None:
    async with serving(small_app()) as (host, port):
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(b"POST /upload HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
        await writer.drain()
        go_ahead = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), PATIENCE)
        assert go_ahead == b"HTTP/1.1 100 Continue\r\n\r\n"
        writer.write(b"hello")
        answer = await asyncio.wait_for(reader.readuntil(b"got 5 bytes"), PATIENCE)
        writer.close()
    assert answer.startswith(b"HTTP/1.1 200")


# -- log lines from the slash command adapter ----------------------------------------------------

FORGED = "2025-01-01 00:00:00,000 ERROR bot.app: FORGED"


class Failing:
    """A command service whose failure message quotes the user's text, as exceptions often do."""

    async def handle(self, request: SlashCommandRequest) -> CommandResponse:
        raise ValueError(f"cannot run {request.text!s}")


async def test_control_characters_in_a_slash_command_cannot_forge_log_lines(
    caplog: pytest.LogCaptureFixture,
) -> None:
    handler = SlashCommandHandler(Failing(), tokens=["tok"])
    app = web.Application()
    app.add_routes(handler.routes())
    form = {
        "token": "tok",
        "team_id": "t1",
        "channel_id": "c1",
        "user_id": f"u1\r\n{FORGED}",
        "command": "/jira",
        "text": f"help\n{FORGED}\x1b[1A\u2028{FORGED}",
    }
    async with TestClient(TestServer(app)) as client:
        with caplog.at_level(logging.INFO):
            r = await client.post(
                "/mattermost/command",
                data=urlencode(form),
                headers={"Content-Type": "application/x-www-form-urlencoded"},
            )
            assert r.status == 200
            assert FAILED_TEXT in await r.text()
    records = [r for r in caplog.records if r.name == "bot.web.mm_command"]
    assert records and records[0].exc_info  # logged with its traceback
    text = "\n".join(
        RedactingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s").format(r) for r in records
    )
    lines = text.split("\n")
    assert not [ln for ln in lines if ln.startswith("2025-01-01")]
    assert len([ln for ln in lines if not ln.startswith(TRACEBACK_PREFIX)]) == len(records)
    assert "by user u1\\r\\n2025-01-01" in lines[0]
    assert f"{TRACEBACK_PREFIX}ValueError: cannot run help" in text
    assert "\\x1b[1A\\u20282025-01-01" in text
