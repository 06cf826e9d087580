"""What Mattermost sends to integrations (slash commands, button clicks, dialog submissions)
and what integrations answer with: dialogs, trigger ids, response URLs."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from bot.mattermost.models import new_id
from tests.fakes.mattermost.common import (
    _invalid_body_param,
    _invalid_param,
    _json_response,
    _MattermostError,
    _now_ms,
    _read_json,
)

TRIGGER_ID_TTL = 30.0
COMMAND_WEBHOOK_MAX_USES = 5
COMMAND_WEBHOOK_TTL = 30 * 60.0
_DIALOG_ELEMENT_TYPES = frozenset({"text", "textarea", "select", "bool", "radio", "date", "datetime"})
_TEXT_SUBTYPES = frozenset({"", "text", "email", "number", "tel", "url", "password"})
_MENTION_RE = re.compile(r"(?<![\w@])@([a-z0-9][a-z0-9._-]*)")
_CHANNEL_MENTION_RE = re.compile(r"(?<![\w~])~([a-z0-9][a-z0-9_-]*)")


# What Mattermost sends integrations, field for field, so that no test passes on a field a real
# server never sends. Every request built below is checked against these lists.
#
# A custom slash command's form: App.tryExecuteCustomCommand builds it, App.DoCommandRequest posts
# it (mattermost/mattermost, server/channels/app/command.go). The mention fields come once per
# mention and only when the text has any. No root_id: the server keeps the thread to itself.
COMMAND_FORM_FIELDS = frozenset(
    {
        "token",
        "team_id",
        "team_domain",
        "channel_id",
        "channel_name",
        "user_id",
        "user_name",
        "command",
        "text",
        "trigger_id",
        "response_url",
        "user_mentions",
        "user_mentions_ids",
        "channel_mentions",
        "channel_mentions_ids",
    }
)
# A click: model.PostActionIntegrationRequest (server/public/model/integration_action.go).
ACTION_REQUEST_FIELDS = frozenset(
    {
        "user_id",
        "user_name",
        "channel_id",
        "channel_name",
        "team_id",
        "team_domain",
        "post_id",
        "trigger_id",
        "type",
        "data_source",
        "context",
    }
)
# A dialog submission: model.SubmitDialogRequest (same file); `url` is cleared by the server's
# SubmitInteractiveDialog before sending and left out (omitempty).
DIALOG_SUBMISSION_FIELDS = frozenset(
    {"type", "callback_id", "state", "user_id", "channel_id", "team_id", "submission", "cancelled"}
)


def _only(fields: frozenset[str], keys: Any, what: str) -> None:
    extra = set(keys) - fields
    if extra:
        raise AssertionError(f"a real Mattermost server never sends {sorted(extra)} in {what}")


@dataclass(frozen=True, slots=True)
class SlashForm:
    """A slash command request as Mattermost posts it to the command's URL."""

    body: str  # application/x-www-form-urlencoded
    headers: dict[str, str]
    trigger_id: str
    response_url: str
    fields: dict[str, list[str]]


@dataclass(slots=True)
class _CommandHook:
    user_id: str
    channel_id: str
    root_id: str
    expires: float
    uses: int = 0


