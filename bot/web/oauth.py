"""HTTP adapter for connecting Jira accounts: the connect link and the OAuth callbacks.

Browsers land here, so every answer is a small HTML page (escaped, no stack traces), never
cached and never sent as a Referer (callback URLs carry one-time codes).
"""

from __future__ import annotations

import hashlib
import html
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from aiohttp import web

from bot.accounts.connect import CONNECT_PATH, STATE_TTL
from bot.accounts.models import AccountError, Connection
from bot.accounts.oauth1_server import CALLBACK_PATH as OAUTH1_CALLBACK_PATH
from bot.accounts.oauth_cloud import CALLBACK_PATH as CLOUD_CALLBACK_PATH
from bot.accounts.service import AccountService
from bot.web.responses import RepeatedParameter, single_query_value

log = logging.getLogger(__name__)

_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
}

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>{title}</title>
<style>body{{font-family:sans-serif;max-width:36em;margin:4em auto;padding:0 1em;line-height:1.5}}</style>
</head><body><h1>{title}</h1><p>{message}</p></body></html>
"""


def _utc_now() -> datetime:
    return datetime.now(UTC)


def page(status: int, title: str, message: str) -> web.Response:
    """A plain HTML page; `title` and `message` are escaped."""
    body = _PAGE.format(title=html.escape(title), message=html.escape(message))
    return web.Response(status=status, text=body, content_type="text/html", charset="utf-8", headers=_HEADERS)


def browser_cookie_name(state: str) -> str:
    """One cookie per pending connection, so two connections started together do not collide."""
    return "jira_connect_" + hashlib.sha256(state.encode()).hexdigest()[:16]


def _success(connection: Connection) -> web.Response:
    who = connection.identity.display_name or connection.jira_user_key
    if connection.identity.email:
        who += f" ({connection.identity.email})"
    return page(
        200,
        "Connected to Jira",
        f"Your Mattermost account is now connected to {connection.instance_id} as {who}. "
        "You can close this window and go back to Mattermost.",
    )


def _failure(message: str, status: int = 400) -> web.Response:
    return page(status, "Jira connection failed", message)


class OAuthHandler:
    def __init__(
        self,
        service: AccountService,
        *,
        clock: Callable[[], datetime] = _utc_now,
        secure_cookies: bool | None = None,
    ) -> None:
        self._service = service
        self._clock = clock
        # Secure cookies when the bot is reached over https (default), so the browser binding
        # never travels in clear.
        self._secure = service.public_url.startswith("https://") if secure_cookies is None else secure_cookies

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get(CONNECT_PATH, self.connect),
            web.get(CLOUD_CALLBACK_PATH, self.cloud_callback),
            web.get(OAUTH1_CALLBACK_PATH, self.oauth1_callback),
        ]

    async def connect(self, request: web.Request) -> web.StreamResponse:
        try:
            state = single_query_value(request.query, "state")
        except RepeatedParameter as exc:
            return _failure(str(exc))
        cookie = browser_cookie_name(state)
        try:
            redirect = await self._service.open_connect(state, request.cookies.get(cookie), now=self._clock())
        except AccountError as exc:
            return _failure(str(exc))
        except Exception:
            log.exception("opening a connect link failed")
            return _failure("Something went wrong on the bot's side. Try `/jira connect` again later.", 500)
        response = web.Response(status=302, headers={**_HEADERS, "Location": redirect.url})
        response.set_cookie(
            cookie,
            redirect.browser_nonce,
            max_age=int(STATE_TTL.total_seconds()),
            path="/",
            httponly=True,
            secure=self._secure,
            # Lax: sent on the top-level redirect back from Atlassian or Jira, not on cross-site requests.
            samesite="Lax",
        )
        return response

    async def cloud_callback(self, request: web.Request) -> web.StreamResponse:
        try:
            state = single_query_value(request.query, "state")
            code = single_query_value(request.query, "code")
        except RepeatedParameter as exc:
            return _failure(str(exc))
        return await self._complete(
            request,
            state,
            lambda nonce: self._service.complete_cloud(
                state,
                code,
                browser_nonce=nonce,
                now=self._clock(),
                error=request.query.get("error", ""),
            ),
        )

    async def oauth1_callback(self, request: web.Request) -> web.StreamResponse:
        try:
            token, verifier = (
                single_query_value(request.query, n) for n in ("oauth_token", "oauth_verifier")
            )
        except RepeatedParameter as exc:
            return _failure(str(exc))
        return await self._complete(
            request,
            token,
            lambda nonce: self._service.complete_oauth1(
                token, verifier, browser_nonce=nonce, now=self._clock()
            ),
        )

    async def _complete(
        self, request: web.Request, state: str, finish: Callable[[str | None], Awaitable[Connection]]
    ) -> web.StreamResponse:
        cookie = browser_cookie_name(state)
        try:
            connection = await finish(request.cookies.get(cookie))
        except AccountError as exc:
            response = _failure(str(exc))
        except Exception:
            log.exception("completing a Jira connection failed")
            response = _failure(
                "Something went wrong on the bot's side. Try `/jira connect` again later.", 500
            )
        else:
            response = _success(connection)
        response.del_cookie(cookie, path="/")
        return response
