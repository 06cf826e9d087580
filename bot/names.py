"""The names a subscription or a command may use (events, field filter keys and their values,
inclusions, project keys, subscription names, Jira instances, roles), and the one check of each
that every entry point shares (the config file, the environment, the dialog, the one-line form,
a command's `--instance`, `/jira connect`, `/jira instance`), with the same sentence and
did-you-mean. Pure, and imports nothing of the bot's, so that bot.config (which the Jira client
imports) can check its subscriptions with it; bot.routing.vocabulary re-exports it for the chat
forms."""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal, get_args

# -- roles ---------------------------------------------------------------------------------------

# The Mattermost roles a setting may require (`commands.subscription_role`,
# `change_gate.cancel_role`), lowest first; the settings' one type, so that a misspelt role gets
# the same sentence and did-you-mean (bot.config) wherever it is written.
Role = Literal["users", "channel_admin", "team_admin", "system_admin"]
ROLE_CHOICES: tuple[str, ...] = get_args(Role)

# -- events --------------------------------------------------------------------------------------

# The event vocabulary of bot.jira.events (a test keeps them equal), in the order people read it
# (the plugin's subscription modal order). Spelled out here because bot.config may not import
# bot.jira (the Jira client imports bot.config).
EVENT_CHOICES: tuple[str, ...] = (
    "event_created",
    "event_updated_any",
    "event_updated_status",
    "event_updated_resolved",
    "event_updated_reopened",
    "event_updated_assignee",
    "event_updated_reporter",
    "event_updated_priority",
    "event_updated_summary",
    "event_updated_description",
    "event_updated_labels",
    "event_updated_components",
    "event_updated_fix_version",
    "event_updated_affects_version",
    "event_updated_issue_type",
    "event_updated_sprint",
    "event_updated_rank",
    "event_updated_attachment",
    "event_created_comment",
    "event_updated_comment",
    "event_deleted_comment",
    "event_deleted",
    "event_deleted_unresolved",
)
CUSTOM_FIELD_EVENT_HINT = "event_updated_customfield_NNNNN"
CUSTOM_FIELD_EVENT = re.compile(r"event_updated_customfield_\d+")


def canonical_events(names: Iterable[str]) -> tuple[str, ...]:
    """Event names as stored: trimmed, lower-cased (as the one-line form reads them), each once."""
    return tuple(dict.fromkeys(n.strip().lower() for n in names if n.strip()))


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


# -- field filter keys ---------------------------------------------------------------------------

# The field ids a field filter may name: those the matcher reads from every issue (the standard
# fields of bot/jira/events.py `_snapshot`), in the order people read them. Custom fields are
# `customfield_<digits>`. Keys are compared case-insensitively, as the plugin and the matcher do.
FIELD_KEY_CHOICES: tuple[str, ...] = (
    "priority",
    "status",
    "statusCategory",
    "resolution",
    "issuetype",
    "labels",
    "components",
    "fixVersions",
    "versions",
    "assignee",
    "reporter",
    "creator",
    "security",
    "parent",
    "duedate",
    "created",
    "updated",
    "resolutiondate",
)
CUSTOM_FIELD_KEY_HINT = "customfield_NNNNN"
CUSTOM_FIELD_KEY = re.compile(r"customfield_(\d+)", re.IGNORECASE)
# Accepted besides the choices: hand-written configurations name the security level so.
_FIELD_KEY_SYNONYMS = {"securitylevel": "securitylevel"}
_FIELD_KEYS = {k.lower(): k for k in FIELD_KEY_CHOICES} | _FIELD_KEY_SYNONYMS
# Spellings people write for a field (its JQL name, its label, a singular), lower-cased.
_FIELD_KEY_GUESSES = {
    "fixversion": "fixVersions",
    "fix_version": "fixVersions",
    "fix_versions": "fixVersions",
    "affectsversion": "versions",
    "affectsversions": "versions",
    "affectedversion": "versions",
    "affectedversions": "versions",
    "affects_versions": "versions",
    "version": "versions",
    "component": "components",
    "label": "labels",
    "type": "issuetype",
    "issue_type": "issuetype",
    "issuetypes": "issuetype",
    "security_level": "security",
    "status_category": "statusCategory",
    "due": "duedate",
    "due_date": "duedate",
    "resolved": "resolutiondate",
}
# Filters of the Mattermost Jira plugin whose values come from the plugin's own state (comment
# visibility groups, team field lookups): the bot has no such values, so a filter on them would
# silently never match.
_PLUGIN_ONLY_FIELD_KEYS = {"commentvisibility": "commentVisibility", "teamfield": "teamField"}
# Fields that are custom fields on Jira Cloud, named by their label.
_CUSTOM_ON_CLOUD = {"sprint", "epic", "epiclink", "epic_link", "rank", "team", "storypoints", "story_points"}


