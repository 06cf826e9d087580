"""Subscriptions written as text: the one-line form of `/jira subscribe add|edit` and the fields of
the subscription dialog, parsed and validated here, and formatted back. Pure: no I/O.

The one-line form is a name followed by `key=value` options:

    "Bugs in WEB" projects=WEB,API events=event_created,event_updated_status issue_types=Bug
        fields="priority include_any High,Highest; labels exclude_any wontfix"

Lists are comma-separated; a value with spaces is quoted. `fields` holds field filters
(`key inclusion values`, values comma-separated) separated by `;` (or newlines in the dialog).
`jql` holds a JQL filter (`jql='labels = customer AND status = "In Progress"'`), compiled here so
that a broken one is refused with its column; `jql=""` removes it. `jql_check=jira` lets Jira
check the clauses the bot cannot answer (`check_jql`, with the instance's service account).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from bot.jira.events import EVENT_CREATED, EVENT_UPDATED_STATUS
from bot.routing.jql import JiraNames, JqlError, NamesUnknown
from bot.routing.matcher import compile_subscription_jql
from bot.routing.model import (
    JQL_CHECK_JIRA,
    JQL_CHECK_LOCAL,
    JQL_CHECKS,
    FieldFilter,
    Inclusion,
    Subscription,
    SubscriptionFilters,
)
from bot.routing.vocabulary import CUSTOM_FIELD_EVENT_HINT as CUSTOM_FIELD_EVENT_HINT
from bot.routing.vocabulary import EVENT_CHOICES as EVENT_CHOICES
from bot.routing.vocabulary import (
    SUBSCRIPTION_NAME_MAX_CHARS,
    bad_project_keys,
    bad_subscription_name,
    canonical_field_key,
    canonical_inclusion,
    canonical_subscription_name,
    field_filter_values_problem,
    unknown_events,
    unknown_field_keys,
    unknown_inclusion,
)

# Option keys of the one-line form, with the spellings people type for them.
OPTION_KEYS: tuple[str, ...] = (
    "name",
    "projects",
    "events",
    "issue_types",
    "fields",
    "jql",
    "jql_check",
    "instance",
)
_KEY_ALIASES = {
    "name": "name",
    "projects": "projects",
    "project": "projects",
    "events": "events",
    "event": "events",
    "issue_types": "issue_types",
    "issue_type": "issue_types",
    "issuetypes": "issue_types",
    "types": "issue_types",
    "fields": "fields",
    "field": "fields",
    "jql": "jql",
    "jql_check": "jql_check",
    "instance": "instance",
    "jqlcheck": "jql_check",
}
_OPTION_LIKE = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")

# Opening quote -> the quotes that close it (phone keyboards type typographic quotes).
_QUOTES = {'"': '"”', "'": "'’", "“": '”"', "”": '”"', "‘": "’'", "’": "’'"}

NAME_MAX_CHARS = SUBSCRIPTION_NAME_MAX_CHARS


class SubscriptionTextError(ValueError):
    """Input that is not a valid subscription; `field` names the option or dialog field."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem

    @property
    def message(self) -> str:
        return f"`{self.field}`: {self.problem}"


@dataclass(frozen=True, slots=True)
class SubscriptionDraft:
    """What the one-line form said. `None` means "not given", which `edit` keeps unchanged."""

    name: str = ""
    rename: str | None = None
    projects: tuple[str, ...] | None = None
    issue_types: tuple[str, ...] | None = None
    events: tuple[str, ...] | None = None
    fields: tuple[FieldFilter, ...] | None = None
    jql: str | None = None  # "" removes the JQL filter
    jql_check: str | None = None  # JQL_CHECK_LOCAL or JQL_CHECK_JIRA
    # `instance=` (`add` only; the same as `--instance`): checked where the instances are known.
    instance: str | None = None

    @property
    def has_options(self) -> bool:
        return any(
            v is not None
            for v in (
                self.rename,
                self.projects,
                self.issue_types,
                self.events,
                self.fields,
                self.jql,
                self.jql_check,
            )
        )

    def apply(self, filters: SubscriptionFilters | None = None) -> SubscriptionFilters:
        """The filters with the given options replacing those of `filters`."""
        base = filters or SubscriptionFilters()
        return SubscriptionFilters(
            events=self.events if self.events is not None else base.events,
            projects=self.projects if self.projects is not None else base.projects,
            issue_types=self.issue_types if self.issue_types is not None else base.issue_types,
            fields=self.fields if self.fields is not None else base.fields,
            jql=(self.jql or None) if self.jql is not None else base.jql,
            jql_check=self.jql_check if self.jql_check is not None else base.jql_check,
        )


# -- one value each ------------------------------------------------------------------------------


def _unique(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(values))


