"""Pydantic models of the Jira webhook body (Cloud and Server/Data Center, old and new formats).

The models are deliberately lenient: every field may be null or missing, numbers are accepted
where Jira usually sends strings (ids), and unknown keys are kept (`extra="allow"`) because
custom fields (`customfield_NNNNN`) and new Jira attributes must never make a delivery fail.
Only a body that is not JSON, not a JSON object, or whose known keys have an impossible shape
(e.g. `"issue": "text"`) is refused, with a single `WebhookParseError`.

Attribute names are snake_case; each maps to the JSON name through its alias
(`webhook_event` <- `webhookEvent`, `self_url` <- `self`, `from_` <- `from`...).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError


class WebhookParseError(ValueError):
    """The body is not a Jira webhook: bad JSON, not an object, or a known key of the wrong shape."""


class _JiraModel(BaseModel):
    # coerce_numbers_to_str: Server sometimes sends numeric ids where Cloud sends strings.
    model_config = ConfigDict(extra="allow", populate_by_name=True, coerce_numbers_to_str=True)


class JiraUserModel(_JiraModel):
    """A user as Jira sends it: Cloud identifies by accountId, Server/DC by name and key."""

    self_url: str | None = Field(None, alias="self")
    name: str | None = None
    key: str | None = None
    account_id: str | None = Field(None, alias="accountId")
    display_name: str | None = Field(None, alias="displayName")
    email_address: str | None = Field(None, alias="emailAddress")
    active: bool | None = None


class NamedRef(_JiraModel):
    """An option-like value: priority, status, issue type, resolution, version, component, security."""

    self_url: str | None = Field(None, alias="self")
    id: str | None = None
    name: str | None = None
    key: str | None = None
    value: str | None = None


class ProjectRef(_JiraModel):
    self_url: str | None = Field(None, alias="self")
    id: str | None = None
    key: str | None = None
    name: str | None = None


class IssueFields(_JiraModel):
    """The fields the bot reads; every other field (custom fields included) lands in `model_extra`."""

    summary: str | None = None
    # Webhooks send wiki markup; an Atlassian Document Format object is tolerated too.
    description: str | dict[str, Any] | None = None
    project: ProjectRef | None = None
    issuetype: NamedRef | None = None
    priority: NamedRef | None = None
    status: NamedRef | None = None
    resolution: NamedRef | None = None
    assignee: JiraUserModel | None = None
    reporter: JiraUserModel | None = None
    creator: JiraUserModel | None = None
    # A level object normally; some payloads carry only its id as a string.
    security: NamedRef | str | None = None
    labels: list[str | None] | None = None
    fix_versions: list[NamedRef | None] | None = Field(None, alias="fixVersions")
    versions: list[NamedRef | None] | None = None
    components: list[NamedRef | None] | None = None
    created: str | None = None
    updated: str | None = None


class Issue(_JiraModel):
    id: str | None = None
    key: str | None = None
    self_url: str | None = Field(None, alias="self")
    fields: IssueFields | None = None


class ChangelogItem(_JiraModel):
    field: str | None = None
    field_id: str | None = Field(None, alias="fieldId")  # absent on Server/DC
    fieldtype: str | None = None  # "jira" or "custom"
    from_: str | None = Field(None, alias="from")
    from_string: str | None = Field(None, alias="fromString")
    to: str | None = None
    to_string: str | None = Field(None, alias="toString")


class Changelog(_JiraModel):
    id: str | None = None
    items: list[ChangelogItem | None] | None = None


class CommentModel(_JiraModel):
    id: str | None = None
    self_url: str | None = Field(None, alias="self")
    body: str | dict[str, Any] | None = None
    author: JiraUserModel | None = None
    update_author: JiraUserModel | None = Field(None, alias="updateAuthor")
    created: str | None = None
    updated: str | None = None


class JiraWebhook(_JiraModel):
    """One webhook delivery body."""

    webhook_event: str | None = Field(None, alias="webhookEvent")
    # Missing on old Server versions.
    issue_event_type_name: str | None = None
    timestamp: int | None = None  # milliseconds since the epoch
    user: JiraUserModel | None = None
    issue: Issue | None = None
    changelog: Changelog | None = None
    comment: CommentModel | None = None


def _describe(error: ValidationError) -> str:
    """A short, single-line reason: the first error's location and message."""
    first = error.errors(include_url=False)[0]
    location = ".".join(str(part) for part in first.get("loc", ())) or "body"
    return f"{location}: {first.get('msg', 'invalid')}"


def parse_webhook(body: bytes | str | dict[str, Any]) -> JiraWebhook:
    """Parse a webhook body, validating it once (bytes and str go straight to the JSON parser).

    Raises WebhookParseError on bad JSON, a non-object body, or a known key of the wrong shape.
    """
    try:
        if isinstance(body, bytes | bytearray | str):
            return JiraWebhook.model_validate_json(body)
        if isinstance(body, dict):
            return JiraWebhook.model_validate(body)
    except ValidationError as exc:
        raise WebhookParseError(f"not a Jira webhook ({_describe(exc)})") from exc
    raise WebhookParseError(f"not a Jira webhook (a {type(body).__name__}, not a JSON object)")


# --- A quick look at a webhook, for the HTTP intake ----------------------------------------------


class _AnyObject(BaseModel):
    """Any JSON object; its content is skipped, not validated (the full parse does that later)."""

    model_config = ConfigDict(extra="ignore")


class _PeekIssue(BaseModel):
    model_config = ConfigDict(extra="ignore", coerce_numbers_to_str=True)

    id: str | None = None
    key: str | None = None
    self_url: str | None = Field(None, alias="self")
    fields: _AnyObject | None = None


class WebhookPeek(BaseModel):
    """The few keys that tell whether a webhook may be worth storing, read without building the
    rest of the body. The top-level keys of `JiraWebhook` are checked for their shape (object,
    string, number) as that model checks them; what lies deeper is left to `parse_webhook`."""

    model_config = ConfigDict(extra="ignore", coerce_numbers_to_str=True)

    webhook_event: str | None = Field(None, alias="webhookEvent")
    issue_event_type_name: str | None = None
    timestamp: int | None = None
    user: _AnyObject | None = None
    issue: _PeekIssue | None = None
    changelog: _AnyObject | None = None
    comment: _AnyObject | None = None

    @property
    def base_url(self) -> str:
        """The Jira base URL from the issue's REST URL, as `IssueSnapshot.base_url` derives it."""
        self_url = (self.issue.self_url if self.issue else None) or ""
        idx = self_url.find("/rest/api/")
        return self_url[:idx] if idx >= 0 else ""


def peek_webhook(body: bytes | str) -> WebhookPeek:
    """A quick look at a webhook body: about a third of the cost of `parse_webhook`.

    Raises WebhookParseError on bad JSON, a non-object body, or a top-level key of the wrong shape.
    """
    try:
        return WebhookPeek.model_validate_json(body)
    except ValidationError as exc:
        raise WebhookParseError(f"not a Jira webhook ({_describe(exc)})") from exc
