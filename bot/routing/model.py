"""Channel subscriptions, in the Mattermost Jira plugin's model (so exports keep their meaning)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from bot.jira.events import EVENT_UPDATED_ANY, STANDARD_KINDS

# Field filter keys that name the issue security level. The plugin stores `security` (the Jira
# field id); `securitylevel` is accepted too because hand-written configurations use it.
SECURITY_FIELD_KEYS: frozenset[str] = frozenset({"security", "securitylevel"})

_CUSTOM_FIELD_KIND_PREFIX = "event_updated_customfield_"

# `filters.jql_check`: who answers the JQL clauses the bot cannot (membersOf(), watcher ...):
# nobody (the subscription is refused when saved), or Jira, asked with the instance's service account.
JQL_CHECK_LOCAL = "local"
JQL_CHECK_JIRA = "jira"
JQL_CHECKS = (JQL_CHECK_LOCAL, JQL_CHECK_JIRA)


class Inclusion(StrEnum):
    INCLUDE_ANY = "include_any"
    INCLUDE_ALL = "include_all"
    EXCLUDE_ANY = "exclude_any"
    EMPTY = "empty"
    INCLUDE_OR_EMPTY = "include_or_empty"


def _as_strings(value: Any) -> Any:
    """Accept a single string, any iterable of strings, or the plugin's {value: true} set shape."""
    if value is None:
        return ()
    if isinstance(value, str):
        value = (value,)
    elif isinstance(value, Mapping):
        value = tuple(k for k, present in value.items() if present)
    if not isinstance(value, Iterable):
        return value  # let pydantic report the type error
    return tuple(str(v).strip() for v in value if v is not None and str(v).strip())


def normalise_event_kind(kind: str) -> str:
    """Lower-case the vocabulary's own kinds; Server custom field kinds keep their field name as is."""
    kind = kind.strip()
    lowered = kind.lower()
    if lowered in STANDARD_KINDS or lowered == EVENT_UPDATED_ANY:
        return lowered
    if lowered.startswith(_CUSTOM_FIELD_KIND_PREFIX):
        return lowered
    return kind


class FieldFilter(BaseModel):
    model_config = ConfigDict(frozen=True)

    key: str  # field id: priority, labels, fixVersions, security, customfield_10072 ...
    inclusion: Inclusion = Inclusion.INCLUDE_ANY
    values: tuple[str, ...] = ()  # ids or names

    @field_validator("key", mode="before")
    @classmethod
    def _strip_key(cls, value: Any) -> Any:
        return value.strip() if isinstance(value, str) else value

    @field_validator("inclusion", mode="before")
    @classmethod
    def _normalise_inclusion(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("values", mode="before")
    @classmethod
    def _normalise_values(cls, value: Any) -> Any:
        return _as_strings(value)

    @property
    def is_security(self) -> bool:
        return self.key.lower() in SECURITY_FIELD_KEYS


class SubscriptionFilters(BaseModel):
    model_config = ConfigDict(frozen=True)

    events: frozenset[str] = frozenset()
    projects: frozenset[str] = frozenset()  # project keys
    issue_types: frozenset[str] = frozenset()  # ids or names
    fields: tuple[FieldFilter, ...] = ()
    # JQL ANDed with the other filters, evaluated by the bot against the event's issue
    # (bot/routing/jql/). With it, `projects` and `issue_types` are optional.
    jql: str | None = None
    # "jira": clauses the bot cannot answer are checked by Jira per event (JQL_CHECK_JIRA above).
    jql_check: Literal["local", "jira"] = "local"

    @field_validator("jql_check", mode="before")
    @classmethod
    def _normalise_jql_check(cls, value: Any) -> Any:
        if value is None:
            return JQL_CHECK_LOCAL
        return value.strip().lower() or JQL_CHECK_LOCAL if isinstance(value, str) else value

    @field_validator("jql", mode="before")
    @classmethod
    def _normalise_jql(cls, value: Any) -> Any:
        if isinstance(value, str):
            return value.strip() or None
        return value

    @field_validator("events", mode="before")
    @classmethod
    def _normalise_events(cls, value: Any) -> Any:
        strings = _as_strings(value)
        return tuple(normalise_event_kind(s) for s in strings) if isinstance(strings, tuple) else strings

    @field_validator("projects", mode="before")
    @classmethod
    def _normalise_projects(cls, value: Any) -> Any:
        # Jira project keys are upper case; configurations often are not.
        strings = _as_strings(value)
        return tuple(s.upper() for s in strings) if isinstance(strings, tuple) else strings

    @field_validator("issue_types", mode="before")
    @classmethod
    def _normalise_issue_types(cls, value: Any) -> Any:
        return _as_strings(value)

    @property
    def has_security_filter(self) -> bool:
        return any(f.is_security for f in self.fields)


class Subscription(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    name: str
    channel_id: str
    instance_id: str  # the Jira base URL, e.g. https://acme.atlassian.net
    filters: SubscriptionFilters = Field(default_factory=SubscriptionFilters)
    created_by: str = ""  # Mattermost user id, or "config" for subscriptions declared in the file

    @classmethod
    def from_plugin_json(cls, data: Mapping[str, Any], instance_id: str = "") -> Subscription:
        """Read one subscription as the plugin stores it (`ChannelSubscription` JSON).

        Old plugin versions stored no instance id (it came from the KV key), so `instance_id` fills
        it in when the record has none. Keys are read in the plugin's JSON spelling (`channel_id`)
        and, for hand-made exports, in its Go spelling (`ChannelID`).
        """
        filters = _get(data, "filters", "Filters") or {}
        fields = [
            FieldFilter(
                key=_get(f, "key", "Key") or "",
                inclusion=_get(f, "inclusion", "Inclusion") or Inclusion.INCLUDE_ANY,
                values=_get(f, "values", "Values"),
            )
            for f in _get(filters, "fields", "Fields") or ()
        ]
        return cls(
            id=str(_get(data, "id", "ID", "Id") or ""),
            name=str(_get(data, "name", "Name") or ""),
            channel_id=str(_get(data, "channel_id", "ChannelID", "ChannelId") or ""),
            instance_id=str(_get(data, "instance_id", "InstanceID") or instance_id),
            filters=SubscriptionFilters(
                events=_get(filters, "events", "Events"),
                projects=_get(filters, "projects", "Projects"),
                issue_types=_get(filters, "issue_types", "IssueTypes"),
                fields=tuple(fields),
            ),
        )


def subscriptions_from_plugin_export(data: Any, instance_id: str = "") -> list[Subscription]:
    """Read the plugin's stored subscriptions: its KV record ({"Channel": {"by_id": {...}}}),
    a list of subscriptions, or a single one."""
    if isinstance(data, Mapping):
        channel = _get(data, "Channel", "channel")
        if isinstance(channel, Mapping):
            by_id = _get(channel, "by_id", "ByID", "ById") or {}
            records: Iterable[Any] = by_id.values()
        else:
            records = (data,)
    else:
        records = data
    return [Subscription.from_plugin_json(r, instance_id) for r in records]


def _get(data: Mapping[str, Any], *keys: str) -> Any:
    for key in keys:
        if key in data:
            return data[key]
    return None