def canonical_field_key(key: str) -> str | None:
    """The field id as the matcher knows it (`FIXVERSIONS` -> `fixVersions`), None when unknown."""
    key = key.strip()
    custom = CUSTOM_FIELD_KEY.fullmatch(key)
    if custom:
        return f"customfield_{custom.group(1)}"
    return _FIELD_KEYS.get(key.lower())


def _field_key_hint(key: str) -> str:
    lowered = key.lower()
    if lowered in _PLUGIN_ONLY_FIELD_KEYS:
        return "a filter of the Mattermost Jira plugin that this bot cannot evaluate"
    digits = re.fullmatch(r"(?:cf\[(\d+)\]|(\d+))", lowered)
    if digits:
        return f"did you mean `customfield_{digits.group(1) or digits.group(2)}`?"
    if lowered.startswith("customfield"):
        return "a custom field id is `customfield_` and digits, such as `customfield_10072`"
    if lowered.replace(" ", "") in _CUSTOM_ON_CLOUD:
        return "a custom field: use its id, such as `customfield_10020`"
    guess = _FIELD_KEY_GUESSES.get(lowered)
    if guess is None:
        close = difflib.get_close_matches(lowered, list(_FIELD_KEYS), n=1, cutoff=0.75)
        guess = _FIELD_KEYS[close[0]] if close else None
    return f"did you mean `{guess}`?" if guess else ""


def unknown_field_keys(keys: Iterable[str]) -> str | None:
    """None when every key is a field id a field filter can use; else the sentence naming the
    unknown ones, each with its likely meaning, and the valid field ids."""
    unknown = list(dict.fromkeys(k.strip() for k in keys if canonical_field_key(k) is None))
    if not unknown:
        return None
    hints = []
    for key in unknown:
        hint = _field_key_hint(key)
        hints.append(f"`{key}` ({hint})" if hint else f"`{key}`")
    return (
        f"unknown field {', '.join(hints)}. Valid fields: {', '.join(FIELD_KEY_CHOICES)}, "
        f"and {CUSTOM_FIELD_KEY_HINT} for a custom field."
    )


# -- inclusions and project keys -----------------------------------------------------------------

# The values of bot.routing.model.Inclusion (a test keeps them equal).
INCLUSION_CHOICES: tuple[str, ...] = (
    "include_any",
    "include_all",
    "exclude_any",
    "empty",
    "include_or_empty",
)


def canonical_inclusion(text: str) -> str | None:
    """The inclusion as stored (`Include-Any` -> `include_any`), None when it is none."""
    value = text.strip().lower().replace("-", "_")
    return value if value in INCLUSION_CHOICES else None


def unknown_inclusion(text: str) -> str | None:
    """None when `text` is an inclusion; else the sentence with its likely meaning and the choices."""
    if canonical_inclusion(text) is not None:
        return None
    typed = text.strip().lower().replace("-", "_")
    close = difflib.get_close_matches(typed, INCLUSION_CHOICES, n=1, cutoff=0.6)
    hint = f" (did you mean `{close[0]}`?)" if close else ""
    return f"`{text.strip()}` is not an inclusion{hint}; use one of: {', '.join(INCLUSION_CHOICES)}."


