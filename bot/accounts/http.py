"""One lazily opened HTTP session for the OAuth clients."""

from __future__ import annotations

import aiohttp


class LazySession:
    """Uses the session it is given, else opens its own on first use and closes only that."""

    def __init__(self, timeout_seconds: float, session: aiohttp.ClientSession | None = None) -> None:
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        self._session = session
        self._own_session = session is None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
            self._own_session = True
        return self._session

    async def close(self) -> None:
        if self._own_session and self._session is not None:
            await self._session.close()
