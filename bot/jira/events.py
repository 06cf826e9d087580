"""The closed event vocabulary, the value objects a webhook is normalised into, and `normalise`.

Everything downstream (subscriptions, rendering, dedupe keys, metrics) speaks only this
vocabulary. This module is pure: no I/O, no clock. It is kept whole on purpose (a little over
600 lines): the kinds, the webhook names and field tables that map onto them, and the one
function that applies those tables are one closed vocabulary, read and changed together.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import quote

from bot.jira.models import (
    ChangelogItem,
    CommentModel,
    Issue,
    IssueFields,
    JiraUserModel,
    JiraWebhook,
    NamedRef,
    WebhookPeek,
)

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
    creator: JiraUser | None = None
    # Field id -> the values of that field, for subscription field filters. Each value is a
    # NamedValue so that filters may name either the id or the name. Holds the standard fields
    # (priority, status, labels, fixVersions, versions, components, security, ...) and every
    # custom field the payload carries (customfield_NNNNN).
    field_values: Mapping[str, tuple[NamedValue, ...]] = field(default_factory=dict)
    # True when the webhook carried only a few of the issue's fields (Cloud's standalone
    # comment_* events): field filters then see an incomplete picture, and a caller that needs
    # the full issue should fetch it from Jira.
    fields_partial: bool = False

    @property
    def base_url(self) -> str:
        """Jira base URL (https://acme.atlassian.net or https://jira.corp/jira)."""
        marker = "/rest/api/"
        idx = self.self_url.find(marker)
        return self.self_url[:idx] if idx >= 0 else ""

    @property
    def browse_url(self) -> str:
        # Percent-encoded beyond the characters a Jira URL needs: the key and the base URL come
        # from the payload, and an "@", "(", ")" or "[" in them would ping someone or break the
        # Markdown link the URL goes into.
        return quote(f"{self.base_url}/browse/{self.key}", safe=":/%-._~") if self.base_url else ""


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


# --- Normalisation of a parsed webhook -----------------------------------------------------------

# webhookEvent values the bot understands.
WEBHOOK_ISSUE_CREATED = "jira:issue_created"
WEBHOOK_ISSUE_UPDATED = "jira:issue_updated"
WEBHOOK_ISSUE_DELETED = "jira:issue_deleted"
WEBHOOK_COMMENT_CREATED = "comment_created"
WEBHOOK_COMMENT_UPDATED = "comment_updated"
WEBHOOK_COMMENT_DELETED = "comment_deleted"

# issue_event_type_name values of jira:issue_updated whose meaning is in the changelog.
_CHANGELOG_EVENT_TYPES = frozenset(
    {
        "issue_updated",
        "issue_generic",
        "issue_resolved",
        "issue_closed",
        "issue_work_started",
        "issue_reopened",
    }
)
_COMMENT_EVENT_TYPES: Mapping[str, str] = {
    "issue_commented": EVENT_CREATED_COMMENT,
    "issue_comment_edited": EVENT_UPDATED_COMMENT,
    "issue_comment_deleted": EVENT_DELETED_COMMENT,
}
_STANDALONE_COMMENT_EVENTS: Mapping[str, str] = {
    WEBHOOK_COMMENT_CREATED: EVENT_CREATED_COMMENT,
    WEBHOOK_COMMENT_UPDATED: EVENT_UPDATED_COMMENT,
    WEBHOOK_COMMENT_DELETED: EVENT_DELETED_COMMENT,
}

# Changelog field name (lower-cased: Cloud says "Status" on create, "status" on update) -> kind,
# for Jira's own fields. Sprint and Rank are custom fields on Cloud, hence handled apart.
_SYSTEM_FIELD_KINDS: Mapping[str, str] = {
    "status": EVENT_UPDATED_STATUS,
    "priority": EVENT_UPDATED_PRIORITY,
    "summary": EVENT_UPDATED_SUMMARY,
    "description": EVENT_UPDATED_DESCRIPTION,
    "attachment": EVENT_UPDATED_ATTACHMENT,
    "labels": EVENT_UPDATED_LABELS,
    "assignee": EVENT_UPDATED_ASSIGNEE,
    "issuetype": EVENT_UPDATED_ISSUE_TYPE,
    "fix version": EVENT_UPDATED_FIX_VERSION,
    "version": EVENT_UPDATED_AFFECTS_VERSION,
    "reporter": EVENT_UPDATED_REPORTER,
    "component": EVENT_UPDATED_COMPONENTS,
}
# Moving an issue out of every sprint, or a rank change without a direction, is not worth a post.
_KINDS_NEEDING_TARGET: Mapping[str, str] = {"sprint": EVENT_UPDATED_SPRINT, "rank": EVENT_UPDATED_RANK}

CUSTOM_FIELD_PREFIX = "customfield_"
# Server/DC (and old Cloud) render sprint values as the Java toString of the sprint object.
_SPRINT_TO_STRING = re.compile(
    r"^com\.atlassian\.greenhopper\.service\.sprint\.Sprint@\w+\[(?:.*?,)?id=(?P<id>\d+),.*?"
    r"name=(?P<name>.*?),(?:goal|startDate|endDate|completeDate|activatedDate|sequence)="
)
_ADF_BLOCKS = frozenset({"paragraph", "heading", "blockquote", "codeBlock", "listItem", "rule", "panel"})


def normalise(payload: JiraWebhook) -> IssueEvent | None:
    """Turn a parsed webhook into an IssueEvent, or None when it carries nothing postable.

    Follows the Mattermost Jira plugin's reading of webhooks (webhook_parser.go): payloads without
    issue fields, unknown webhook events, Server/DC's incomplete standalone comment events (which
    duplicate `issue_commented`) and changelogs with no notable change all give None.
    """
    issue = payload.issue
    if issue is None or issue.fields is None or not (issue.id or issue.key):
        return None
    classified = _classify(payload, issue.fields)
    if classified is None:
        return None
    kinds, changes = classified
    is_comment_event = bool(kinds & COMMENT_KINDS)
    comment = _comment(payload.comment) if is_comment_event else None
    actor = _user(payload.user)
    if actor is None and payload.comment is not None:
        actor = _user(payload.comment.update_author) or _user(payload.comment.author)
    return IssueEvent(
        webhook_event=payload.webhook_event or "",
        issue_event_type=payload.issue_event_type_name or "",
        kinds=kinds,
        issue=_snapshot(
            issue, issue.fields, partial=(payload.webhook_event or "") in _STANDALONE_COMMENT_EVENTS
        ),
        actor=actor,
        changes=changes,
        comment=comment,
        timestamp_ms=payload.timestamp,
    )


def with_issue(event: IssueEvent, issue: Issue) -> IssueEvent:
    """The event with its issue as Jira's REST API describes it (GET /rest/api/2/issue/{id},
    same shape as a webhook's issue): every field, the security level included, so no longer
    partial. Id, key and `self` stay the webhook's, so links keep pointing where Jira said."""
    snapshot = _snapshot(issue, issue.fields or IssueFields(), partial=False)
    snapshot = replace(
        snapshot,
        id=event.issue.id or snapshot.id,
        key=event.issue.key or snapshot.key,
        self_url=event.issue.self_url or snapshot.self_url,
    )
    return replace(event, issue=snapshot)


_KNOWN_WEBHOOK_EVENTS = frozenset(
    {WEBHOOK_ISSUE_CREATED, WEBHOOK_ISSUE_UPDATED, WEBHOOK_ISSUE_DELETED, *_STANDALONE_COMMENT_EVENTS}
)


def unpostable_reason(peek: WebhookPeek) -> str | None:
    """Why a webhook can carry nothing to post, judged from a quick look; None when `normalise`
    has to decide. Every webhook refused here is one `normalise` would turn into None."""
    issue = peek.issue
    if issue is None or issue.fields is None or not (issue.id or issue.key):
        return "no issue in the webhook"
    webhook_event = peek.webhook_event or ""
    if webhook_event not in _KNOWN_WEBHOOK_EVENTS:
        return f"not an issue event ({webhook_event or 'no webhookEvent'})"
    if webhook_event in _STANDALONE_COMMENT_EVENTS:
        # Server/DC's standalone comment events lack the issue id and repeat issue_commented.
        if not issue.id:
            return "standalone comment event without the issue id"
        if webhook_event != WEBHOOK_COMMENT_DELETED and peek.comment is None:
            return "comment event without its comment"
    return None


def event_summary(event: IssueEvent) -> str:
    """A short log line: `ABC-1 event_created,event_updated_status`."""
    return f"{event.issue.key or event.issue.id or '?'} {','.join(sorted(event.kinds))}"


_Classified = tuple[frozenset[str], tuple[FieldChange, ...]]


def _classify(payload: JiraWebhook, fields: IssueFields) -> _Classified | None:
    webhook_event = payload.webhook_event or ""
    items = [item for item in (payload.changelog.items or ()) if item] if payload.changelog else []

    if webhook_event == WEBHOOK_ISSUE_CREATED:
        return frozenset({EVENT_CREATED}), ()
    if webhook_event == WEBHOOK_ISSUE_DELETED:
        unresolved = _named(fields.resolution) is None
        kinds = {EVENT_DELETED, EVENT_DELETED_UNRESOLVED} if unresolved else {EVENT_DELETED}
        return frozenset(kinds), ()
    if webhook_event in _STANDALONE_COMMENT_EVENTS:
        return _comment_event(payload, _STANDALONE_COMMENT_EVENTS[webhook_event])
    if webhook_event != WEBHOOK_ISSUE_UPDATED:
        return None

    event_type = payload.issue_event_type_name or ""
    if event_type == "issue_assigned":
        return _assigned(items)
    if event_type in _CHANGELOG_EVENT_TYPES:
        return _from_changes(_changelog_changes(items))
    if event_type in _COMMENT_EVENT_TYPES:
        return _comment_event(payload, _COMMENT_EVENT_TYPES[event_type])
    # Unknown type, or an old Server payload without issue_event_type_name: guess from content.
    if items:
        return _from_changes(_changelog_changes(items))
    comment = payload.comment
    if comment is not None and comment.id:
        created = comment.updated == comment.created
        return _comment_event(payload, EVENT_CREATED_COMMENT if created else EVENT_UPDATED_COMMENT)
    return None


def _comment_event(payload: JiraWebhook, kind: str) -> _Classified | None:
    # Server/DC's standalone comment_* events come without the issue id (and duplicate the
    # jira:issue_updated it sends as well); a created or edited comment without its body is
    # not postable either. A deletion may come without the comment (Server's issue_comment_deleted).
    if payload.issue is None or not payload.issue.id:
        return None
    if kind != EVENT_DELETED_COMMENT and payload.comment is None:
        return None
    return frozenset({kind}), ()


def _assigned(items: list[ChangelogItem]) -> _Classified | None:
    if not items:
        return None  # Jira sometimes sends issue_assigned with an empty changelog
    # The plugin reads the first item; prefer the assignee item when it is elsewhere.
    first = next((item for item in items if (item.field or "").lower() == "assignee"), items[0])
    assignee = _change(first, EVENT_UPDATED_ASSIGNEE, field="assignee", field_id="assignee")
    others = _changelog_changes(item for item in items if item is not first)
    return _from_changes([assignee, *others])


def _from_changes(changes: list[FieldChange]) -> _Classified | None:
    if not changes:
        return None
    return frozenset(change.kind for change in changes), tuple(changes)


def _changelog_changes(items: Iterable[ChangelogItem]) -> list[FieldChange]:
    changes = []
    for item in items:
        kind = _kind_of(item)
        if kind:
            changes.append(_change(item, kind))
    return changes


def _kind_of(item: ChangelogItem) -> str | None:
    name = (item.field or "").strip()
    lowered = name.lower()
    has_from = bool(item.from_string or item.from_)
    has_to = bool(item.to_string or item.to)
    if lowered == "resolution":
        if has_to and not has_from:
            return EVENT_UPDATED_RESOLVED
        if has_from and not has_to:
            return EVENT_UPDATED_REOPENED
        return None  # one resolution replaced by another: the status item tells the story
    if lowered in _KINDS_NEEDING_TARGET:
        return _KINDS_NEEDING_TARGET[lowered] if has_to else None
    if item.fieldtype == "custom":
        # Server items carry no fieldId: the field's name stands in for it, as in the plugin.
        field_id = item.field_id or name
        return EVENT_UPDATED_PREFIX + field_id if field_id else None
    return _SYSTEM_FIELD_KINDS.get(lowered)


def _change(item: ChangelogItem, kind: str, *, field: str = "", field_id: str = "") -> FieldChange:
    name = field or item.field or ""
    return FieldChange(
        kind=kind,
        field=name,
        field_id=field_id or item.field_id or name,
        from_string=item.from_string or "",
        to_string=item.to_string or "",
        from_id=item.from_ or "",
        to_id=item.to or "",
    )


def _snapshot(issue: Issue, fields: IssueFields, *, partial: bool) -> IssueSnapshot:
    project = fields.project
    extra = {**(fields.model_extra or {}), "created": fields.created, "updated": fields.updated}
    priority = _named(fields.priority)
    status = _named(fields.status)
    resolution = _named(fields.resolution)
    issue_type = _named(fields.issuetype)
    security = _security(fields.security)
    assignee = _user(fields.assignee)
    reporter = _user(fields.reporter)
    creator = _user(fields.creator)
    labels = tuple(label for label in (fields.labels or ()) if label)
    return IssueSnapshot(
        id=issue.id or "",
        key=issue.key or "",
        self_url=issue.self_url or "",
        summary=fields.summary or "",
        description=_plain_text(fields.description),
        project=NamedValue(id=project.id or "", name=project.key or "") if project else NamedValue(),
        project_name=(project.name or "") if project else "",
        issue_type=issue_type or NamedValue(),
        priority=priority,
        status=status,
        resolution=resolution,
        assignee=assignee,
        reporter=reporter,
        security_level=security,
        labels=labels,
        creator=creator,
        field_values=_field_values(
            fields,
            {
                "priority": _one(priority),
                "status": _one(status),
                "issuetype": _one(issue_type),
                "resolution": _one(resolution),
                "security": _one(security),
                "reporter": _user_values(reporter),
                "assignee": _user_values(assignee),
                # A label is its own id, as the plugin's filters compare it.
                "labels": tuple(NamedValue(id=label, name=label) for label in labels),
                "fixVersions": _refs(fields.fix_versions),
                "versions": _refs(fields.versions),
                "components": _refs(fields.components),
                # For JQL filters: the creator, the status category, the parent and the dates
                # (as Jira wrote them: "2026-01-31T10:00:00.000+0000", "2026-01-31" for duedate).
                "creator": _user_values(creator),
                "statusCategory": _status_category(fields.status),
                "parent": _parent(extra.get("parent")),
                **{key: _text_value(extra.get(key)) for key in _DATE_FIELDS},
            },
        ),
        fields_partial=partial,
    )


_DATE_FIELDS = ("created", "updated", "resolutiondate", "duedate")


def _text_value(raw: Any) -> tuple[NamedValue, ...]:
    return (NamedValue(name=raw),) if isinstance(raw, str) and raw else ()


def _status_category(status: NamedRef | None) -> tuple[NamedValue, ...]:
    """The status's category by id and name, and by key ("done", "indeterminate", "new")."""
    raw = (status.model_extra or {}).get("statusCategory") if status is not None else None
    if not isinstance(raw, dict):
        return ()
    category = NamedValue(id=_first_text(raw, ("id",)), name=_first_text(raw, ("name",)))
    key = _first_text(raw, ("key",))
    values = (category,) if category.id or category.name else ()
    return (*values, NamedValue(id=key, name=key)) if key else values


def _parent(raw: Any) -> tuple[NamedValue, ...]:
    if not isinstance(raw, dict):
        return ()
    parent = NamedValue(id=_first_text(raw, ("id",)), name=_first_text(raw, ("key",)))
    return (parent,) if parent.id or parent.name else ()


def _field_values(
    fields: IssueFields, standard: dict[str, tuple[NamedValue, ...]]
) -> dict[str, tuple[NamedValue, ...]]:
    # Custom fields are keyed only when present (null included), so that "empty" and "absent
    # from this payload" stay distinguishable.
    values = standard
    for key, raw in (fields.model_extra or {}).items():
        if key.startswith(CUSTOM_FIELD_PREFIX):
            values[key] = tuple(_raw_values(raw))
    return values


def _raw_values(raw: Any) -> Iterable[NamedValue]:
    """The values of a custom field as JSON gave it: options, users, sprints, lists, scalars."""
    if raw is None or raw == "":
        return
    if isinstance(raw, list):
        for element in raw:
            yield from _raw_values(element)
    elif isinstance(raw, dict):
        ident = _first_text(raw, ("id", "accountId", "name", "key"))
        label = _first_text(raw, ("value", "displayName", "name"))
        if ident or label:
            yield NamedValue(id=ident, name=label)
        child = raw.get("child")  # cascading select: the chosen sub-option
        if isinstance(child, dict):
            yield from _raw_values(child)
    elif isinstance(raw, bool):
        yield NamedValue(name="true" if raw else "false")
    elif isinstance(raw, str):
        match = _SPRINT_TO_STRING.match(raw) if raw.startswith("com.atlassian.greenhopper") else None
        yield NamedValue(id=match["id"], name=match["name"]) if match else NamedValue(name=raw)
    else:
        yield NamedValue(name=str(raw))


def _first_text(obj: Mapping[str, Any], keys: tuple[str, ...]) -> str:
    for key in keys:
        value = obj.get(key)
        if value is not None and value != "" and not isinstance(value, dict | list):
            return str(value)
    return ""


def _one(value: NamedValue | None) -> tuple[NamedValue, ...]:
    return (value,) if value is not None else ()


def _refs(refs: list[NamedRef | None] | None) -> tuple[NamedValue, ...]:
    return tuple(value for value in map(_named, refs or ()) if value is not None)


def _named(ref: NamedRef | None) -> NamedValue | None:
    if ref is None:
        return None
    value = NamedValue(id=ref.id or "", name=ref.name or ref.value or "")
    return value if value.id or value.name else None


def _security(raw: NamedRef | str | None) -> NamedValue | None:
    if isinstance(raw, str):
        return NamedValue(id=raw) if raw else None  # only the level's id was sent
    return _named(raw)


def _user(model: JiraUserModel | None) -> JiraUser | None:
    if model is None:
        return None
    user = JiraUser(
        display_name=model.display_name or "",
        name=model.name or "",
        key=model.key or "",
        account_id=model.account_id or "",
        email=model.email_address or "",
    )
    return user if user.ids or user.display_name else None


def _user_values(user: JiraUser | None) -> tuple[NamedValue, ...]:
    if user is None:
        return ()
    return (NamedValue(id=user.account_id or user.name or user.key, name=user.display_name),)


def _comment(model: CommentModel | None) -> Comment | None:
    if model is None:
        return None
    author = _user(model.author)
    return Comment(
        id=model.id or "",
        body=_plain_text(model.body),
        author=author or JiraUser(),
        update_author=_user(model.update_author) or author or JiraUser(),
        self_url=model.self_url or "",
        created=model.created or "",
        updated=model.updated or "",
    )


def _plain_text(value: str | dict[str, Any] | None) -> str:
    """Text as sent (wiki markup); an Atlassian Document Format object is flattened to its text."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        parts: list[str] = []
        _collect_adf_text(value, parts)
        return "".join(parts).strip()
    return ""


def _collect_adf_text(node: Mapping[str, Any], parts: list[str]) -> None:
    node_type = node.get("type")
    if node_type == "text" and isinstance(node.get("text"), str):
        parts.append(node["text"])
    elif node_type == "hardBreak":
        parts.append("\n")
    content = node.get("content")
    if isinstance(content, list):
        for child in content:
            if isinstance(child, dict):
                _collect_adf_text(child, parts)
    if node_type in _ADF_BLOCKS:
        parts.append("\n")
