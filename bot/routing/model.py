"""Channel subscriptions, in the Mattermost Jira plugin's model (so exports keep their meaning)."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field


class Inclusion(StrEnum):
    INCLUDE_ANY = "include_any"
    INCLUDE_ALL = "include_all"
    EXCLUDE_ANY = "exclude_any"
    EMPTY = "empty"
    INCLUDE_OR_EMPTY = "include_or_empty"


class FieldFilter(BaseModel):
    model_config = ConfigDict(frozen=True)

    key: str  # field id: priority, labels, fixVersions, security, customfield_10072 ...
    inclusion: Inclusion = Inclusion.INCLUDE_ANY
    values: tuple[str, ...] = ()  # ids or names


class SubscriptionFilters(BaseModel):
    model_config = ConfigDict(frozen=True)

    events: frozenset[str] = frozenset()
    projects: frozenset[str] = frozenset()  # project keys
    issue_types: frozenset[str] = frozenset()  # ids or names
    fields: tuple[FieldFilter, ...] = ()
    # Reserved for a JQL filter evaluated against Jira; not evaluated yet.
    jql: str | None = None


class Subscription(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    name: str
    channel_id: str
    instance_id: str  # the Jira base URL, e.g. https://acme.atlassian.net
    filters: SubscriptionFilters = Field(default_factory=SubscriptionFilters)
    created_by: str = ""  # Mattermost user id, or "config" for subscriptions declared in the file
