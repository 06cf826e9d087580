"""The HTTP server's edges: what is refused or cut off before, or while, a handler reads a request.

- A client must send its whole request head within `header_read_timeout_seconds` of connecting
  (or, on a kept-alive connection, of starting the next request); otherwise the connection is
  closed. aiohttp has no such deadline of its own, so the protocol (`RequestHandler`) is
  subclassed: a timer armed when a head is due and disarmed when the parser has produced it.
- A request body must arrive within `body_read_timeout_seconds` of the handler starting
  (`body_deadline`, a middleware): 408, and the connection is closed.
- A request announcing `Expect: 100-continue` with a body over the size limit gets 413 at once,
  never `100 Continue` (which would invite the client to send the body).

`serve` runs an application with these, as `web.run_app` would.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler, Middleware
from aiohttp.web_protocol import RequestHandler

from bot.config import ServerSettings
from bot.web.responses import json_response

log = logging.getLogger(__name__)

# An idle kept-alive connection is closed after this long (run_app's default).
KEEPALIVE_SECONDS = 75.0

_RawHandler = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]


class _HeadDeadlineHandler(RequestHandler):
    """aiohttp's protocol, closing connections whose request head does not arrive in time."""

    __slots__ = ("_head_timeout", "_head_timer")

    def __init__(self, manager: web.Server, *, head_timeout: float, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._head_timeout = head_timeout
        self._head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        # While the protocol waits for the next request (its waiter pending), every byte is
        # part of a head, so a head is due from the first one. Body bytes arrive while a
        # handler runs, when there is no waiter, and never arm the timer.
        waiting = self._waiter is not None and not self._waiter.done()
        queued = len(self._messages)
        super().data_received(data)
        if len(self._messages) > queued:
            self._disarm()  # a whole head (or a parse error, answered 400) has arrived
        elif waiting and data:
            self._arm()

    def connection_lost(self, exc: BaseException | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        if self._head_timer is None:
            self._head_timer = self._loop.call_later(self._head_timeout, self._head_too_slow)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_too_slow(self) -> None:
        self._head_timer = None
        log.debug("closed a connection whose request head took over %s s", self._head_timeout)
        self.force_close()


class _GuardedServer(web.Server):
    def __init__(self, handler: _RawHandler, *, head_timeout: float, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self._head_timeout = head_timeout

    def __call__(self) -> RequestHandler:
        return _HeadDeadlineHandler(self, loop=self._loop, head_timeout=self._head_timeout, **self._kwargs)


def refuse_large_expect(handler: _RawHandler, max_body_bytes: int) -> _RawHandler:
    """Answer 413 before the application (whose routes send `100 Continue`) sees a request that
    expects a go-ahead for a body over the limit."""

    async def handle(request: web.BaseRequest) -> web.StreamResponse:
        if request.headers.get(hdrs.EXPECT) and (request.content_length or 0) > max_body_bytes:
            log.debug("refused an announced body of %s bytes before 100 Continue", request.content_length)
            return await _answer_and_close(
                request,
                json_response(
                    {"status": "too_large", "reason": f"body over {max_body_bytes} bytes"}, status=413
                ),
            )
        return await handler(request)

    return handle


async def _answer_and_close(request: web.BaseRequest, response: web.StreamResponse) -> web.StreamResponse:
    """Send `response`, then close the connection at once. aiohttp would otherwise go on reading
    (and discarding) the rest of the body for up to 10 s, which is what a slow or oversized
    sender is refused for."""
    response.force_close()
    await response.prepare(request)
    await response.write_eof()
    if request.protocol is not None:
        request.protocol.force_close()  # the transport sends what it holds, then closes
    return response


class GuardedAppRunner(web.AppRunner):
    """An AppRunner whose server has the request-head deadline and the early size check."""

    def __init__(
        self, app: web.Application, *, head_timeout: float, max_body_bytes: int, **kwargs: Any
    ) -> None:
        super().__init__(app, **kwargs)
        self._guard = (head_timeout, max_body_bytes)

    async def _make_server(self) -> web.Server:
        plain = await super()._make_server()
        head_timeout, max_body_bytes = self._guard
        return _GuardedServer(
            refuse_large_expect(plain.request_handler, max_body_bytes),
            head_timeout=head_timeout,
            request_factory=plain.request_factory,
            handler_cancellation=plain.handler_cancellation,
            loop=plain._loop,
            **plain._kwargs,
        )


def body_deadline(seconds: float) -> Middleware:
    """Middleware: a request whose body has not fully arrived `seconds` after its handler started
    is answered 408 and its connection closed. The deadline ends when the body is complete, so it
    never cuts short the handler's own work."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.body_exists or request.content.is_eof():
            return await handler(request)
        reading = True

        def body_complete() -> None:
            if reading:
                deadline.reschedule(None)

        try:
            async with asyncio.timeout(seconds) as deadline:
                request.content.on_eof(body_complete)
                return await handler(request)
        except TimeoutError:
            if not deadline.expired():
                raise  # the handler's own timeout, not ours
        finally:
            reading = False  # the body may end later (aiohttp drains it): the deadline is gone
        log.debug("closed %s %s: body not received within %s s", request.method, request.path, seconds)
        return await _answer_and_close(
            request,
            json_response(
                {"status": "timeout", "reason": f"body not received within {seconds:g} s"}, status=408
            ),
        )

    return middleware


def serve(
    app: web.Application,
    settings: ServerSettings,
    *,
    shutdown_timeout: float,
    before_stop: Callable[[], Awaitable[None]] | None = None,
    reuse_port: bool = False,
    listening: Callable[[], None] | None = None,
) -> None:
    """Run `app` until SIGINT or SIGTERM, as `web.run_app` does, with the guards above.

    `before_stop` runs on the signal while the server still answers (a replica's clean stop:
    readiness 503, posts in flight finished, claims released), before it stops listening.
    `reuse_port`: bind with SO_REUSEPORT, beside the other workers of `serve --workers N`;
    `listening` is called once the port is bound."""

    async def main() -> None:
        runner = GuardedAppRunner(
            app,
            head_timeout=settings.header_read_timeout_seconds,
            max_body_bytes=settings.max_body_bytes,
            access_log=None,
            keepalive_timeout=KEEPALIVE_SECONDS,
            shutdown_timeout=shutdown_timeout,
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await runner.setup()
        try:
            await web.TCPSite(runner, settings.host, settings.port, reuse_port=reuse_port or None).start()
            if listening is not None:
                listening()
            await stop.wait()
            if before_stop is not None:
                await before_stop()
        finally:
            # Graceful, in aiohttp's order: stop accepting, on_shutdown, drain, cleanup contexts.
            await runner.cleanup()

    # As run_app: not asyncio.run, which would wait at the end for every executor thread, even
    # one blocked on a network call.
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        loop.run_until_complete(main())
    finally:
        leftover = asyncio.all_tasks(loop)
        for task in leftover:
            task.cancel()
        loop.run_until_complete(asyncio.gather(*leftover, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
        asyncio.set_event_loop(None)
