"""The names a subscription may use (events, field filter keys, inclusions, project keys, Jira
instances), and the one check of each that every entry point shares (the config file, the
environment, the dialog, the one-line form, a command's `--instance`), with the same sentence and
did-you-mean. Pure: no I/O. The checks of names other than events live in bot.names (which the
config can import) and are re-exported here."""

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

# The other names' checks, re-exported so that the chat forms find every check here.
from bot.names import CUSTOM_FIELD_KEY_HINT as CUSTOM_FIELD_KEY_HINT
from bot.names import FIELD_KEY_CHOICES as FIELD_KEY_CHOICES
from bot.names import INCLUSION_CHOICES as INCLUSION_CHOICES
from bot.names import KnownInstance as KnownInstance
from bot.names import bad_project_keys as bad_project_keys
from bot.names import canonical_field_key as canonical_field_key
from bot.names import canonical_inclusion as canonical_inclusion
from bot.names import find_known_instance as find_known_instance
from bot.names import unknown_field_keys as unknown_field_keys
from bot.names import unknown_inclusion as unknown_inclusion
from bot.names import unknown_instance as unknown_instance

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