def field_filter_values_problem(key: str, inclusion: str, values: Sequence[str]) -> str | None:
    """None when the values suit the inclusion; else why not (`empty` takes none, the others
    need some: without values the matcher never matches, and the subscription would stay
    silent)."""
    if inclusion == "empty" and values:
        return f"`{key} empty` takes no values."
    if inclusion != "empty" and not values:
        return f"`{key} {inclusion}` needs values, comma-separated."
    return None


PROJECT_KEY = re.compile(r"[A-Z][A-Z0-9_]*")


def bad_project_keys(keys: Iterable[str]) -> str | None:
    """None when every key (upper-cased, as Jira writes them) is shaped like a project key; else
    the sentence naming the others."""
    bad = [k for k in dict.fromkeys(k.strip().upper() for k in keys) if not PROJECT_KEY.fullmatch(k)]
    if not bad:
        return None
    named = ", ".join(f"`{k}`" for k in bad)
    verb = "is not a project key" if len(bad) == 1 else "are not project keys"
    return f"{named} {verb} (a key is letters and digits, such as `WEB`; separate keys with commas)."


# -- subscription names --------------------------------------------------------------------------

SUBSCRIPTION_NAME_MAX_CHARS = 64


def canonical_subscription_name(text: str) -> str:
    """The name as stored: runs of white space as one space, none at the ends."""
    return " ".join(text.split())


def bad_subscription_name(text: str) -> str | None:
    """None when `text` can name a subscription; else what is wrong with it."""
    name = canonical_subscription_name(text)
    if not name:
        return "give the subscription a name."
    if len(name) > SUBSCRIPTION_NAME_MAX_CHARS:
        return f"a name has at most {SUBSCRIPTION_NAME_MAX_CHARS} characters."
    return None


# -- Jira instances ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class KnownInstance:
    """A Jira instance as users name it: its base URL, or its alias."""

    url: str
    alias: str = ""

    @property
    def label(self) -> str:
        return f"`{self.alias}` ({self.url})" if self.alias else f"`{self.url}`"


def _host(url: str) -> str:
    return url.split("://", 1)[-1].rstrip("/").lower()


def find_known_instance(name: str, known: Sequence[KnownInstance]) -> KnownInstance | None:
    """The instance `name` names: its URL (case and a trailing slash aside) or its alias (case
    aside)."""
    folded = name.strip().rstrip("/").casefold()
    if not folded:
        return None
    for inst in known:
        if folded in (inst.url.rstrip("/").casefold(), inst.alias.casefold()):
            return inst
    return None


def unknown_instance(name: str, known: Sequence[KnownInstance]) -> str | None:
    """None when `name` names one of `known`; else the sentence with its likely meaning (the
    alias or URL nearest to it, case-insensitively; the URL of a bare host name) and the
    instances there are."""
    if find_known_instance(name, known) is not None:
        return None
    shown = name.strip()
    if not known:
        return f"There is no Jira instance `{shown}`: none is configured yet."
    by_spelling: dict[str, KnownInstance] = {}
    for inst in known:
        for spelling in (inst.alias.casefold(), inst.url.casefold().rstrip("/"), _host(inst.url)):
            if spelling:
                by_spelling.setdefault(spelling, inst)
    typed = shown.casefold().rstrip("/")
    guess = by_spelling.get(_host(typed))
    if guess is None:
        close = difflib.get_close_matches(typed, list(by_spelling), n=1, cutoff=0.6)
        guess = by_spelling[close[0]] if close else None
    hint = f" (did you mean `{guess.alias or guess.url}`?)" if guess else ""
    return f"There is no Jira instance `{shown}`{hint}. Known instances: {', '.join(i.label for i in known)}."
