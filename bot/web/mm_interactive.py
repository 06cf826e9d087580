"""HTTP adapter for button clicks, menu choices and dialog submissions from Mattermost.

POST /mattermost/actions receives a PostActionIntegrationRequest; its `context` is the one the
bot signed when it made the button (Mattermost adds `selected_option` for a menu choice).
POST /mattermost/dialogs receives a SubmitDialogRequest; its `state` is a signed context
serialised by ContextSigner.dumps. Nothing reaches the service before the signature, the expiry,
the user binding and, for single-use contexts, the nonce are checked.

Refusals: a forged or foreign context gets 403. An expired or already used one comes from a
genuine but stale button or dialog, so it gets 200 with a message saying what to do: Mattermost
shows the text of a 200 answer to the user and replaces any other status with a generic error.

Every dialog state is single-use: its nonce is claimed in the shared store before the service
acts, so a form sent twice (replayed, double-clicked, or racing on two replicas) acts once, and
the repeat is answered "already submitted". See `dialog` for when a claim is given back.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol

from aiohttp import web
from pydantic import ValidationError

from bot.mattermost.payloads import (
    SELECTED_OPTION,
    ActionRequest,
    ActionResponse,
    DialogResponse,
    DialogSubmission,
)
from bot.security.signing import (
    ContextSigner,
    ExpiredContext,
    ForgedContext,
    MemoryNonces,
    NonceClaims,
    ReplayedContext,
)
from bot.web.responses import BadJson, json_response, parse_json

log = logging.getLogger(__name__)

FORGED_TEXT = "This action could not be verified and was ignored."
EXPIRED_ACTION_TEXT = "These buttons have expired. Run the command again to get fresh ones."
REPLAYED_ACTION_TEXT = "This choice has already been made."
EXPIRED_DIALOG_TEXT = "This form has expired. Close it and run the command again."
REPLAYED_DIALOG_TEXT = "This form has already been submitted."
FAILED_DIALOG_TEXT = (
    "Sorry, something went wrong, and this form may have been acted on. "
    "Check before you run the command again for a fresh form."
)
FAILED_TEXT = "Sorry, something went wrong. Please try again later."


class InteractiveService(Protocol):
    """Acts on verified clicks and submissions; the context it sees is the verified one."""

    async def handle_action(self, request: ActionRequest) -> ActionResponse: ...

    async def handle_dialog(self, submission: DialogSubmission) -> DialogResponse | None: ...


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _json(body: bytes, status: int = 200) -> web.Response:
    return json_response(body, status=status)


def _plain_json(data: dict[str, Any], status: int = 200) -> web.Response:
    return json_response(data, status=status)


async def _read_object(request: web.Request) -> dict[str, Any] | None:
    try:
        data = parse_json(await request.read())
    except BadJson:
        return None
    return data if isinstance(data, dict) else None


class InteractiveHandler:
    def __init__(
        self,
        service: InteractiveService,
        signer: ContextSigner,
        *,
        remember: NonceClaims | None = None,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        """`remember(nonce, expires_at) -> bool` claims single-use nonces (True on first use) and
        `remember.release(nonce)` gives one back; several replicas must share it
        (`bot.store.nonces.StoreNonces`). Without it, an in-process memory is used."""
        self._service = service
        self._signer = signer
        self._clock = clock
        self._remember: NonceClaims = remember if remember is not None else MemoryNonces(clock)

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/mattermost/actions", self.action),
            web.post("/mattermost/dialogs", self.dialog),
        ]

    async def action(self, request: web.Request) -> web.Response:
        data = await _read_object(request)
        if data is None:
            return _json(ActionResponse.ephemeral("The request is not valid.").to_json_bytes(), 400)
        try:
            click = ActionRequest.model_validate(data)
        except ValidationError:
            return _json(ActionResponse.ephemeral("The request is not valid.").to_json_bytes(), 400)

        # Mattermost adds the menu choice to the context after the bot signed it.
        signed = dict(click.context)
        selected = signed.pop(SELECTED_OPTION, None)
        try:
            context = await self._signer.verify_once(
                signed, self._clock(), self._remember, user_id=click.user_id
            )
        except ExpiredContext:
            return _json(ActionResponse.ephemeral(EXPIRED_ACTION_TEXT).to_json_bytes())
        except ReplayedContext:
            return _json(ActionResponse.ephemeral(REPLAYED_ACTION_TEXT).to_json_bytes())
        except ForgedContext as exc:
            log.warning("action by user %s refused: %s", click.user_id, exc.reason)
            return _json(ActionResponse.ephemeral(FORGED_TEXT).to_json_bytes(), 403)

        if selected is not None:
            context[SELECTED_OPTION] = selected
        verified = click.model_copy(update={"context": context})
        try:
            response = await self._service.handle_action(verified)
        except Exception:
            log.exception("action by user %s on post %s failed", click.user_id, click.post_id)
            response = ActionResponse.ephemeral(FAILED_TEXT)
        if not isinstance(response, ActionResponse):
            response = ActionResponse()
        return _json(response.to_json_bytes())

    async def dialog(self, request: web.Request) -> web.Response:
        data = await _read_object(request)
        if data is None:
            return _plain_json({"error": "The request is not valid."}, 400)
        try:
            submission = DialogSubmission.model_validate({k: v for k, v in data.items() if k != "context"})
        except ValidationError:
            return _plain_json({"error": "The request is not valid."}, 400)

        try:
            context = await self._signer.loads_once(
                submission.state,
                self._clock(),
                self._remember,
                user_id=submission.user_id,
                require_once=True,
            )
        except ExpiredContext:
            return _json(DialogResponse(error=EXPIRED_DIALOG_TEXT).to_json_bytes())
        except ReplayedContext:
            return _json(DialogResponse(error=REPLAYED_DIALOG_TEXT).to_json_bytes())
        except ForgedContext as exc:
            log.warning("dialog submission by user %s refused: %s", submission.user_id, exc.reason)
            return _json(DialogResponse(error=FORGED_TEXT).to_json_bytes(), 403)

        # The claim is made before the service acts (above), so of two racing submissions only
        # one reaches Jira. It is given back only when the service answers with an error: the
        # handlers answer so only when they changed nothing (a field to correct, Jira refusing),
        # and Mattermost then keeps the form open for the user to correct and send again. An
        # answer that closes the form keeps the claim, and so does an unexpected failure, after
        # which what was done is unknown: the user opens a fresh form rather than risk acting
        # twice (e.g. creating a second issue).
        verified = submission.model_copy(update={"context": context})
        try:
            response = await self._service.handle_dialog(verified)
        except Exception:
            log.exception("dialog %r by user %s failed", submission.callback_id, submission.user_id)
            response = DialogResponse(error=FAILED_DIALOG_TEXT)
        else:
            if response is not None and (response.errors or response.error) and not submission.cancelled:
                try:
                    await self._signer.release_once(submission.state, self._remember)
                except Exception:  # the form then says "already submitted": a fresh one works
                    log.exception("could not release the form of user %s", submission.user_id)
        if response is None or submission.cancelled:
            # Mattermost ignores the answer to a cancellation; an empty one closes a dialog.
            return _json(b"{}")
        return _json(response.to_json_bytes())
