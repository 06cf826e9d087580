"""Jira REST answers the slash commands read, and the plain values the client returns.

The pydantic models (`Rest*`) parse what Jira sends, leniently: every field may be missing or
null, numeric ids become strings, unknown keys are ignored. Cloud and Server/Data Center
differ (accountId vs name/key, paged createmeta under `issueTypes`/`fields` vs `values`), and
each model accepts both. The frozen dataclasses are what `JiraSession` hands to callers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

# -- REST answers ------------------------------------------------------------------------------


class _Rest(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True, coerce_numbers_to_str=True)


class RestNamed(_Rest):
    """Status, issue type, priority, security level, allowed value: `name` or, for custom
    field options, `value`."""

    id: str | None = None
    name: str | None = None
    value: str | None = None
    key: str | None = None

    @property
    def label(self) -> str:
        return self.name or self.value or self.key or ""


class RestGroupList(_Rest):
    items: list[RestNamed] = Field(default_factory=list)


class RestUser(_Rest):
    """Cloud: `accountId`; Server/DC: `name` and `key`."""

    account_id: str | None = Field(None, alias="accountId")
    name: str | None = None
    key: str | None = None
    display_name: str | None = Field(None, alias="displayName")
    email_address: str | None = Field(None, alias="emailAddress")
    groups: RestGroupList | None = None


class RestProject(_Rest):
    id: str | None = None
    key: str | None = None
    name: str | None = None


class RestIssueFields(_Rest):
    summary: str | None = None
    # API v2 sends wiki markup; a document (Atlassian Document Format) is tolerated.
    description: str | dict[str, Any] | None = None
    status: RestNamed | None = None
    issuetype: RestNamed | None = None
    priority: RestNamed | None = None
    assignee: RestUser | None = None
    reporter: RestUser | None = None
    project: RestProject | None = None
    security: RestNamed | None = None


class RestIssue(_Rest):
    id: str | None = None
    key: str | None = None
    fields: RestIssueFields = Field(default_factory=RestIssueFields)


class RestFieldSchema(_Rest):
    type: str | None = None
    items: str | None = None
    system: str | None = None
    custom: str | None = None
    custom_id: str | None = Field(None, alias="customId")


class RestFieldMeta(_Rest):
    """One field of the create screen. The per-project endpoints name it `fieldId` (and Cloud
    also `key`); the old createmeta keys the fields object by id instead."""

    field_id: str | None = Field(None, alias="fieldId")
    key: str | None = None
    name: str | None = None
    required: bool = False
    schema_: RestFieldSchema = Field(default_factory=RestFieldSchema, alias="schema")
    allowed_values: list[RestNamed] | None = Field(None, alias="allowedValues")
    has_default_value: bool = Field(False, alias="hasDefaultValue")
    auto_complete_url: str | None = Field(None, alias="autoCompleteUrl")
    operations: list[str] = Field(default_factory=list)


class RestIssueTypeMeta(_Rest):
    id: str | None = None
    name: str | None = None
    subtask: bool = False
    # Old createmeta only (expand=projects.issuetypes.fields): field id -> metadata.
    fields: dict[str, RestFieldMeta] | None = None


class RestIssueTypePage(_Rest):
    """GET /issue/createmeta/{project}/issuetypes: Cloud pages under `issueTypes`, Server/DC
    under `values` (with `isLast`)."""

    issue_types: list[RestIssueTypeMeta] | None = Field(None, alias="issueTypes")
    values: list[RestIssueTypeMeta] | None = None
    start_at: int = Field(0, alias="startAt")
    total: int | None = None
    is_last: bool | None = Field(None, alias="isLast")

    @property
    def items(self) -> list[RestIssueTypeMeta]:
        return self.issue_types if self.issue_types is not None else (self.values or [])


class RestFieldPage(_Rest):
    """GET /issue/createmeta/{project}/issuetypes/{id}: Cloud pages under `fields` (some
    answers say `results`), Server/DC under `values`."""

    fields: list[RestFieldMeta] | None = None
    results: list[RestFieldMeta] | None = None
    values: list[RestFieldMeta] | None = None
    start_at: int = Field(0, alias="startAt")
    total: int | None = None
    is_last: bool | None = Field(None, alias="isLast")

    @property
    def items(self) -> list[RestFieldMeta]:
        for candidate in (self.fields, self.results, self.values):
            if candidate is not None:
                return candidate
        return []


class RestLegacyProjectMeta(_Rest):
    id: str | None = None
    key: str | None = None
    name: str | None = None
    issuetypes: list[RestIssueTypeMeta] = Field(default_factory=list)


class RestLegacyCreateMeta(_Rest):
    """GET /issue/createmeta?projectKeys=…&expand=projects.issuetypes.fields (Jira 8.x)."""

    projects: list[RestLegacyProjectMeta] = Field(default_factory=list)


class RestCreated(_Rest):
    id: str | None = None
    key: str | None = None


def has_more(page: RestIssueTypePage | RestFieldPage, received: int) -> bool:
    """Whether a createmeta page has a next one (`isLast` on Server/DC, `total` on Cloud)."""
    if page.is_last is not None:
        return not page.is_last
    return page.total is not None and page.start_at + received < page.total


# -- what the client returns -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class JiraAccount:
    """The Jira user behind a set of credentials. Cloud fills `account_id`, Server/DC `name`
    and `key`; the email may be hidden by the user's privacy settings."""

    account_id: str
    name: str
    key: str
    display_name: str
    email: str

    @property
    def identifier(self) -> str:
        return self.account_id or self.name

    @classmethod
    def from_rest(cls, user: RestUser) -> JiraAccount:
        return cls(
            account_id=user.account_id or "",
            name=user.name or "",
            key=user.key or "",
            display_name=user.display_name or "",
            email=user.email_address or "",
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class IssueCard:
    """What `/jira view` shows. `description` is the raw wiki markup Jira stores."""

    key: str
    id: str
    summary: str
    status: str
    issue_type: str
    priority: str
    assignee_name: str  # display name; empty when unassigned
    assignee_id: str  # accountId (Cloud) or name (Server/DC)
    reporter_name: str
    reporter_id: str
    description: str
    browse_url: str
    project_key: str
    security_level: str | None

    @property
    def is_assigned(self) -> bool:
        return bool(self.assignee_id or self.assignee_name)


@dataclass(frozen=True, slots=True)
class ProjectRef:
    id: str
    key: str
    name: str


@dataclass(frozen=True, slots=True)
class AllowedValue:
    """An option of a field: `name` for priorities, versions, components; custom select
    options carry a `value`, kept in `name` too."""

    id: str
    name: str


@dataclass(frozen=True, slots=True, kw_only=True)
class FieldMeta:
    id: str  # "summary", "priority", "customfield_10068"...
    name: str
    required: bool
    schema_type: str  # "string", "array", "option", "user", "priority", "date"...
    schema_items: str  # element type of an array field ("string", "option"...), else ""
    schema_system: str  # system field name, "" for custom fields
    schema_custom: str  # custom field type key, "" for system fields
    allowed_values: tuple[AllowedValue, ...] | None  # None: free input (no list offered)
    has_default_value: bool
    operations: tuple[str, ...] = ()

    @property
    def is_custom(self) -> bool:
        return bool(self.schema_custom) or self.id.startswith("customfield_")

    @classmethod
    def from_rest(cls, field_id: str, meta: RestFieldMeta) -> FieldMeta:
        allowed = None
        if meta.allowed_values is not None:
            allowed = tuple(AllowedValue(id=v.id or "", name=v.label) for v in meta.allowed_values)
        return cls(
            id=field_id,
            name=meta.name or field_id,
            required=meta.required,
            schema_type=meta.schema_.type or "",
            schema_items=meta.schema_.items or "",
            schema_system=meta.schema_.system or "",
            schema_custom=meta.schema_.custom or "",
            allowed_values=allowed,
            has_default_value=meta.has_default_value,
            operations=tuple(meta.operations),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class IssueTypeMeta:
    id: str
    name: str
    subtask: bool
    fields: tuple[FieldMeta, ...]

    def field(self, field_id: str) -> FieldMeta | None:
        return next((f for f in self.fields if f.id == field_id), None)

    @property
    def required_fields(self) -> tuple[FieldMeta, ...]:
        return tuple(f for f in self.fields if f.required)


@dataclass(frozen=True, slots=True, kw_only=True)
class CreateMeta:
    """The create screens of one project: its issue types the user may create, each with
    its fields."""

    project_key: str
    project_id: str
    issue_types: tuple[IssueTypeMeta, ...]

    def issue_type(self, id_or_name: str) -> IssueTypeMeta | None:
        folded = id_or_name.casefold()
        return next(
            (t for t in self.issue_types if t.id == id_or_name or t.name.casefold() == folded),
            None,
        )


@dataclass(frozen=True, slots=True)
class CreatedIssue:
    id: str
    key: str
    browse_url: str


def compact_name(text: str) -> str:
    """Case-, space- and punctuation-insensitive form: "In-Progress", "in progress" and
    "InProgress" are the same state, and "wont do" finds "Won't Do"."""
    return "".join(ch for ch in text.casefold() if ch.isalnum())


@dataclass(frozen=True, slots=True)
class Transition:
    id: str
    name: str
    to_status: str

    @classmethod
    def from_rest(cls, payload: Mapping[str, Any]) -> Transition:
        """From an element of Jira's `GET /issue/{key}/transitions` answer."""
        to = payload.get("to") or {}
        return cls(id=str(payload.get("id", "")), name=payload.get("name", ""), to_status=to.get("name", ""))

    @property
    def label(self) -> str:
        """What a button shows: the target state, and the transition when it says otherwise."""
        if not self.name or compact_name(self.name) == compact_name(self.to_status):
            return self.to_status
        return f"{self.name} → {self.to_status}"


@dataclass(frozen=True, slots=True, kw_only=True)
class JiraUserCandidate:
    """An assignable Jira user: Cloud identifies it by `account_id`, Server/DC by `name`."""

    display_name: str = ""
    account_id: str = ""
    name: str = ""
    email: str = ""

    @classmethod
    def from_rest(cls, payload: Mapping[str, Any]) -> JiraUserCandidate:
        """From an element of Jira's assignable-user search answer (Cloud or Server)."""
        return cls(
            display_name=payload.get("displayName") or "",
            account_id=payload.get("accountId") or "",
            name=payload.get("name") or "",
            email=payload.get("emailAddress") or "",
        )

    @property
    def identifier(self) -> str:
        return self.account_id or self.name

    def assignee_field(self) -> dict[str, str]:
        """The `assignee` value Jira expects: `accountId` and `name` are mutually exclusive,
        and Cloud only accepts `accountId`."""
        return {"accountId": self.account_id} if self.account_id else {"name": self.name}

    @property
    def label(self) -> str:
        """Name with username and email, as the plugin lists ambiguous assignees."""
        extra = ", ".join(x for x in (self.name, self.email) if x)
        shown = self.display_name or self.name or self.account_id
        return f"{shown} ({extra})" if extra else shown
