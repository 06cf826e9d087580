"""What Mattermost sends the bot for slash commands, button clicks and dialogs, and what the bot
answers, as in the Mattermost server's model package (CommandResponse,
PostActionIntegrationRequest/Response, OpenDialogRequest, SubmitDialogRequest/Response).

Incoming models ignore fields they do not know (newer servers add some); outgoing ones are
dumped with Mattermost's JSON names.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import parse_qsl, urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from bot.security.signing import ContextSigner

ResponseType = Literal["ephemeral", "in_channel"]
ButtonStyle = Literal["default", "primary", "success", "good", "warning", "danger"]
SELECTED_OPTION = "selected_option"

# Mattermost measures these limits with Go's len(), in bytes of UTF-8.
DIALOG_TITLE_MAX = 24
DIALOG_DISPLAY_NAME_MAX = 24
DIALOG_NAME_MAX = 300
DIALOG_HELP_TEXT_MAX = 150
DIALOG_TEXT_MAX = 150
DIALOG_TEXTAREA_MAX = 3000
DIALOG_SELECT_MAX = 3000


def utc_now() -> datetime:
    return datetime.now(UTC)


def fit_bytes(text: str, limit: int) -> str:
    """`text` cut to at most `limit` UTF-8 bytes, ending with "…" when cut."""
    if len(text.encode()) <= limit:
        return text
    budget = limit - len("…".encode())
    out = text.encode()[:budget].decode("utf-8", "ignore").rstrip()
    return out + "…"


class _Incoming(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class _Outgoing(BaseModel):
    model_config = ConfigDict(extra="forbid")


# -- slash commands -------------------------------------------------------------------------------


def _mention_list(values: Sequence[str]) -> tuple[str, ...]:
    """Mattermost repeats the form field once per mention; a single JSON array is read too."""
    if len(values) == 1 and values[0].lstrip().startswith("["):
        try:
            parsed = json.loads(values[0])
        except ValueError:
            return tuple(values)
        if isinstance(parsed, list):
            return tuple(str(v) for v in parsed)
    return tuple(v for v in values if v)


def _origin(url: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of an http(s) URL, the port filled in; None when there is none."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:  # a port that is not a number, or out of range
        return None
    scheme, host = parts.scheme.lower(), (parts.hostname or "").rstrip(".")
    if scheme not in ("http", "https") or not host:
        return None
    return scheme, host, port or (443 if scheme == "https" else 80)


def response_url_allowed(url: str, mattermost_url: str | None, allowed_hosts: Iterable[str] = ()) -> bool:
    """Whether the bot may post a command's answer to `url`: it must be on Mattermost's own
    origin (same scheme, host and port as `mattermost_url`) or on one of `allowed_hosts`
    ("host" for any port, or "host:port"). Anyone who can reach the bot's command endpoint
    chooses response_url, so any other host would make the bot post wherever they like."""
    origin = _origin(url)
    if origin is None:
        return False
    if mattermost_url and _origin(mattermost_url) == origin:
        return True
    _, host, port = origin
    for entry in allowed_hosts:
        entry = entry.strip().lower().rstrip(".")
        if entry and entry in (host, f"{host}:{port}", f"[{host}]", f"[{host}]:{port}"):
            return True
    return False


# The form Mattermost posts for a custom slash command is built by the server's
# App.tryExecuteCustomCommand and sent by App.DoCommandRequest (mattermost/mattermost,
# server/channels/app/command.go); tests/fakes/mattermost/interactions.py lists its fields. It has
# no root_id: the server knows the thread a command was typed in (it puts an in_channel answer
# there) but does not tell the integration, so commands about a message take its link instead.


class SlashCommandRequest(_Incoming):
    """The form Mattermost posts for a custom slash command. It names no thread."""

    token: str = Field("", repr=False)  # a secret: kept out of reprs, which end up in logs
    team_id: str = Field(min_length=1)
    team_domain: str = ""
    channel_id: str = Field(min_length=1)
    channel_name: str = ""
    user_id: str = Field(min_length=1)
    user_name: str = ""
    command: str = Field(min_length=1)
    text: str = ""
    trigger_id: str = ""
    response_url: str = ""
    user_mentions: tuple[str, ...] = ()
    user_mentions_ids: tuple[str, ...] = ()
    channel_mentions: tuple[str, ...] = ()
    channel_mentions_ids: tuple[str, ...] = ()

    @field_validator("response_url")
    @classmethod
    def _http_url(cls, v: str) -> str:
        # The bot posts delayed replies there: anything but http(s) is refused.
        if v and urlsplit(v).scheme not in ("http", "https"):
            raise ValueError("must be an http(s) URL")
        return v

    @classmethod
    def from_pairs(cls, pairs: Iterable[tuple[str, str]]) -> SlashCommandRequest:
        """Build from form fields; repeated fields (the mention lists) keep every value.
        Raises pydantic.ValidationError when a required field is missing."""
        fields: dict[str, list[str]] = {}
        for key, value in pairs:
            fields.setdefault(key, []).append(value)
        lists = {"user_mentions", "user_mentions_ids", "channel_mentions", "channel_mentions_ids"}
        data: dict[str, Any] = {}
        for key, values in fields.items():
            data[key] = _mention_list(values) if key in lists else values[0]
        return cls.model_validate(data)

    @classmethod
    def from_form_body(cls, body: bytes | str) -> SlashCommandRequest:
        """Parse an application/x-www-form-urlencoded body. Raises ValueError (pydantic's
        ValidationError is one) on junk."""
        text = body.decode("utf-8") if isinstance(body, bytes) else body
        return cls.from_pairs(parse_qsl(text, keep_blank_values=True, strict_parsing=False))

    @property
    def mentioned_users(self) -> dict[str, str]:
        """@username -> user id, for the users Mattermost recognised in the text."""
        return dict(zip(self.user_mentions, self.user_mentions_ids, strict=False))

    @property
    def mentioned_channels(self) -> dict[str, str]:
        """~channel name -> channel id, for the public channels recognised in the text."""
        return dict(zip(self.channel_mentions, self.channel_mentions_ids, strict=False))


# -- message attachments and their actions --------------------------------------------------------


class ActionOption(_Outgoing):
    text: str = Field(min_length=1)
    value: str = Field(min_length=1)


class Integration(_Outgoing):
    url: str = Field(min_length=1)
    context: dict[str, Any] = Field(default_factory=dict)


class PostAction(_Outgoing):
    """A button or a menu in a message attachment (server's model.PostAction)."""

    id: str | None = None
    type: Literal["button", "select"] = "button"
    name: str = Field(min_length=1)
    disabled: bool | None = None
    style: str | None = None
    data_source: Literal["users", "channels"] | None = None
    options: list[ActionOption] | None = None
    default_option: str | None = None
    integration: Integration

    @model_validator(mode="after")
    def _consistent(self) -> PostAction:
        if self.type == "button" and (self.options or self.data_source):
            raise ValueError("a button has neither options nor a data source")
        if self.type == "select" and bool(self.options) == bool(self.data_source):
            raise ValueError("a menu has either options or a data source")
        if self.id is not None and not (self.id.isascii() and self.id.isalnum()):
            # Mattermost puts the id in a URL path; other characters break the click.
            raise ValueError("an action id is letters and digits only")
        return self


class AttachmentField(_Outgoing):
    title: str = ""
    value: str = ""
    short: bool = False


class Attachment(_Outgoing):
    """A message attachment (server's model.SlackAttachment), for props.attachments."""

    fallback: str | None = None
    color: str | None = None
    pretext: str | None = None
    author_name: str | None = None
    author_link: str | None = None
    author_icon: str | None = None
    title: str | None = None
    title_link: str | None = None
    text: str | None = None
    fields: list[AttachmentField] | None = None
    image_url: str | None = None
    thumb_url: str | None = None
    footer: str | None = None
    footer_icon: str | None = None
    actions: list[PostAction] | None = None

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)