class Interactions:
    """Slash command forms, action and dialog requests, trigger ids, response URLs and dialogs.

    State lives on `FakeMattermost` (server.py).
    """

    def issue_trigger_id(self, user_id: str) -> str:
        """A trigger id as Mattermost puts in slash commands and clicks: it lets the integration
        open one dialog for this user within `trigger_ttl` seconds."""
        millis = str(_now_ms())
        signature = base64.b64encode(secrets.token_bytes(32)).decode()
        trigger_id = base64.b64encode(f"{new_id()}:{user_id}:{millis}:{signature}".encode()).decode()
        self._trigger_ids[trigger_id] = (user_id, time.monotonic() + self.trigger_ttl)
        return trigger_id

    def new_response_url(
        self, base_url: str | None = None, *, user_id: str = "", channel_id: str = "", root_id: str = ""
    ) -> str:
        """A slash command's response_url, served by this fake. `base_url` is where the fake is
        served (default: `url`, when started with `start`)."""
        hook_id = new_id()
        self._command_hooks[hook_id] = _CommandHook(
            user_id, channel_id, root_id, time.monotonic() + COMMAND_WEBHOOK_TTL
        )
        return f"{(base_url or self.url).rstrip('/')}/hooks/commands/{hook_id}"

    def slash_form(
        self,
        user_id: str,
        channel_id: str,
        text: str,
        token: str,
        *,
        command: str = "/jira",
        team: str | None = None,
        base_url: str | None = None,
        root_id: str = "",
    ) -> SlashForm:
        """The form Mattermost posts for `command text` typed by the user in the channel
        (`COMMAND_FORM_FIELDS`): a fresh trigger id and response_url, the users and public
        channels the text mentions, the token as a field and as "Authorization: Token …".
        `team` (a name) is the team the user is in, needed for direct channels. `root_id` is the
        thread the command was typed in: the server puts an in_channel answer there, but the
        form does not carry it."""
        user = self.users[user_id]
        channel = self.channels[channel_id]
        team_id = self._team_id(team) if team else channel["team_id"]
        if not team_id:
            raise ValueError("a direct or group channel needs the `team` the user is in")
        trigger_id = self.issue_trigger_id(user_id)
        response_url = self.new_response_url(
            base_url, user_id=user_id, channel_id=channel_id, root_id=root_id
        )
        pairs: list[tuple[str, str]] = [
            ("token", token),
            ("team_id", team_id),
            ("team_domain", self.teams[team_id]["name"]),
            ("channel_id", channel_id),
            ("channel_name", channel["name"]),
            ("user_id", user_id),
            ("user_name", user["username"]),
            ("command", command),
            ("text", text),
            ("trigger_id", trigger_id),
            ("response_url", response_url),
        ]
        for name in dict.fromkeys(_MENTION_RE.findall(text.lower())):
            found = next((u for u in self.users.values() if u["username"] == name.rstrip(".")), None)
            if found is not None:
                pairs += [("user_mentions", found["username"]), ("user_mentions_ids", found["id"])]
        for name in dict.fromkeys(_CHANNEL_MENTION_RE.findall(text.lower())):
            found = self._find_channel(team_id, name)
            if found is not None and found["type"] == "O":
                pairs += [("channel_mentions", name), ("channel_mentions_ids", found["id"])]
        _only(COMMAND_FORM_FIELDS, (k for k, _ in pairs), "a slash command's form")
        # Go's url.Values.Encode sorts by key; values of one key keep their order.
        pairs.sort(key=lambda kv: kv[0])
        fields: dict[str, list[str]] = {}
        for key, value in pairs:
            fields.setdefault(key, []).append(value)
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "Accept": "application/json",
            "Authorization": f"Token {token}",
        }
        return SlashForm(urlencode(pairs), headers, trigger_id, response_url, fields)

    def action_request(
        self,
        user_id: str,
        action: Mapping[str, Any],
        *,
        channel_id: str,
        post_id: str = "",
        selected_option: str | None = None,
    ) -> tuple[str, dict[str, Any]]:
        """(integration URL, JSON body) of a click on `action` (a props.attachments[].actions[]
        entry) as Mattermost posts it (server's DoPostActionWithCookie): the action's context,
        plus `selected_option` for a menu, and a fresh trigger id."""
        integration = action.get("integration") or {}
        context = json.loads(json.dumps(integration.get("context") or {}))  # Go's map round trip
        kind = action.get("type") or "button"
        data_source = ""
        if kind == "select" and selected_option:
            context["selected_option"] = selected_option
            data_source = action.get("data_source") or ""
        channel = self.channels.get(channel_id, {})
        team = self.teams.get(channel.get("team_id", ""), {})
        body = {
            "user_id": user_id,
            "user_name": self.users[user_id]["username"],
            "channel_id": channel_id,
            "channel_name": channel.get("name", ""),
            "team_id": channel.get("team_id", ""),
            "team_domain": team.get("name", ""),
            "post_id": post_id,
            "trigger_id": self.issue_trigger_id(user_id),
            "type": kind,
            "data_source": data_source,
            "context": context,
        }
        _only(ACTION_REQUEST_FIELDS, body, "a click")
        return str(integration.get("url", "")), body

    @staticmethod
    def find_action(props: Mapping[str, Any], name: str) -> dict[str, Any]:
        """The action called `name` among props.attachments[].actions[] (of a post or a reply)."""
        for attachment in props.get("attachments") or ():
            for action in attachment.get("actions") or ():
                if action.get("name") == name:
                    return dict(action)
        raise KeyError(f"no action named {name!r}")

    def dialog_submission(
        self,
        opened: Mapping[str, Any],
        submission: Mapping[str, Any],
        *,
        channel_id: str = "",
        team_id: str = "",
        cancelled: bool = False,
    ) -> tuple[str, dict[str, Any]]:
        """(URL, JSON body) of the submission of a dialog recorded in `dialogs`, as Mattermost
        posts it (server's SubmitInteractiveDialog); a cancellation carries no submission."""
        dialog = opened["dialog"]
        body = {
            "type": "dialog_submission",
            "callback_id": dialog.get("callback_id", ""),
            "state": dialog.get("state", ""),
            "user_id": opened["user_id"],
            "channel_id": channel_id,
            "team_id": team_id,
            "submission": None if cancelled else dict(submission),
            "cancelled": cancelled,
        }
        _only(DIALOG_SUBMISSION_FIELDS, body, "a dialog submission")
        return str(opened["url"]), body

    async def wait_for_command_responses(self, n: int, timeout: float = 5.0) -> list[dict[str, Any]]:  # noqa: ASYNC109
        """Wait until at least `n` bodies arrived on response URLs; fails the test on timeout."""
        deadline = time.monotonic() + timeout
        while len(self.command_responses) < n:
            if time.monotonic() >= deadline:
                raise AssertionError(
                    f"expected {n} response_url posts within {timeout} s, got {len(self.command_responses)}"
                )
            await asyncio.sleep(0.01)
        return list(self.command_responses)

    async def _open_dialog(self, request: web.Request) -> web.Response:
        body = await _read_json(request, "dialog")
        if not isinstance(body, dict):
            raise _invalid_body_param("dialog")
        if not body.get("url"):
            raise _invalid_param("url")
        trigger_id = body.get("trigger_id")
        if not trigger_id:
            raise _invalid_param("trigger_id")
        issued = self._trigger_ids.get(trigger_id)
        if issued is None:
            raise _MattermostError(
                400,
                "interactive_message.decode_trigger_id.verify_signature_failed",
                "Failed to verify signature of trigger ID for interactive dialog.",
            )
        if issued[1] <= time.monotonic():
            raise _MattermostError(
                400,
                "interactive_message.decode_trigger_id.expired",
                "Trigger ID for interactive dialog is expired.",
            )
        dialog = body.get("dialog")
        problems = _dialog_problems(dialog)
        if problems:
            raise _MattermostError(
                400,
                "api.context.invalid_body_param.app_error",
                "Invalid dialog.",
                detailed="; ".join(problems),
            )
        self.dialogs.append(
            {"user_id": issued[0], "trigger_id": trigger_id, "url": body["url"], "dialog": dialog}
        )
        return _json_response({"status": "OK"})

    async def _command_webhook(self, request: web.Request) -> web.Response:
        hook_id = request.match_info["hook_id"]
        hook = self._command_hooks.get(hook_id)
        if hook is None or hook.expires <= time.monotonic():
            raise _MattermostError(
                400, "app.command_webhook.try_use.invalid.app_error", "Unable to find the webhook."
            )
        if hook.uses >= COMMAND_WEBHOOK_MAX_USES:
            raise _MattermostError(
                400,
                "app.command_webhook.try_use.app_error",
                f"Unable to use the webhook {hook_id}: it was used {COMMAND_WEBHOOK_MAX_USES} times already.",
            )
        hook.uses += 1
        content_type = request.headers.get("Content-Type", "")
        raw = await request.read()
        # As the server's CommandResponseFromHTTPBody: JSON only for application/json.
        if content_type.split(";")[0].strip() == "application/json":
            try:
                response = json.loads(raw)
            except ValueError:
                raise _invalid_body_param("response") from None
            if not isinstance(response, dict):
                raise _invalid_body_param("response")
        else:
            response = {"text": raw.decode("utf-8", "replace")}
        self.command_responses.append(
            {"hook_id": hook_id, "content_type": content_type, "response": response}
        )
        self._show_command_response(hook, response)
        return web.Response(text="ok", headers={"Content-Type": "text/plain"})

    def _show_command_response(self, hook: _CommandHook, response: dict[str, Any]) -> None:
        channel = self.channels.get(hook.channel_id)
        user = self.users.get(hook.user_id)
        if channel is None or user is None:
            return
        props: dict[str, Any] = dict(response.get("props") or {})
        if response.get("attachments"):
            props["attachments"] = response["attachments"]
        message = str(response.get("text") or "")
        if response.get("response_type") == "in_channel":
            self._save_post(user, channel, {"message": message, "props": props, "root_id": hook.root_id})
            return
        now = _now_ms()
        post = {
            "id": new_id(),
            "create_at": now,
            "update_at": now,
            "edit_at": 0,
            "delete_at": 0,
            "user_id": self.bot_user_id,
            "channel_id": channel["id"],
            "root_id": hook.root_id,
            "message": message,
            "type": "system_ephemeral",
            "props": props,
        }
        self.ephemeral_posts.append({"user_id": user["id"], "post": post})


