"""The create form of an issue type, planned from Jira's create metadata, and its values read back.

`plan_create_form` decides which elements the form shows and how each submitted value becomes a
Jira field value; `field_value` and `errors_by_field` do that conversion and map Jira's refusals back
onto the elements. Pure: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from bot.commands.issue_common import TEXTAREA_MAX
from bot.jira.rest_models import FieldMeta, IssueTypeMeta
from bot.mattermost.payloads import DialogElement, DialogOption

SUMMARY_MAX = 255
TEXT_FIELD_MAX = 255

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")

# Fields the form handles itself (or Jira fills in), whatever their metadata says.
_SYSTEM_FIELDS = frozenset(
    {"project", "issuetype", "summary", "description", "priority", "labels", "assignee", "reporter"}
)
_TEXTAREA_CUSTOM = "com.atlassian.jira.plugin.system.customfieldtypes:textarea"


@dataclass
class CreatePlan:
    """The create form of one issue type: its elements, how each submitted value becomes a
    Jira field value (`kinds`: element name = Jira field id -> kind), and the required fields
    the form cannot show."""

    elements: list[DialogElement] = field(default_factory=list)
    kinds: dict[str, str] = field(default_factory=dict)
    required: list[str] = field(default_factory=list)
    missing: list[FieldMeta] = field(default_factory=list)
    reporter_self: bool = False

    def add(self, element: DialogElement, kind: str) -> None:
        self.elements.append(element)
        self.kinds[element.name] = kind
        if not element.optional:
            self.required.append(element.name)


def _options(meta: FieldMeta) -> list[DialogOption]:
    return [DialogOption(text=v.name or v.id, value=v.id) for v in meta.allowed_values or () if v.id]


def _custom_element(meta: FieldMeta) -> tuple[DialogElement, str] | None:
    """A form element for a field the form does not know by name, or None when a dialog
    cannot ask for it (users, cascading selects, sprints, date-times...)."""
    common: dict[str, Any] = {"display_name": meta.name, "name": meta.id, "optional": not meta.required}
    if meta.allowed_values is not None:
        options = _options(meta)
        if not options or meta.schema_type == "option-with-child":
            return None
        if meta.schema_type == "array":
            return DialogElement(type="select", options=options, multiselect=True, **common), "multi"
        return DialogElement(type="select", options=options, **common), "select"
    if meta.schema_type == "string":
        if meta.schema_custom == _TEXTAREA_CUSTOM:
            return DialogElement(type="textarea", max_length=TEXTAREA_MAX, **common), "string"
        return DialogElement(type="text", max_length=TEXT_FIELD_MAX, **common), "string"
    if meta.schema_type == "number":
        return DialogElement(type="text", subtype="number", **common), "number"
    if meta.schema_type == "date":
        return DialogElement(type="text", placeholder="YYYY-MM-DD", **common), "date"
    if meta.schema_type == "array" and meta.schema_items == "string":
        return DialogElement(type="text", help_text="Separate values with commas.", **common), "strings"
    return None


def plan_create_form(issue_type: IssueTypeMeta, summary: str = "", description: str = "") -> CreatePlan:
    """The form for `issue_type`: summary and description (pre-filled), priority, labels and
    assignee when its create screen has them, and every other required field without a default."""
    plan = CreatePlan()
    plan.add(
        DialogElement(
            display_name="Summary",
            name="summary",
            type="text",
            default=summary[:SUMMARY_MAX],
            max_length=SUMMARY_MAX,
        ),
        "summary",
    )
    on_screen = {f.id: f for f in issue_type.fields}
    if (meta := on_screen.get("description")) is not None:
        plan.add(
            DialogElement(
                display_name="Description",
                name="description",
                type="textarea",
                default=description,
                optional=not meta.required,
                max_length=TEXTAREA_MAX,
            ),
            "string",
        )
    if (meta := on_screen.get("priority")) is not None and _options(meta):
        plan.add(
            DialogElement(
                display_name="Priority",
                name="priority",
                type="select",
                options=_options(meta),
                optional=not meta.required or meta.has_default_value,
            ),
            "select",
        )
    if (meta := on_screen.get("labels")) is not None:
        plan.add(
            DialogElement(
                display_name="Labels",
                name="labels",
                type="text",
                optional=not meta.required,
                placeholder="frontend, regression",
                help_text="Separate labels with commas; a label has no spaces.",
            ),
            "labels",
        )
    if (meta := on_screen.get("assignee")) is not None:
        plan.add(
            DialogElement(
                display_name="Assignee",
                name="assignee",
                type="text",
                optional=not meta.required,
                placeholder="me",
                help_text="`me`, @mattermost-user, or a Jira name or email. Leave empty for Jira's default.",
            ),
            "assignee",
        )
    reporter = on_screen.get("reporter")
    plan.reporter_self = bool(reporter and reporter.required and not reporter.has_default_value)
    for meta in issue_type.fields:
        if meta.id in _SYSTEM_FIELDS or not meta.required or meta.has_default_value:
            continue
        made = _custom_element(meta)
        if made is None:
            plan.missing.append(meta)
        else:
            plan.add(*made)
    priority = on_screen.get("priority")
    if priority and "priority" not in plan.kinds and priority.required and not priority.has_default_value:
        plan.missing.append(priority)
    return plan


def _split(value: Any, pattern: str) -> list[str]:
    if isinstance(value, list):
        return [str(v).strip() for v in value if str(v).strip()]
    return [v for v in re.split(pattern, str(value or "")) if v.strip()]


def field_value(kind: str, raw: Any) -> tuple[Any, str]:
    """The Jira value of one submitted element, or an error to show under it. None: empty."""
    if kind == "multi":
        values = _split(raw, r"\s*,\s*")
        return ([{"id": v} for v in values] or None), ""
    text = "" if raw is None else str(raw).strip()
    if not text:
        return None, ""
    if kind == "select":
        return {"id": text}, ""
    if kind == "labels":
        return _split(text, r"[,\s]+"), ""
    if kind == "strings":
        return _split(text, r"\s*,\s*"), ""
    if kind == "number":
        try:
            number = float(text)
        except ValueError:
            return None, "Enter a number."
        return (int(number) if number.is_integer() else number), ""
    if kind == "date":
        try:
            if not _DATE.match(text):
                raise ValueError(text)
            date.fromisoformat(text)
        except ValueError:
            return None, "Enter a date as YYYY-MM-DD."
        return text, ""
    if kind == "summary":
        return " ".join(text.split()), ""
    return text, ""


def errors_by_field(detail: str, names: Iterable[str]) -> tuple[dict[str, str], str]:
    """Jira's "field: message" errors (joined by "; " in the error's detail) for the form's
    elements, and what is left for a general error."""
    known = set(names)
    errors: dict[str, str] = {}
    rest: list[str] = []
    for part in detail.split("; "):
        name, sep, message = part.partition(": ")
        if sep and name in known:
            errors[name] = message
        elif part.strip():
            rest.append(part)
    return errors, "; ".join(rest)


__all__ = [
    "SUMMARY_MAX",
    "TEXT_FIELD_MAX",
    "CreatePlan",
    "errors_by_field",
    "field_value",
    "plan_create_form",
]