def attachments_props(attachments: Sequence[Attachment], **other: Any) -> dict[str, Any]:
    """Post props carrying `attachments` (plus any other props)."""
    return {**other, "attachments": [a.to_dict() for a in attachments]}


class ActionFactory:
    """Builds buttons and menus whose integration context is signed, pointing at the bot's
    action endpoint (e.g. https://bot.example.com/mattermost/actions)."""

    def __init__(
        self,
        signer: ContextSigner,
        url: str,
        *,
        ttl_seconds: float = 7 * 24 * 3600,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._signer = signer
        self.url = url
        self._ttl = ttl_seconds
        self._clock = clock

    def signed(
        self,
        context: Mapping[str, Any],
        *,
        user_id: str | None = None,
        once: bool = False,
        ttl_seconds: float | None = None,
    ) -> dict[str, Any]:
        return self._signer.sign(
            context,
            ttl_seconds=ttl_seconds or self._ttl,
            now=self._clock(),
            user_id=user_id,
            once=once,
        )

    def button(
        self,
        name: str,
        context: Mapping[str, Any],
        *,
        style: ButtonStyle | str = "default",
        user_id: str | None = None,
        once: bool = False,
        ttl_seconds: float | None = None,
        id: str | None = None,
    ) -> PostAction:
        """A button; `once` makes a second click refused, `user_id` lets only that user click."""
        return PostAction(
            id=id,
            type="button",
            name=name,
            style=style,
            integration=Integration(
                url=self.url,
                context=self.signed(context, user_id=user_id, once=once, ttl_seconds=ttl_seconds),
            ),
        )

    def menu(
        self,
        name: str,
        context: Mapping[str, Any],
        options: Sequence[ActionOption | tuple[str, str]] = (),
        *,
        data_source: Literal["users", "channels"] | None = None,
        default_option: str | None = None,
        user_id: str | None = None,
        once: bool = False,
        ttl_seconds: float | None = None,
        id: str | None = None,
    ) -> PostAction:
        """A menu of `options` ((text, value) pairs) or of Mattermost users/channels; the
        chosen value arrives as the context's `selected_option`."""
        opts = [o if isinstance(o, ActionOption) else ActionOption(text=o[0], value=o[1]) for o in options]
        return PostAction(
            id=id,
            type="select",
            name=name,
            options=opts or None,
            data_source=data_source,
            default_option=default_option,
            integration=Integration(
                url=self.url,
                context=self.signed(context, user_id=user_id, once=once, ttl_seconds=ttl_seconds),
            ),
        )


# -- command response -----------------------------------------------------------------------------


class CommandResponse(_Outgoing):
    """The answer to a slash command, directly or through its response_url."""

    response_type: ResponseType = "ephemeral"
    text: str = ""
    username: str | None = None
    icon_url: str | None = None
    channel_id: str | None = None
    type: str | None = None
    props: dict[str, Any] | None = None
    goto_location: str | None = None
    skip_slack_parsing: bool = False
    attachments: list[Attachment] | None = None
    extra_responses: list[CommandResponse] | None = None

    @classmethod
    def ephemeral(cls, text: str, **kw: Any) -> CommandResponse:
        return cls(response_type="ephemeral", text=text, **kw)

    @classmethod
    def in_channel(cls, text: str, **kw: Any) -> CommandResponse:
        return cls(response_type="in_channel", text=text, **kw)

    def is_empty(self) -> bool:
        return not (self.text or self.attachments or self.goto_location or self.extra_responses or self.props)

    def to_dict(self) -> dict[str, Any]:
        data = self.model_dump(mode="json", exclude_none=True)
        if not self.skip_slack_parsing:
            data.pop("skip_slack_parsing")
        # response_type is always written: it is the one field whose absence changes the meaning.
        data["response_type"] = self.response_type
        if self.extra_responses:
            data["extra_responses"] = [r.to_dict() for r in self.extra_responses]
        return data

    def to_json_bytes(self) -> bytes:
        return json.dumps(self.to_dict(), ensure_ascii=False).encode()


# -- button clicks --------------------------------------------------------------------------------


# The JSON body of a click: the server's model.PostActionIntegrationRequest
# (server/public/model/integration_action.go); the fake lists its fields.


class ActionRequest(_Incoming):
    """A click on a button or a choice in a menu (server's PostActionIntegrationRequest)."""

    user_id: str = Field(min_length=1)
    user_name: str = ""
    channel_id: str = ""
    channel_name: str = ""
    team_id: str = ""
    team_domain: str = ""
    post_id: str = ""
    trigger_id: str = ""
    type: str = ""
    data_source: str = ""
    context: dict[str, Any] = Field(default_factory=dict)

    @property
    def selected_option(self) -> str | None:
        """The value chosen in a menu; Mattermost adds it to the context."""
        value = self.context.get(SELECTED_OPTION)
        return str(value) if value is not None else None


class PostUpdate(_Outgoing):
    """Replaces the clicked post's message (always: a missing message empties it) and, when
    given, its props; props left out keep the post's current ones (buttons included)."""

    message: str
    props: dict[str, Any] | None = None


class ActionResponse(_Outgoing):
    update: PostUpdate | None = None
    ephemeral_text: str = ""
    goto_location: str = ""
    skip_slack_parsing: bool = False

    @classmethod
    def ephemeral(cls, text: str) -> ActionResponse:
        return cls(ephemeral_text=text)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {}
        if self.update is not None:
            data["update"] = self.update.model_dump(mode="json", exclude_none=True)
        if self.ephemeral_text:
            data["ephemeral_text"] = self.ephemeral_text
        if self.goto_location:
            data["goto_location"] = self.goto_location
        if self.skip_slack_parsing:
            data["skip_slack_parsing"] = True
        return data

    def to_json_bytes(self) -> bytes:
        return json.dumps(self.to_dict(), ensure_ascii=False).encode()


# -- interactive dialogs --------------------------------------------------------------------------


class DialogOption(_Outgoing):
    text: str
    value: str


ElementType = Literal["text", "textarea", "select", "bool", "radio"]
TextSubtype = Literal["", "text", "email", "number", "tel", "url", "password"]


class DialogElement(_Outgoing):
    """One field of an interactive dialog. Display texts longer than Mattermost allows are
    shortened; inconsistent definitions (a default not among the options) are refused."""

    display_name: str = Field(min_length=1)
    name: str = Field(min_length=1, max_length=DIALOG_NAME_MAX)
    type: ElementType
    subtype: TextSubtype = ""
    default: str = ""
    placeholder: str = ""
    help_text: str = ""
    optional: bool = False
    min_length: int = Field(0, ge=0)
    max_length: int = Field(0, ge=0)
    data_source: Literal["", "users", "channels", "dynamic"] = ""
    data_source_url: str = ""
    options: list[DialogOption] | None = None
    multiselect: bool = False

    @model_validator(mode="after")
    def _fit(self) -> DialogElement:
        self.display_name = fit_bytes(self.display_name, DIALOG_DISPLAY_NAME_MAX)
        self.help_text = fit_bytes(self.help_text, DIALOG_HELP_TEXT_MAX)
        limit = {"text": DIALOG_TEXT_MAX, "textarea": DIALOG_TEXTAREA_MAX, "select": DIALOG_SELECT_MAX}.get(
            self.type
        )
        if limit is not None:
            self.default = fit_bytes(self.default, limit)
            self.placeholder = fit_bytes(self.placeholder, limit)
        if self.max_length and self.min_length > self.max_length:
            raise ValueError(f"{self.name}: min_length is over max_length")
        if self.type in ("select", "radio") and not self.data_source:
            values = {o.value for o in self.options or ()}
            defaults = [d.strip() for d in self.default.split(",")] if self.multiselect else [self.default]
            if any(d and d not in values for d in defaults):
                raise ValueError(f"{self.name}: default {self.default!r} is not one of the options")
        if self.data_source == "dynamic" and not self.data_source_url:
            raise ValueError(f"{self.name}: a dynamic select needs data_source_url")
        if self.type == "bool" and self.default not in ("", "true", "false"):
            raise ValueError(f"{self.name}: a bool default is 'true' or 'false'")
        if self.multiselect and self.type != "select":
            raise ValueError(f"{self.name}: only a select can be multiselect")
        return self

    def to_dict(self) -> dict[str, Any]:
        data = self.model_dump(mode="json")
        if not self.data_source_url:
            data.pop("data_source_url")
        if data["options"] is None:
            data.pop("options")
        return data


class Dialog(_Outgoing):
    callback_id: str = ""
    title: str = Field(min_length=1)
    introduction_text: str = ""
    icon_url: str = ""
    elements: list[DialogElement] = Field(default_factory=list)
    submit_label: str = ""
    notify_on_cancel: bool = False
    state: str = ""

    @model_validator(mode="after")
    def _check(self) -> Dialog:
        self.title = fit_bytes(self.title, DIALOG_TITLE_MAX)
        names = [e.name for e in self.elements]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"duplicate dialog elements: {duplicates}")
        return self

    def to_dict(self) -> dict[str, Any]:
        data = self.model_dump(mode="json", exclude={"elements"})
        data["elements"] = [e.to_dict() for e in self.elements]
        return data


