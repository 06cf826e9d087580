"""HTTP adapter for the /jira custom slash command: POST /mattermost/command.

Authenticate the command token, parse Mattermost's form, run the command, answer in time.
Mattermost gives up on a slash command after a few seconds, so the first answer always leaves
within `timeout` (1.5 s by default): a command still running then is answered "Working on it…",
and its real answer is posted to the request's `response_url` when it is ready.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
from collections.abc import Callable, Sequence
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlsplit

import aiohttp
from aiohttp import web
from pydantic import ValidationError

from bot.mattermost.payloads import CommandResponse, SlashCommandRequest
from bot.web.responses import json_response

log = logging.getLogger(__name__)

WORKING_TEXT = "Working on it…"
FAILED_TEXT = "Sorry, something went wrong while running this command. Please try again later."
RESPONSE_URL_ATTEMPTS = 2
RESPONSE_URL_RETRY_PAUSE = 1.0


class CommandService(Protocol):
    """Runs a slash command. Raising is allowed: the user then gets a short error, never a trace."""

    async def handle(self, request: SlashCommandRequest) -> CommandResponse: ...


def token_matches(given: Sequence[str], accepted: Sequence[bytes]) -> bool:
    """Constant-time check of every given token against every accepted one. No early exit, so
    the time taken says nothing about which token matched or how much of one did."""
    ok = False
    for token in given:
        candidate = token.encode()
        for secret in accepted:
            ok |= hmac.compare_digest(candidate, secret)
    return ok


def _default_http() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))


def command_json(data: CommandResponse, status: int = 200) -> web.Response:
    return json_response(data.to_json_bytes(), status=status)


class SlashCommandHandler:
    def __init__(
        self,
        service: CommandService,
        *,
        tokens: Sequence[str],
        timeout: float = 1.5,
        http: Callable[[], aiohttp.ClientSession] = _default_http,
        autocomplete: Callable[[], dict[str, Any]] | None = None,
        response_url_allowed: Callable[[str], bool] | None = None,
    ) -> None:
        """`tokens`: the tokens Mattermost shows for the /jira command(s); with none, every
        request is refused. `http` makes a new client session for each delayed answer; the
        session is closed after use. `autocomplete` gives the command tree in Mattermost's
        AutocompleteData shape, served for tools that register the command.
        `response_url_allowed(url)`: whether a delayed answer may be posted there (the app
        allows Mattermost's own origin and mattermost.response_url_allowed_hosts); None: any."""
        self._response_url_allowed = response_url_allowed
        self._service = service
        self._autocomplete = autocomplete
        self._tokens = tuple(t.encode() for t in tokens if t)
        self._timeout = timeout
        self._http = http
        self._pending: set[asyncio.Task[None]] = set()

    def routes(self) -> list[web.RouteDef]:
        routes = [web.post("/mattermost/command", self.command)]
        if self._autocomplete is not None:
            routes.append(web.get("/mattermost/command/autocomplete", self.autocomplete))
        return routes

    async def autocomplete(self, _request: web.Request) -> web.Response:
        assert self._autocomplete is not None
        return json_response(self._autocomplete())

    @property
    def pending(self) -> int:
        """How many delayed answers are still being worked on or sent."""
        return len(self._pending)

    async def command(self, request: web.Request) -> web.Response:
        body = await request.read()
        try:
            text: str | None = body.decode("utf-8")
        except UnicodeDecodeError:
            text = None
        pairs = parse_qsl(text, keep_blank_values=True) if text else []

        # Mattermost sends the token both as a form field and as "Authorization: Token …".
        given = [v for k, v in pairs if k == "token"]
        if len(given) > 1:
            # Never sent by Mattermost; which copy counts would be a guess.
            log.warning("slash command refused: the token field is given more than once")
            return command_json(CommandResponse.ephemeral("The command request is not valid."), 400)
        scheme, _, value = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "token" and value.strip():
            given.append(value.strip())
        if not self._tokens or not given or not token_matches(given, self._tokens):
            log.warning("slash command refused: missing or unknown command token")
            return command_json(CommandResponse.ephemeral("Unknown or missing command token."), 401)

        try:
            if text is None:
                raise ValueError("body is not UTF-8")
            command = SlashCommandRequest.from_pairs(pairs)
        except (ValidationError, ValueError) as exc:
            log.warning("slash command refused: not a Mattermost command form (%s)", _summary(exc))
            return command_json(CommandResponse.ephemeral(_invalid_form(exc)), 400)
        return await self._answer(command)

    async def _answer(self, command: SlashCommandRequest) -> web.Response:
        if command.response_url and not self._may_post_to(command.response_url):
            # Answered inline only: a late answer is dropped rather than posted elsewhere.
            command = command.model_copy(update={"response_url": ""})
        task = asyncio.create_task(self._run(command), name=f"slash-command {command.command}")
        try:
            done, _ = await asyncio.wait({task}, timeout=self._timeout)
        except asyncio.CancelledError:
            # Mattermost hung up: the command still finishes, and answers through response_url.
            self._finish_later(task, command)
            raise
        if task in done:
            return command_json(task.result())
        self._finish_later(task, command)
        return command_json(CommandResponse.ephemeral(WORKING_TEXT))

    async def _run(self, command: SlashCommandRequest) -> CommandResponse:
        try:
            response = await self._service.handle(command)
        except Exception:
            log.exception("slash command %s by user %s failed", command.command, command.user_id)
            return CommandResponse.ephemeral(FAILED_TEXT)
        if not isinstance(response, CommandResponse):
            log.error("slash command %s answered %s, not a CommandResponse", command.command, type(response))
            return CommandResponse.ephemeral(FAILED_TEXT)
        return response

    def _finish_later(self, task: asyncio.Task[CommandResponse], command: SlashCommandRequest) -> None:
        later = asyncio.create_task(self._deliver(task, command), name="slash-command response_url")
        self._pending.add(later)
        later.add_done_callback(self._pending.discard)

    async def _deliver(self, task: asyncio.Task[CommandResponse], command: SlashCommandRequest) -> None:
        response = await task
        if response.is_empty():
            return
        if not command.response_url:
            log.warning("slash command %s finished late but came without a response_url", command.command)
            return
        await self.post_to_response_url(command.response_url, response)

    def _may_post_to(self, url: str) -> bool:
        if self._response_url_allowed is None or self._response_url_allowed(url):
            return True
        log.warning(
            "response_url on host %r refused: neither mattermost.url's origin nor in "
            "mattermost.response_url_allowed_hosts",
            urlsplit(url).hostname,
        )
        return False

    async def post_to_response_url(self, url: str, response: CommandResponse) -> bool:
        """POST a CommandResponse to a command's response_url; True when Mattermost took it.
        Retried once on a network error or a 5xx/429; failures are logged, not raised. A URL
        `response_url_allowed` refuses is not posted to (False)."""
        if not self._may_post_to(url):
            return False
        body = response.to_json_bytes()
        where = urlsplit(url).netloc  # the path holds the hook id, a capability: not logged
        for attempt in range(1, RESPONSE_URL_ATTEMPTS + 1):
            try:
                async with (
                    self._http() as session,
                    session.post(url, data=body, headers={"Content-Type": "application/json"}) as answer,
                ):
                    if answer.status < 300:
                        return True
                    retry = answer.status >= 500 or answer.status == 429
                    log.warning("response_url at %s answered %s", where, answer.status)
            except (aiohttp.ClientError, TimeoutError) as exc:
                retry = True
                log.warning("response_url at %s failed: %s", where, type(exc).__name__)
            if not retry or attempt == RESPONSE_URL_ATTEMPTS:
                return False
            await asyncio.sleep(RESPONSE_URL_RETRY_PAUSE)
        return False

    async def close(self, grace_seconds: float = 5.0) -> None:
        """Let delayed answers finish for up to `grace_seconds`, then cancel the rest."""
        if not self._pending:
            return
        _, still = await asyncio.wait(set(self._pending), timeout=grace_seconds)
        for task in still:
            task.cancel()
        for task in still:
            with contextlib.suppress(asyncio.CancelledError):
                await task


def _invalid_form(exc: Exception) -> str:
    """What is wrong with the form, naming the fields (Mattermost always sends them all)."""
    if not isinstance(exc, ValidationError):
        return "The command request is not valid: the body is not UTF-8 form data."
    missing: list[str] = []
    wrong: list[str] = []
    for e in exc.errors():
        name = ".".join(str(p) for p in e["loc"])
        (missing if e["type"] in ("missing", "string_too_short") else wrong).append(name)
    parts = []
    if missing:
        parts.append("missing " + ", ".join(missing))
    if wrong:
        parts.append("not valid: " + ", ".join(wrong))
    return "The command request is not valid: " + "; ".join(parts) + "."


def _summary(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return ", ".join(".".join(str(p) for p in e["loc"]) + ": " + e["msg"] for e in exc.errors())
    return str(exc)
