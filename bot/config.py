"""The bot's settings: one typed model, read from a YAML file and overridden by the environment.

Validated once at start; a bad value exits with a message naming the key and the problem.
Secrets are best given through the environment (see config.example.yaml).
"""

from __future__ import annotations

import base64
import binascii
import difflib
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from bot.gate_rules.settings import ChangeGateSettings
from bot.names import (
    KnownInstance,
    Role,
    bad_project_keys,
    bad_subscription_name,
    canonical_events,
    canonical_field_key,
    canonical_inclusion,
    canonical_subscription_name,
    field_filter_values_problem,
    find_known_instance,
    unknown_events,
    unknown_field_keys,
    unknown_inclusion,
    unknown_instance,
)


class ConfigError(Exception):
    """The configuration cannot be used; the message names the key and the problem."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerSettings(_Section):
    host: str = "0.0.0.0"
    port: int = Field(8080, ge=1, le=65535)
    # The URL under which Jira and Mattermost reach the bot (used in printed webhook URLs).
    public_url: str = "http://localhost:8080"
    max_body_bytes: int = Field(1_048_576, ge=1024)
    trust_forwarded_headers: bool = False
    # A client that has not sent its whole request head (or body) by then is disconnected, so
    # slow senders cannot hold connections open.
    header_read_timeout_seconds: float = Field(10.0, gt=0, le=300)
    body_read_timeout_seconds: float = Field(30.0, gt=0, le=600)
    # From SIGTERM to exit: half of it for the posts in flight to finish (claims still held
    # after that are released to the other replicas), the rest for requests and closing.
    shutdown_grace_seconds: float = Field(10.0, ge=1, le=600)
    # Processes serving one port (SO_REUSEPORT), each a replica of its own; above 1 needs
    # PostgreSQL (bot.supervisor).
    workers: int = Field(1, ge=1, le=64)

    @field_validator("public_url")
    @classmethod
    def _strip_slash(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return v.rstrip("/")


class DatabaseSettings(_Section):
    # sqlite:///path/to/file.db or postgresql://user@host:5432/db; empty: SQLite in data_dir.
    url: str = ""
    # Processed webhooks (failed ones too) and delivered posts are deleted this many days after
    # they were done, with expired thread roots, stored values and leases; dead posts are kept.
    # One replica at a time purges (bot.pipeline.housekeeping).
    keep_days: float = Field(7.0, gt=0, le=3650)
    purge_interval_minutes: float = Field(60.0, gt=0, le=1440)

    @field_validator("url")
    @classmethod
    def _known_scheme(cls, v: str) -> str:
        if v and not v.startswith(("sqlite://", "postgresql://", "postgres://", "postgresql+asyncpg://")):
            raise ValueError("must be sqlite:///FILE or postgresql://USER@HOST:PORT/DB")
        return v


class MattermostSettings(_Section):
    url: str | None = None  # absent: posts are printed on the console
    bot_token: SecretStr | None = None
    request_timeout_seconds: float = Field(10.0, gt=0, le=120)
    # Tokens of the /jira custom slash command (Mattermost shows one per command); a request
    # carrying none of them is refused.
    command_tokens: tuple[SecretStr, ...] = ()
    # Hosts (besides mattermost.url's own) a slash command's response_url may point at.
    response_url_allowed_hosts: tuple[str, ...] = ()

    @field_validator("url")
    @classmethod
    def _http_url(cls, v: str | None) -> str | None:
        if v in (None, ""):
            return None
        if not v.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return v.rstrip("/")


class ServiceAccount(_Section):
    email: str | None = None
    api_token: SecretStr | None = None  # Cloud: API token with email
    token: SecretStr | None = None  # Server/Data Center: personal access token


class CloudOAuthSettings(_Section):
    """An OAuth 2.0 (3LO) app from developer.atlassian.com, for users to connect Jira Cloud."""

    client_id: str
    client_secret: SecretStr


class ServerOAuthSettings(_Section):
    """An OAuth 1.0a application link in Jira Server/Data Center (RSA-SHA1)."""

    consumer_key: str
    # PEM private key whose public key is entered in the application link.
    private_key: SecretStr


class JiraInstanceSettings(_Section):
    url: str
    type: Literal["cloud", "server"] = "cloud"
    alias: str | None = None
    service_account: ServiceAccount | None = None
    oauth: CloudOAuthSettings | None = None  # Cloud: lets users connect with OAuth 2.0
    oauth1: ServerOAuthSettings | None = None  # Server/DC: lets users connect through an application link

    @field_validator("url")
    @classmethod
    def _http_url(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return v.rstrip("/")


class JiraSettings(_Section):
    webhook_secret: SecretStr | None = None
    # Secrets still accepted during a rotation.
    previous_webhook_secrets: tuple[SecretStr, ...] = ()
    # When set, X-Hub-Signature: sha256=<hmac of the body> must be present and valid.
    webhook_signing_secret: SecretStr | None = None
    instances: tuple[JiraInstanceSettings, ...] = ()
    # Atlassian's authorization server and API gateway for Cloud OAuth (changed only in tests).
    atlassian_auth_url: str = "https://auth.atlassian.com"
    atlassian_api_url: str = "https://api.atlassian.com"
    # Each Jira request a user triggers waits at most this long.
    request_timeout_seconds: float = Field(10.0, gt=0, le=120)
    # Jira calls run in a bounded thread pool (the jira library is synchronous).
    max_concurrent_requests: int = Field(8, ge=1, le=64)
    # An issue read to complete a thin webhook (Cloud's comment events) serves the other
    # events of that issue for this long: one read per issue per burst.
    issue_cache_seconds: float = Field(60.0, ge=0, le=3600)
    # Jira's answer to a subscription's JQL checked by Jira (`filters.jql_check: jira`) serves
    # the issue's later events for this long, until the issue's `updated` changes.
    jql_check_cache_seconds: float = Field(60.0, ge=0, le=3600)
    # Custom field names and the priority order are read from Jira (service account) at most
    # this often per instance, for JQL that names them.
    jql_names_refresh_seconds: float = Field(3600.0, ge=60, le=86400)

    @model_validator(mode="after")
    def _unique_instances(self) -> JiraSettings:
        seen: set[str] = set()
        for inst in self.instances:
            for name in (inst.url, inst.alias):
                # Instances are named case-insensitively (find_instance).
                if name and name.casefold() in seen:
                    raise ValueError(f"instance {name!r} is declared twice")
                if name:
                    seen.add(name.casefold())
        return self

    @property
    def known_instances(self) -> tuple[KnownInstance, ...]:
        return tuple(KnownInstance(i.url, i.alias or "") for i in self.instances)

    def find_instance(self, name_or_url: str) -> JiraInstanceSettings | None:
        """By URL or alias, case aside: as chat commands name instances."""
        found = find_known_instance(name_or_url, self.known_instances)
        return self.instances[self.known_instances.index(found)] if found is not None else None


class ChannelPostSettings(_Section):
    hide_description: bool = False
    hide_comments: bool = False
    show_subscription_name: bool = False
    # Comment events are posted as replies to the issue's first post in the channel for this
    # many days; 0 turns threading off.
    thread_comments_days: int = Field(30, ge=0, le=3650)


class DeliverySettings(_Section):
    workers: int = Field(4, ge=1, le=64)
    max_attempts: int = Field(12, ge=1, le=100)
    backoff_base_seconds: float = Field(1.0, gt=0)
    backoff_max_seconds: float = Field(300.0, gt=0)
    # Above this many unprocessed webhooks and undelivered posts, webhooks get 503 + Retry-After.
    max_backlog: int = Field(20_000, ge=1)
    lease_seconds: float = Field(25.0, ge=5)
    poll_interval_seconds: float = Field(1.0, gt=0, le=60)
    # Time budget for processing one stored webhook; a timeout counts as a failed attempt.
    processing_timeout_seconds: float = Field(20.0, gt=0, le=600)


class SubscriptionFieldFilterSettings(_Section):
    key: str
    inclusion: Literal["include_any", "include_all", "exclude_any", "empty", "include_or_empty"] = (
        "include_any"
    )
    values: tuple[str, ...] = ()

    # The same checks and sentences as the dialog and `/jira subscribe` (bot.names).
    @field_validator("key")
    @classmethod
    def _known_field(cls, v: str) -> str:
        key = canonical_field_key(v)
        if key is None:
            raise ValueError(unknown_field_keys([v]))
        return key

    @field_validator("inclusion", mode="before")
    @classmethod
    def _known_inclusion(cls, v: Any) -> Any:
        if not isinstance(v, str):
            return v
        inclusion = canonical_inclusion(v)
        if inclusion is None:
            raise ValueError(unknown_inclusion(v))
        return inclusion

    @field_validator("values")
    @classmethod
    def _values(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        # As the one-line form reads them.
        return tuple(dict.fromkeys(value.strip() for value in v if value.strip()))

    @model_validator(mode="after")
    def _values_suit_inclusion(self) -> SubscriptionFieldFilterSettings:
        problem = field_filter_values_problem(self.key, self.inclusion, self.values)
        if problem:
            raise ValueError(problem)
        return self


class SubscriptionFilterSettings(_Section):
    events: tuple[str, ...] = ()
    projects: tuple[str, ...] = ()
    issue_types: tuple[str, ...] = ()
    fields: tuple[SubscriptionFieldFilterSettings, ...] = ()
    jql: str | None = None
    # "jira": JQL clauses the bot cannot answer are checked by Jira (service account needed).
    jql_check: Literal["local", "jira"] = "local"

    # The same check and sentence as the dialog and `/jira subscribe add` (bot.names).
    @field_validator("events")
    @classmethod
    def _known_events(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        events = canonical_events(v)
        problem = unknown_events(events)
        if problem:
            raise ValueError(problem)
        return events

    @field_validator("projects")
    @classmethod
    def _project_keys(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        problem = bad_project_keys(v)
        if problem:
            raise ValueError(problem)
        return tuple(k.strip().upper() for k in v)


_CHANNEL_ID = re.compile(r"[a-z0-9]{26}")


class SubscriptionSettings(_Section):
    name: str = Field(min_length=1)
    channel: str = Field(min_length=1)  # team/channel names, or a channel id
    instance: str | None = None  # alias or URL; default: the only configured instance
    filters: SubscriptionFilterSettings = SubscriptionFilterSettings()

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        problem = bad_subscription_name(v)
        if problem:
            raise ValueError(problem)
        return canonical_subscription_name(v)

    @field_validator("channel")
    @classmethod
    def _channel_shape(cls, v: str) -> str:
        # Anything else is looked up at start, found nowhere, and the subscription skipped.
        team, slash, name = v.strip().partition("/")
        if (slash and team and name and "/" not in name) or _CHANNEL_ID.fullmatch(v.strip()):
            return v.strip()
        raise ValueError(
            f"`{v}` is neither TEAM/CHANNEL (the names in the channel's URL, such as "
            "`acme/town-square`) nor a channel id (26 letters and digits)"
        )


class CommandSettings(_Section):
    # Who may add, edit and remove a channel's subscriptions.
    subscription_role: Role = "system_admin"
    # When set, the user's Jira account must also belong to one of these Jira groups.
    subscription_jira_groups: tuple[str, ...] = ()
    # Appended to /jira help.
    extra_help: str = ""


class ChatSettings(_Section):
    # Listen to Mattermost's websocket: replies to notification DMs become comments, commands
    # work without /jira in a DM with the bot, issue keys get previews. Needs a Mattermost URL.
    listen: bool = True
    # Answer messages that mention an issue key or browse URL with a compact preview.
    previews: bool = True
    # The same issue is previewed at most once per channel within this many minutes.
    preview_interval_minutes: int = Field(60, ge=1, le=10080)


class NotificationSettingsConfig(_Section):
    """Personal direct messages: the switches a newly connected user starts with."""

    assignee: bool = True
    mention: bool = True
    reporter: bool = True
    watching: bool = True
    # How long a user's permission to see an issue is remembered before a DM is sent again.
    access_cache_seconds: int = Field(300, ge=0, le=86400)


class SecuritySettings(_Section):
    # Key that encrypts Jira tokens at rest and signs interactive contexts: 32 random bytes,
    # urlsafe-base64 encoded. Absent: one is generated into <data_dir>/encryption-key.
    encryption_key: SecretStr | None = None

    @field_validator("encryption_key")
    @classmethod
    def _key_shape(cls, v: SecretStr | None) -> SecretStr | None:
        text = v.get_secret_value().strip() if v is not None else ""
        if not text:
            return None
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        except (binascii.Error, ValueError):
            raise ValueError("must be urlsafe-base64 text") from None
        if len(raw) != 32:
            raise ValueError(f"must decode to 32 bytes, got {len(raw)}")
        return v

    # Jira instance URLs that resolve to loopback, link-local, private or multicast addresses
    # are refused unless this is set (on-premises Jira on a private network needs it).
    allow_private_instance_urls: bool = False


class LoggingSettings(_Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["text", "json"] = "text"


class Settings(_Section):
    data_dir: Path = Path("./data")
    server: ServerSettings = ServerSettings()
    database: DatabaseSettings = DatabaseSettings()
    mattermost: MattermostSettings = MattermostSettings()
    jira: JiraSettings = JiraSettings()
    channel_posts: ChannelPostSettings = ChannelPostSettings()
    delivery: DeliverySettings = DeliverySettings()
    subscriptions: tuple[SubscriptionSettings, ...] = ()
    commands: CommandSettings = CommandSettings()
    chat: ChatSettings = ChatSettings()
    notifications: NotificationSettingsConfig = NotificationSettingsConfig()
    change_gate: ChangeGateSettings | None = None
    security: SecuritySettings = SecuritySettings()
    logging: LoggingSettings = LoggingSettings()

    @model_validator(mode="after")
    def _gate_instances_exist(self) -> Settings:
        gate = self.change_gate
        if gate is None:
            return self
        for name in gate.referenced_instances():
            if name is None:
                if len(self.jira.instances) != 1:
                    raise ValueError(
                        "change_gate.instance: required unless jira.instances holds exactly one instance"
                    )
            elif (problem := unknown_instance(name, self.jira.known_instances)) is not None:
                raise ValueError(f"change_gate: {problem}")
        return self

    @property
    def database_url(self) -> str:
        return self.database.url or f"sqlite:///{self.data_dir / 'jira-chatops.db'}"


# Environment variable -> dotted settings key. Generic overrides also work:
# JIRA_CHATOPS__DELIVERY__WORKERS=8 sets delivery.workers.
ENV_KEYS: Mapping[str, str] = {
    "PORT": "server.port",
    "HOST": "server.host",
    "BOT_PUBLIC_URL": "server.public_url",
    "DATABASE_URL": "database.url",
    "DATA_DIR": "data_dir",
    "MATTERMOST_URL": "mattermost.url",
    "MATTERMOST_BOT_TOKEN": "mattermost.bot_token",
    "JIRA_WEBHOOK_SECRET": "jira.webhook_secret",
    "JIRA_WEBHOOK_PREVIOUS_SECRETS": "jira.previous_webhook_secrets",
    "JIRA_WEBHOOK_SIGNING_SECRET": "jira.webhook_signing_secret",
    "LOG_LEVEL": "logging.level",
    "MATTERMOST_COMMAND_TOKENS": "mattermost.command_tokens",
    "BOT_ENCRYPTION_KEY": "security.encryption_key",
}
ENV_PREFIX = "JIRA_CHATOPS__"
_LIST_KEYS = {"jira.previous_webhook_secrets", "mattermost.command_tokens"}


def empty_secrets(settings: Settings) -> tuple[list[str], list[str]]:
    """Secrets left empty, each named with its key and where to give it: (what `serve` cannot
    run without, what only disables a feature). Empty secrets are meant to come from the
    environment, so `check-config` reports both as warnings; `serve` refuses the first kind."""
    needed: list[str] = []
    optional: list[str] = []
    mm = settings.mattermost
    if mm.url and not (mm.bot_token and mm.bot_token.get_secret_value()):
        needed.append("mattermost.bot_token is empty: set MATTERMOST_BOT_TOKEN (mattermost.url is set)")
    for i, inst in enumerate(settings.jira.instances):
        key = f"jira.instances[{i}]"
        if inst.oauth is not None and not inst.oauth.client_secret.get_secret_value():
            optional.append(
                f"{key}.oauth.client_secret is empty: users cannot connect to {inst.url} with OAuth"
            )
        account = inst.service_account
        if (
            account is not None
            and account.email
            and not (account.api_token and account.api_token.get_secret_value())
        ):
            optional.append(f"{key}.service_account.api_token is empty: Jira will refuse the service account")
    return needed, optional


def _set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = data
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[parts[-1]] = value


def apply_env(data: dict[str, Any], environ: Mapping[str, str]) -> dict[str, Any]:
    for var, dotted in ENV_KEYS.items():
        if var in environ:
            value: Any = environ[var]
            if dotted in _LIST_KEYS:
                value = [v.strip() for v in value.split(",") if v.strip()]
            _set_dotted(data, dotted, value)
    for var, raw in environ.items():
        if var.startswith(ENV_PREFIX) and len(var) > len(ENV_PREFIX):
            dotted = ".".join(p.lower() for p in var[len(ENV_PREFIX) :].split("__"))
            _set_dotted(data, dotted, yaml.safe_load(raw) if raw else raw)
    return data


# Pydantic's error types, said in YAML's terms.
_YAML_TERMS = {
    "dict_type": "must be a mapping (`key: value` lines indented under it)",
    "model_type": "must be a mapping (`key: value` lines indented under it)",
    "model_attributes_type": "must be a mapping (`key: value` lines indented under it)",
    "tuple_type": "must be a list (`- item` lines, or `[a, b]`)",
    "list_type": "must be a list (`- item` lines, or `[a, b]`)",
    "int_parsing": "must be a whole number",
    "int_type": "must be a whole number",
    "int_from_float": "must be a whole number",
    "float_parsing": "must be a number",
    "float_type": "must be a number",
    "bool_parsing": "must be true or false",
    "bool_type": "must be true or false",
    "string_type": "must be text (quote it)",
    "missing": "is required",
}


def _model_at(loc: tuple[int | str, ...]) -> type[BaseModel] | None:
    """The settings model that holds the key at `loc` (list indexes skipped), if any."""
    model: type[BaseModel] = Settings
    for part in loc:
        if isinstance(part, int):
            continue
        info = model.model_fields.get(part)
        if info is None:
            return None
        found = None
        for t in (info.annotation, *getattr(info.annotation, "__args__", ())):
            inner = getattr(t, "__args__", ())
            for c in (t, *inner):
                if isinstance(c, type) and issubclass(c, BaseModel):
                    found = c
        if found is None:
            return None
        model = found
    return model


def _yaml_line(text: str, loc: tuple[int | str, ...]) -> int | None:
    """The line of the config file where the key at `loc` is written, when it is."""
    try:
        node = yaml.compose(text)
    except yaml.YAMLError:
        return None
    line = None
    for part in loc:
        if isinstance(node, yaml.MappingNode) and isinstance(part, str):
            match = [(k, v) for k, v in node.value if getattr(k, "value", None) == part]
            if not match:
                return line
            key, node = match[0]
            line = key.start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            return line
    return line


def env_sources(environ: Mapping[str, str]) -> dict[tuple[str, ...], str]:
    """The settings keys the environment overrides, each with its variable."""
    sources = {tuple(dotted.split(".")): var for var, dotted in ENV_KEYS.items() if var in environ}
    for var in environ:
        if var.startswith(ENV_PREFIX) and len(var) > len(ENV_PREFIX):
            sources[tuple(p.lower() for p in var[len(ENV_PREFIX) :].split("__"))] = var
    return sources


def _describe(
    err: ValidationError,
    text: str | None = None,
    path: Path | None = None,
    env: Mapping[tuple[str, ...], str] | None = None,
) -> str:
    """Each error as `file:line: key.path: what is wrong`, in YAML's terms, not pydantic's."""
    lines = []
    for e in err.errors():
        loc = tuple(e["loc"])
        msg = _YAML_TERMS.get(e["type"]) or e["msg"].removeprefix("Value error, ")
        if msg.startswith("Input should be "):
            msg = "must be " + msg.removeprefix("Input should be ")
        if e["type"] == "literal_error" and isinstance(e.get("input"), str):
            # A role, a level, an inclusion: the same did-you-mean as the chat forms give.
            choices = re.findall(r"'([^']*)'", str((e.get("ctx") or {}).get("expected", "")))
            by_lower = {c.lower(): c for c in choices}
            near = difflib.get_close_matches(e["input"].lower(), list(by_lower), n=1, cutoff=0.6)
            if near:
                msg += f" (did you mean `{by_lower[near[0]]}`?)"
        if e["type"] == "extra_forbidden":
            model = _model_at(loc[:-1])
            known = list(model.model_fields) if model is not None else []
            near = difflib.get_close_matches(str(loc[-1]), known, n=1, cutoff=0.6)
            msg = "unknown key" + (f" (did you mean `{near[0]}`?)" if near else "")
            if known and not near:
                msg += f"; known keys: {', '.join(known)}"
        lines.append(_located(loc, msg, text, path, env))
    return "invalid configuration:\n" + "\n".join(lines)


def _where(
    loc: tuple[int | str, ...],
    text: str | None,
    path: Path | None,
    env: Mapping[tuple[str, ...], str] | None = None,
) -> str:
    """`file:line: ` where the key at `loc` is written (when it is), `VARIABLE: ` when the
    environment set it, else nothing."""
    parts = tuple(str(p) for p in loc)
    var = next((v for k, v in (env or {}).items() if parts[: len(k)] == k), None)
    if var is not None:
        return f"{var}: "
    where = _yaml_line(text, loc) if text is not None else None
    return f"{path}:{where}: " if where is not None and path is not None else ""


def _located(
    loc: tuple[int | str, ...],
    msg: str,
    text: str | None,
    path: Path | None,
    env: Mapping[tuple[str, ...], str] | None = None,
) -> str:
    """`  file:line: key.path: msg`, the line being where the key is written (when it is), or
    `  VARIABLE: key.path: msg` for a key the environment set."""
    key = ".".join(str(p) for p in loc) or "(top level)"
    return f"  {_where(loc, text, path, env)}{key}: {msg}"


def config_location(
    loc: tuple[int | str, ...], path: str | Path | None, environ: Mapping[str, str] | None = None
) -> str:
    """Where the key at `loc` was set, as the errors of load_settings name it (`file:line: `,
    `VARIABLE: ` or nothing), for the checks made after loading (bot.pipeline.config_subscriptions)."""
    text = None
    if path is not None:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError:
            text = None
    env = os.environ if environ is None else environ
    return _where(loc, text, Path(path) if path is not None else None, env_sources(env))


def subscription_problems(settings: Settings) -> list[tuple[tuple[int | str, ...], str]]:
    """What makes declared subscriptions unusable across keys, which one section's model cannot
    see: an instance that is not configured (with the same did-you-mean as `--instance`), a
    missing instance where several are configured, no event, no project and no JQL, a name
    declared twice for one channel (the start would refuse it). Each with the key path it is
    about. JQL is checked by bot.pipeline.config_subscriptions (it needs the compiler)."""
    problems: list[tuple[tuple[int | str, ...], str]] = []
    known = settings.jira.known_instances
    seen: dict[tuple[str, str], int] = {}
    for i, declared in enumerate(settings.subscriptions):
        if declared.instance is not None:
            problem = unknown_instance(declared.instance, known)
            if problem:
                problems.append((("subscriptions", i, "instance"), problem))
        elif len(known) != 1:
            listed = ", ".join(inst.label for inst in known) or "none"
            problems.append(
                (
                    ("subscriptions", i, "instance"),
                    f"is required unless jira.instances holds exactly one instance (it holds: {listed})",
                )
            )
        # As the one-line form and the dialog require them.
        filters = declared.filters
        if not filters.events:
            problems.append((("subscriptions", i, "filters", "events"), "name at least one event"))
        if not filters.projects and not (filters.jql and filters.jql.strip()):
            problems.append(
                (
                    ("subscriptions", i, "filters", "projects"),
                    "name at least one project (or give filters.jql)",
                )
            )
        # Chat commands find a channel's subscriptions by name case-insensitively (the name is
        # stored canonical already: white space folded).
        named = (declared.channel.casefold(), declared.name.casefold())
        if named in seen:
            problems.append(
                (
                    ("subscriptions", i, "name"),
                    f"`{declared.name}` is declared twice for channel `{declared.channel}` "
                    f"(first as subscriptions.{seen[named]}); give each subscription of a channel "
                    "its own name",
                )
            )
        seen.setdefault(named, i)
    return problems


def load_settings(path: str | Path | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Read the YAML file (if any), apply environment overrides, validate. Raises ConfigError."""
    env = os.environ if environ is None else environ
    data: dict[str, Any] = {}
    text: str | None = None
    if path is not None:
        p = Path(path)
        try:
            text = p.read_text(encoding="utf-8")
        except OSError as e:
            raise ConfigError(f"cannot read config file {p}: {e.strerror}") from None
        try:
            loaded = yaml.safe_load(text)
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f"{p}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(p)
            problem = getattr(e, "problem", None) or str(e)
            raise ConfigError(f"{where}: not valid YAML: {problem}") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file {p} must hold a mapping at the top level")
        data = loaded
    data = apply_env(data, env)
    file_path = Path(path) if path is not None else None
    try:
        settings = Settings.model_validate(data)
    except ValidationError as e:
        raise ConfigError(_describe(e, text, file_path, env_sources(env))) from None
    problems = subscription_problems(settings)
    if problems:
        lines = [_located(loc, msg, text, file_path, env_sources(env)) for loc, msg in problems]
        raise ConfigError("invalid configuration:\n" + "\n".join(lines))
    return settings