# The JSON body of a dialog submission: the server's model.SubmitDialogRequest
# (server/public/model/integration_action.go); the fake lists its fields.


class DialogSubmission(_Incoming):
    """A submitted (or, with notify_on_cancel, cancelled) dialog (server's SubmitDialogRequest).

    `context` is filled in by the bot once `state` is verified; Mattermost never sends it.
    """

    type: str = "dialog_submission"
    callback_id: str = ""
    state: str = ""
    user_id: str = Field(min_length=1)
    channel_id: str = ""
    team_id: str = ""
    submission: dict[str, Any] = Field(default_factory=dict)
    cancelled: bool = False
    context: dict[str, Any] = Field(default_factory=dict)

    @field_validator("submission", mode="before")
    @classmethod
    def _none_is_empty(cls, v: Any) -> Any:
        # A cancelled dialog comes with "submission": null.
        return {} if v is None else v


class DialogResponse(_Outgoing):
    """Errors per field name (shown under the fields) or one general error; an empty response
    closes the dialog."""

    errors: dict[str, str] | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)

    def to_json_bytes(self) -> bytes:
        return json.dumps(self.to_dict(), ensure_ascii=False).encode()


class OpenDialogRequest(_Outgoing):
    """Body of POST /api/v4/actions/dialogs/open."""

    trigger_id: str = Field(min_length=1)
    url: str = Field(min_length=1)
    dialog: Dialog

    def to_dict(self) -> dict[str, Any]:
        return {"trigger_id": self.trigger_id, "url": self.url, "dialog": self.dialog.to_dict()}