def parse_name(text: str, field: str = "name") -> str:
    problem = bad_subscription_name(text)
    if problem:
        raise SubscriptionTextError(field, problem)
    return canonical_subscription_name(text)


def parse_projects(text: str, field: str = "projects") -> tuple[str, ...]:
    """Project keys, separated by commas or spaces; upper-cased as Jira writes them."""
    keys = _unique(k.upper() for k in re.split(r"[\s,;]+", text) if k)
    problem = bad_project_keys(keys)
    if problem:
        raise SubscriptionTextError(field, problem)
    return keys


def parse_issue_types(text: str, field: str = "issue_types") -> tuple[str, ...]:
    """Issue type names or ids, comma-separated (names may contain spaces: `New Feature`)."""
    return _unique(" ".join(t.split()) for t in re.split(r"[,;\n]", text) if t.strip())


def parse_events(text: str, field: str = "events") -> tuple[str, ...]:
    """Event names, separated by commas or spaces, checked against the event vocabulary."""
    names = _unique(n.lower() for n in re.split(r"[\s,;]+", text) if n)
    problem = unknown_events(names)
    if problem:
        raise SubscriptionTextError(field, problem)
    return names


def parse_field_filter(text: str, field: str = "fields") -> FieldFilter:
    """`key inclusion values`, e.g. `priority include_any High,Highest` or `fixVersions empty`.
    The key and the inclusion are checked as the config file checks them, and stored in their
    canonical spelling (`fixversions` -> `fixVersions`)."""
    parts = text.strip().split(None, 2)
    inclusions = ", ".join(i.value for i in Inclusion)
    if len(parts) < 2:
        raise SubscriptionTextError(
            field,
            f"`{text.strip()}` needs a field, an inclusion and values, such as "
            f"`priority include_any High,Highest` (inclusions: {inclusions}).",
        )
    key = canonical_field_key(parts[0])
    if key is None:
        raise SubscriptionTextError(field, unknown_field_keys([parts[0]]) or "")
    inclusion_text = canonical_inclusion(parts[1])
    if inclusion_text is None:
        raise SubscriptionTextError(field, unknown_inclusion(parts[1]) or "")
    inclusion = Inclusion(inclusion_text)
    values = _unique(v.strip() for v in (parts[2] if len(parts) > 2 else "").split(",") if v.strip())
    problem = field_filter_values_problem(key, inclusion.value, values)
    if problem:
        raise SubscriptionTextError(field, problem)
    return FieldFilter(key=key, inclusion=inclusion, values=values)


def parse_field_filters(text: str, field: str = "fields") -> tuple[FieldFilter, ...]:
    """Field filters, one per line or separated by `;`."""
    return tuple(parse_field_filter(line, field) for line in re.split(r"[;\n]", text) if line.strip())


def parse_jql(text: str, field: str = "jql") -> str:
    """JQL as typed ("" when empty), refused with the column of the problem when broken. Whether
    the bot can answer every clause is `check_jql`'s question, once the instance is known."""
    jql = text.strip()
    try:
        compile_subscription_jql(jql, jira_check=True)
    except NamesUnknown:
        pass  # the instance's priority order may settle it (check_jql)
    except JqlError as e:
        raise SubscriptionTextError(field, f"{e}.") from None
    return jql


def parse_jql_check(text: str, field: str = "jql_check") -> str:
    """Who answers the JQL clauses the bot cannot: `local` (nobody: they are refused) or `jira`."""
    value = text.strip().lower() or JQL_CHECK_LOCAL
    if value not in JQL_CHECKS:
        raise SubscriptionTextError(
            field,
            f"`{text.strip()}` is not a choice; use `{JQL_CHECK_JIRA}` (Jira checks the clauses the "
            f"bot cannot answer, with the instance's service account) or `{JQL_CHECK_LOCAL}`.",
        )
    return value


def check_jql(filters: SubscriptionFilters, *, names: JiraNames | None, service_account: bool) -> None:
    """The subscription's JQL can be evaluated on the instance: by the bot alone, or with
    `jql_check: jira` by Jira for what the bot cannot answer, which needs the service account."""
    jira = filters.jql_check == JQL_CHECK_JIRA
    if jira and not service_account:
        raise SubscriptionTextError(
            "jql_check",
            f"`{JQL_CHECK_JIRA}` asks Jira with the Jira instance's service account, and this "
            "instance has none; ask a bot administrator to configure one, or remove the clauses "
            "the bot cannot answer.",
        )
    try:
        compile_subscription_jql(filters.jql, jira_check=jira, names=names, offer_jira=service_account)
    except JqlError as e:
        raise SubscriptionTextError("jql", f"{e}.") from None


