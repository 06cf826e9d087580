"""The closed event vocabulary and the value objects a webhook is normalised into.

Everything downstream (subscriptions, rendering, dedupe keys, metrics) speaks only this
vocabulary. This module is pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

# Event kinds, named as the Mattermost Jira plugin names them so that subscriptions
# exported from the plugin keep their meaning.
EVENT_CREATED = "event_created"
EVENT_DELETED = "event_deleted"
EVENT_DELETED_UNRESOLVED = "event_deleted_unresolved"
EVENT_UPDATED_REOPENED = "event_updated_reopened"
EVENT_UPDATED_RESOLVED = "event_updated_resolved"
EVENT_UPDATED_STATUS = "event_updated_status"
EVENT_UPDATED_PRIORITY = "event_updated_priority"
EVENT_UPDATED_SUMMARY = "event_updated_summary"
EVENT_UPDATED_DESCRIPTION = "event_updated_description"
EVENT_UPDATED_SPRINT = "event_updated_sprint"
EVENT_UPDATED_RANK = "event_updated_rank"
EVENT_UPDATED_ATTACHMENT = "event_updated_attachment"
EVENT_UPDATED_LABELS = "event_updated_labels"
EVENT_UPDATED_ASSIGNEE = "event_updated_assignee"
EVENT_UPDATED_ISSUE_TYPE = "event_updated_issue_type"
EVENT_UPDATED_FIX_VERSION = "event_updated_fix_version"
EVENT_UPDATED_AFFECTS_VERSION = "event_updated_affects_version"
EVENT_UPDATED_REPORTER = "event_updated_reporter"
EVENT_UPDATED_COMPONENTS = "event_updated_components"
EVENT_CREATED_COMMENT = "event_created_comment"
EVENT_UPDATED_COMMENT = "event_updated_comment"
EVENT_DELETED_COMMENT = "event_deleted_comment"
# Pseudo kind used only in subscription filters: matches every update and comment event.
EVENT_UPDATED_ANY = "event_updated_any"
# Prefix of custom field kinds: event_updated_customfield_10072 (Cloud) or
# event_updated_<field name> (Server, whose changelog items carry no field id).
EVENT_UPDATED_PREFIX = "event_updated_"

STANDARD_KINDS: frozenset[str] = frozenset(
    {
        EVENT_CREATED,
        EVENT_DELETED,
        EVENT_DELETED_UNRESOLVED,
        EVENT_UPDATED_REOPENED,
        EVENT_UPDATED_RESOLVED,
        EVENT_UPDATED_STATUS,
        EVENT_UPDATED_PRIORITY,
        EVENT_UPDATED_SUMMARY,
        EVENT_UPDATED_DESCRIPTION,
        EVENT_UPDATED_SPRINT,
        EVENT_UPDATED_RANK,
        EVENT_UPDATED_ATTACHMENT,
        EVENT_UPDATED_LABELS,
        EVENT_UPDATED_ASSIGNEE,
        EVENT_UPDATED_ISSUE_TYPE,
        EVENT_UPDATED_FIX_VERSION,
        EVENT_UPDATED_AFFECTS_VERSION,
        EVENT_UPDATED_REPORTER,
        EVENT_UPDATED_COMPONENTS,
        EVENT_CREATED_COMMENT,
        EVENT_UPDATED_COMMENT,
        EVENT_DELETED_COMMENT,
    }
)
COMMENT_KINDS: frozenset[str] = frozenset(
    {EVENT_CREATED_COMMENT, EVENT_UPDATED_COMMENT, EVENT_DELETED_COMMENT}
)


def is_custom_field_kind(kind: str) -> bool:
    return kind.startswith(EVENT_UPDATED_PREFIX) and kind not in STANDARD_KINDS


@dataclass(frozen=True, slots=True)
class JiraUser:
    """A Jira user as a webhook names it. Cloud identifies by account_id, Server by name/key."""

    display_name: str = ""
    name: str = ""
    key: str = ""
    account_id: str = ""
    email: str = ""

    @property
    def ids(self) -> tuple[str, ...]:
        """Every identifier this user may be referred to by (for mentions and notifications)."""
        return tuple(i for i in (self.account_id, self.name, self.key) if i)


@dataclass(frozen=True, slots=True)
class NamedValue:
    """An option-like Jira value (issue type, priority, status, version, component...)."""

    id: str = ""
    name: str = ""


@dataclass(frozen=True, slots=True)
class FieldChange:
    """One changelog item that produced an event kind."""

    kind: str  # the event kind this change produced, e.g. event_updated_priority
    field: str  # the changelog's field name ("Fix Version", "customfield name" ...)
    field_id: str  # the field id ("fixVersions", "customfield_10072"); the name on old Server
    from_string: str = ""
    to_string: str = ""
    from_id: str = ""
    to_id: str = ""


@dataclass(frozen=True, slots=True)
class Comment:
    id: str
    body: str  # Jira wiki markup, as sent
    author: JiraUser
    update_author: JiraUser
    self_url: str = ""
    created: str = ""
    updated: str = ""


@dataclass(frozen=True, slots=True)
class IssueSnapshot:
    """The issue as the webhook shows it after the change."""

    id: str
    key: str
    self_url: str  # REST URL of the issue, from which the Jira base URL is derived
    summary: str = ""
    description: str = ""  # Jira wiki markup (Cloud webhooks still send wiki markup)
    project: NamedValue = NamedValue()  # id and key (name holds the project key)
    project_name: str = ""
    issue_type: NamedValue = NamedValue()
    priority: NamedValue | None = None
    status: NamedValue | None = None
    resolution: NamedValue | None = None
    assignee: JiraUser | None = None
    reporter: JiraUser | None = None
    security_level: NamedValue | None = None
    labels: tuple[str, ...] = ()
    # Field id -> the values of that field, for subscription field filters. Each value is a
    # NamedValue so that filters may name either the id or the name. Holds the standard fields
    # (priority, status, labels, fixVersions, versions, components, security, ...) and every
    # custom field the payload carries (customfield_NNNNN).
    field_values: Mapping[str, tuple[NamedValue, ...]] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        """Jira base URL (https://acme.atlassian.net or https://jira.corp/jira)."""
        marker = "/rest/api/"
        idx = self.self_url.find(marker)
        return self.self_url[:idx] if idx >= 0 else ""

    @property
    def browse_url(self) -> str:
        return f"{self.base_url}/browse/{self.key}" if self.base_url else ""


@dataclass(frozen=True, slots=True)
class IssueEvent:
    """A normalised Jira webhook: what happened to which issue, by whom.

    `kinds` holds every event kind the payload produced (several changes in one payload make
    one event with several kinds and several `changes`, rendered as one merged post).
    """

    webhook_event: str  # jira:issue_updated, comment_created ...
    issue_event_type: str  # issue_event_type_name, "" on old Server payloads
    kinds: frozenset[str]
    issue: IssueSnapshot
    actor: JiraUser | None = None  # who made the change
    changes: tuple[FieldChange, ...] = ()
    comment: Comment | None = None
    timestamp_ms: int | None = None

    @property
    def is_comment(self) -> bool:
        return bool(self.kinds & COMMENT_KINDS)
