"""The event names a subscription may use, and the one check of them that every entry point
shares (the config file, the environment, the dialog, the one-line form), with the same
did-you-mean. Pure: no I/O."""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable

from bot.jira.events import (
    EVENT_CREATED,
    EVENT_CREATED_COMMENT,
    EVENT_DELETED,
    EVENT_DELETED_COMMENT,
    EVENT_DELETED_UNRESOLVED,
    EVENT_UPDATED_AFFECTS_VERSION,
    EVENT_UPDATED_ANY,
    EVENT_UPDATED_ASSIGNEE,
    EVENT_UPDATED_ATTACHMENT,
    EVENT_UPDATED_COMMENT,
    EVENT_UPDATED_COMPONENTS,
    EVENT_UPDATED_DESCRIPTION,
    EVENT_UPDATED_FIX_VERSION,
    EVENT_UPDATED_ISSUE_TYPE,
    EVENT_UPDATED_LABELS,
    EVENT_UPDATED_PRIORITY,
    EVENT_UPDATED_RANK,
    EVENT_UPDATED_REOPENED,
    EVENT_UPDATED_REPORTER,
    EVENT_UPDATED_RESOLVED,
    EVENT_UPDATED_SPRINT,
    EVENT_UPDATED_STATUS,
    EVENT_UPDATED_SUMMARY,
)

# The event vocabulary in the order people read it (the plugin's subscription modal order).
EVENT_CHOICES: tuple[str, ...] = (
    EVENT_CREATED,
    EVENT_UPDATED_ANY,
    EVENT_UPDATED_STATUS,
    EVENT_UPDATED_RESOLVED,
    EVENT_UPDATED_REOPENED,
    EVENT_UPDATED_ASSIGNEE,
    EVENT_UPDATED_REPORTER,
    EVENT_UPDATED_PRIORITY,
    EVENT_UPDATED_SUMMARY,
    EVENT_UPDATED_DESCRIPTION,
    EVENT_UPDATED_LABELS,
    EVENT_UPDATED_COMPONENTS,
    EVENT_UPDATED_FIX_VERSION,
    EVENT_UPDATED_AFFECTS_VERSION,
    EVENT_UPDATED_ISSUE_TYPE,
    EVENT_UPDATED_SPRINT,
    EVENT_UPDATED_RANK,
    EVENT_UPDATED_ATTACHMENT,
    EVENT_CREATED_COMMENT,
    EVENT_UPDATED_COMMENT,
    EVENT_DELETED_COMMENT,
    EVENT_DELETED,
    EVENT_DELETED_UNRESOLVED,
)
CUSTOM_FIELD_EVENT_HINT = "event_updated_customfield_NNNNN"
CUSTOM_FIELD_EVENT = re.compile(r"event_updated_customfield_\d+")


def suggest_event(name: str) -> str | None:
    """The event a mistyped name most likely meant: the prefix left out, or a near spelling."""
    prefixed = "event_" + name.removeprefix("event_")
    if prefixed in EVENT_CHOICES:
        return prefixed
    close = difflib.get_close_matches(prefixed, EVENT_CHOICES, n=1, cutoff=0.85)
    return close[0] if close else None


def unknown_events(names: Iterable[str]) -> str | None:
    """None when every name is an event; else the sentence naming the unknown ones, each with
    its likely meaning, and the valid events."""
    unknown = [n for n in names if n not in EVENT_CHOICES and not CUSTOM_FIELD_EVENT.fullmatch(n)]
    if not unknown:
        return None
    hints = []
    for name in unknown:
        guess = suggest_event(name)
        hints.append(f"`{name}` (did you mean `{guess}`?)" if guess else f"`{name}`")
    return (
        f"unknown event {', '.join(hints)}. Valid events: {', '.join(EVENT_CHOICES)}, "
        f"and {CUSTOM_FIELD_EVENT_HINT} for a custom field."
    )