def check_complete(filters: SubscriptionFilters) -> None:
    """A subscription needs projects (or JQL) and events to ever match anything."""
    if not filters.projects and not filters.jql:
        raise SubscriptionTextError(
            "projects", "name at least one project key, such as `projects=WEB` (or give `jql=…`)."
        )
    if not filters.events:
        raise SubscriptionTextError(
            "events", f"name at least one event, such as `events={EVENT_CREATED},{EVENT_UPDATED_STATUS}`."
        )


# -- the one-line form ---------------------------------------------------------------------------


def _quoted_value(words: Sequence[str], i: int, key: str, value: str) -> tuple[str, int]:
    """A value that opens a quote takes the following words up to the closing quote (the command
    tokenizer splits `fields="priority include_any High"` into three words). Returns the value
    and the index of the next word."""
    closers = _QUOTES.get(value[:1])
    if closers is None:
        return value, i + 1
    rest = value[1:]
    if rest and rest[-1] in closers:
        return rest[:-1], i + 1
    parts = [rest]
    j = i + 1
    while j < len(words):
        word = words[j]
        if word and word[-1] in closers:
            parts.append(word[:-1])
            return " ".join(p for p in parts if p), j + 1
        parts.append(word)
        j += 1
    raise SubscriptionTextError(key, f"the quote opened after `{key}=` is not closed.")


def parse_command(words: Sequence[str]) -> SubscriptionDraft:
    """The words after `subscribe add` or `subscribe edit` (as the command tokenizer splits them):
    the name, then `key=value` options. Options given twice are merged."""
    name_words: list[str] = []
    values: dict[str, list[str]] = {}
    i = 0
    while i < len(words):
        word = words[i]
        head, eq, value = word.partition("=")
        key = _KEY_ALIASES.get(head.lower()) if eq else None
        if key is None:
            if eq and _OPTION_LIKE.fullmatch(head):
                raise SubscriptionTextError(
                    head, f"unknown option; the options are {', '.join(OPTION_KEYS)}."
                )
            if values:
                raise SubscriptionTextError(
                    "name",
                    f"`{word}` comes after the options: write the name first, and quote values with spaces.",
                )
            name_words.append(word)
            i += 1
            continue
        value, i = _quoted_value(words, i, key, value)
        values.setdefault(key, []).append(value)

    def joined(key: str, sep: str) -> str | None:
        return sep.join(values[key]) if key in values else None

    renamed = values.get("name")
    projects, events = joined("projects", ","), joined("events", ",")
    issue_types, fields = joined("issue_types", ","), joined("fields", ";")
    jql = values["jql"][-1] if "jql" in values else None
    jql_check = values["jql_check"][-1] if "jql_check" in values else None
    return SubscriptionDraft(
        name=" ".join(" ".join(name_words).split()),
        rename=parse_name(renamed[-1]) if renamed else None,
        projects=parse_projects(projects) if projects is not None else None,
        issue_types=parse_issue_types(issue_types) if issue_types is not None else None,
        events=parse_events(events) if events is not None else None,
        fields=parse_field_filters(fields) if fields is not None else None,
        jql=parse_jql(jql) if jql is not None else None,
        jql_check=parse_jql_check(jql_check) if jql_check is not None else None,
        instance=values["instance"][-1].strip() if "instance" in values else None,
    )


def _quote(value: str) -> str:
    if value and not any(c.isspace() or c in "\"'=" for c in value):
        return value
    return f"'{value}'" if '"' in value else f'"{value}"'


def format_field_filter(f: FieldFilter) -> str:
    values = ",".join(f.values)
    return f"{f.key} {f.inclusion.value}" + (f" {values}" if values else "")


def format_field_filters(fields: Iterable[FieldFilter], separator: str = "; ") -> str:
    return separator.join(format_field_filter(f) for f in fields)


def event_order(events: Iterable[str]) -> list[str]:
    """Events in vocabulary order, custom field events last."""
    rank = {e: i for i, e in enumerate(EVENT_CHOICES)}
    return sorted(events, key=lambda e: (rank.get(e, len(rank)), e))


def format_command(sub: Subscription) -> str:
    """The subscription in the one-line form (`parse_command` reads it back)."""
    f = sub.filters
    parts = [_quote(sub.name)]
    if f.projects:
        parts.append("projects=" + ",".join(sorted(f.projects)))
    if f.events:
        parts.append("events=" + ",".join(event_order(f.events)))
    if f.issue_types:
        parts.append("issue_types=" + _quote(",".join(sorted(f.issue_types))))
    if f.fields:
        parts.append("fields=" + _quote(format_field_filters(f.fields)))
    if f.jql:
        parts.append("jql=" + _quote(f.jql))
    if f.jql_check != JQL_CHECK_LOCAL:
        parts.append(f"jql_check={f.jql_check}")
    return " ".join(parts)