def _dialog_problems(dialog: Any) -> list[str]:
    """What the server's Dialog.IsValid would report (lengths are Go byte lengths)."""
    if not isinstance(dialog, dict):
        return ["dialog is missing"]
    problems: list[str] = []
    title = str(dialog.get("title") or "")
    if not title or len(title.encode()) > 24:
        problems.append(f"invalid dialog title {title!r}")
    names: set[str] = set()
    for element in dialog.get("elements") or []:
        if not isinstance(element, dict):
            problems.append("an element is not an object")
            continue
        name = str(element.get("name") or "")
        if name in names:
            problems.append(f"duplicate dialog element {name!r}")
        names.add(name)
        display = str(element.get("display_name") or "")
        if not display or len(display.encode()) > 24:
            problems.append(f"{name}: invalid display_name {display!r}")
        if not name or len(name.encode()) > 300:
            problems.append(f"invalid element name {name!r}")
        if len(str(element.get("help_text") or "").encode()) > 150:
            problems.append(f"{name}: help_text over 150")
        kind = element.get("type")
        if kind not in _DIALOG_ELEMENT_TYPES:
            problems.append(f"{name}: invalid element type {kind!r}")
        if kind in ("text", "textarea") and element.get("subtype", "") not in _TEXT_SUBTYPES:
            problems.append(f"{name}: invalid subtype {element.get('subtype')!r}")
        if int(element.get("min_length") or 0) > int(element.get("max_length") or 0) and element.get(
            "max_length"
        ):
            problems.append(f"{name}: min_length over max_length")
        default = str(element.get("default") or "")
        if kind in ("select", "radio") and not element.get("data_source") and default:
            values = {str(o.get("value")) for o in element.get("options") or [] if isinstance(o, dict)}
            wanted = default.replace(" ", "").split(",") if element.get("multiselect") else [default]
            if any(v and v not in values for v in wanted):
                problems.append(f"{name}: default {default!r} is not an option")
        if kind == "bool" and default not in ("", "true", "false"):
            problems.append(f"{name}: invalid default of bool")
    return problems
