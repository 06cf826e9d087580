"""Liveness, readiness and metrics endpoints."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from aiohttp import web

from bot.metrics import Metrics
from bot.web.responses import json_response


def _json(status: int, body: dict[str, object]) -> web.Response:
    return json_response(body, status=status)


class HealthHandler:
    def __init__(
        self,
        *,
        checks: dict[str, Callable[[], Awaitable[bool]]],
        metrics: Metrics,
        refresh_metrics: Callable[[], Awaitable[None]],
        timeout: float = 3.0,
        stopping: Callable[[], bool] = lambda: False,
    ) -> None:
        self._stopping = stopping
        self._checks = checks
        self._metrics = metrics
        self._refresh = refresh_metrics
        self._timeout = timeout

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/healthz", self.alive),
            web.get("/readyz", self.ready),
            web.get("/metrics", self.metrics),
        ]

    async def alive(self, _request: web.Request) -> web.Response:
        return _json(200, {"status": "ok"})

    async def _check(self, check: Callable[[], Awaitable[bool]]) -> bool:
        try:
            return await asyncio.wait_for(check(), self._timeout)
        except Exception:
            return False

    async def ready(self, _request: web.Request) -> web.Response:
        if self._stopping():
            # A clean stop has begun: the load balancer sends new work to the other replicas.
            return _json(503, {"status": "stopping"})
        names = list(self._checks)
        results = await asyncio.gather(*(self._check(self._checks[n]) for n in names))
        body: dict[str, object] = {
            n: ("ok" if ok else "unavailable") for n, ok in zip(names, results, strict=True)
        }
        ok = all(results)
        body["status"] = "ok" if ok else "unavailable"
        return _json(200 if ok else 503, body)

    async def metrics(self, _request: web.Request) -> web.Response:
        # Stale gauges are better than no metrics.
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._refresh(), self._timeout)
        return web.Response(body=self._metrics.render(), headers={"Content-Type": self._metrics.content_type})
