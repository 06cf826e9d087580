"""Which subscriptions an event reaches, with the Mattermost Jira plugin's filter semantics.

Differences from the plugin, on purpose:
- filter values may name ids or names (names compared case-insensitively); the plugin compares
  ids only, which made hand-written filters such as `priority include_any [High]` silently dead;
- a subscription without projects matches nothing (the plugin refuses to save one; its matcher
  would let it match every project, which is never what anyone wants in a channel);
- at most one subscription per channel is returned, so a channel never gets the same event twice.

The security-level rule is the plugin's default (`SecurityLevelEmptyForJiraSubscriptions`): an
issue with a security level reaches only subscriptions that filter on the security field, and an
`exclude_any` security filter means "no security level" (excluding some levels would otherwise let
every other secured issue through).

An event whose snapshot is partial (`IssueSnapshot.fields_partial`: Cloud's standalone comment
events carry a handful of fields and no security level) matches nothing: its security level and
most filtered fields are unknown. The plugin fetches the full issue before matching such events;
callers here must do the same (and build the event from the full issue) to route them.

A subscription's JQL (`filters.jql`, see `bot/routing/jql/`) is compiled once, when the index is
built, and ANDed with its other filters. With JQL, `projects` is optional: the index then files the
subscription under the projects of the JQL's top-level `project = X` / `project IN (...)`, or, when
the JQL names none, under every project of its instance. JQL that does not compile, or that has
clauses only Jira can answer, makes the subscription match nothing (saving refuses both) unless the
subscription chose `jql_check: jira`: then its local clauses decide when they can (`False AND ?`),
and `jira_questions` lists the JQL Jira must answer for the event, whose answers `match` takes.
Custom field names and the priority order come from the instance's `JiraNames`. Relative
dates (`-7d`, `startOfDay()`) are evaluated at the event's time (the webhook's timestamp).
"""

from __future__ import annotations

import heapq
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from bot.jira.events import EVENT_UPDATED_ANY, IssueEvent, NamedValue
from bot.routing.jql import CompiledJql, IssueValues, JiraNames, JqlError, NamesUnknown, compile_jql
from bot.routing.jql.dates import parse_field_date
from bot.routing.model import (
    JQL_CHECK_JIRA,
    SECURITY_FIELD_KEYS,
    FieldFilter,
    Inclusion,
    Subscription,
    SubscriptionFilters,
)

_UPDATED_PREFIX = "event_updated"
_COMMENT_SUFFIX = "comment"


def reaches_updated_any(kind: str) -> bool:
    """Whether `event_updated_any` covers this kind: every update and comment kind, as the plugin has it."""
    return kind.startswith(_UPDATED_PREFIX) or kind.endswith(_COMMENT_SUFFIX)


def normalise_instance_id(instance_id: str) -> str:
    return instance_id.strip().rstrip("/")


@dataclass(frozen=True, slots=True)
class _Values:
    """A field's values on the issue, as the lookup sets filters are checked against."""

    ids: frozenset[str]
    names: frozenset[str]  # casefolded

    @property
    def empty(self) -> bool:
        return not self.ids and not self.names

    def hits(self, raw: str, folded: str) -> bool:
        return raw in self.ids or folded in self.names


_NO_VALUES = _Values(frozenset(), frozenset())


def _values_of(named: Iterable[NamedValue]) -> _Values:
    ids = frozenset(v.id for v in named if v.id)
    names = frozenset(v.name.casefold() for v in named if v.name)
    return _Values(ids, names) if ids or names else _NO_VALUES


@dataclass(frozen=True, slots=True)
class _CompiledField:
    key: str  # lower-cased; "security" for both security spellings
    inclusion: Inclusion
    raw: frozenset[str]
    folded: frozenset[str]
    pairs: tuple[tuple[str, str], ...]  # (raw, casefolded) per value, for include_all

    @classmethod
    def of(cls, f: FieldFilter) -> _CompiledField:
        key = f.key.lower()
        inclusion = f.inclusion
        if key in SECURITY_FIELD_KEYS:
            key = "security"
            if inclusion is Inclusion.EXCLUDE_ANY:
                inclusion = Inclusion.EMPTY
        pairs = tuple((v, v.casefold()) for v in f.values)
        return cls(key, inclusion, frozenset(p[0] for p in pairs), frozenset(p[1] for p in pairs), pairs)

    @property
    def broken(self) -> bool:
        # The plugin drops the whole subscription when a filter other than "empty" has no values.
        return not self.pairs and self.inclusion is not Inclusion.EMPTY

    def accepts(self, value: _Values) -> bool:
        inclusion = self.inclusion
        if inclusion is Inclusion.EMPTY:
            return value.empty
        any_hit = not self.raw.isdisjoint(value.ids) or not self.folded.isdisjoint(value.names)
        if inclusion is Inclusion.INCLUDE_ANY:
            return any_hit
        if inclusion is Inclusion.EXCLUDE_ANY:
            return not any_hit
        if inclusion is Inclusion.INCLUDE_OR_EMPTY:
            return any_hit or value.empty
        # INCLUDE_ALL: every filter value must be on the issue.
        return all(value.hits(raw, folded) for raw, folded in self.pairs)


class _IssueView:
    """Per-event lookups, computed lazily and at most once however many candidates need them."""

    __slots__ = ("_cache", "_event", "_fields")

    def __init__(self, event: IssueEvent) -> None:
        self._event = event
        self._fields: dict[str, tuple[NamedValue, ...]] | None = None
        self._cache: dict[str, _Values] = {}

    def field(self, key: str) -> _Values:
        """The values of a field, by lower-cased field id ("security" for the security level)."""
        values = self._cache.get(key)
        if values is None:
            values = self._cache[key] = _values_of(self._named(key))
        return values

    @property
    def security(self) -> _Values:
        return self.field("security")

    def _named(self, key: str) -> Sequence[NamedValue]:
        if self._fields is None:
            # The plugin looks fields up case-insensitively (`fixversions` finds fixVersions).
            self._fields = {k.lower(): v for k, v in self._event.issue.field_values.items()}
        issue = self._event.issue
        if key == "security":
            for alias in SECURITY_FIELD_KEYS:
                if self._fields.get(alias):
                    return self._fields[alias]
            return (issue.security_level,) if issue.security_level is not None else ()
        if key in self._fields:
            return self._fields[key]
        # Fall back on the snapshot's own attributes for the standard fields it always carries.
        if key == "priority" and issue.priority is not None:
            return (issue.priority,)
        if key == "status" and issue.status is not None:
            return (issue.status,)
        if key == "labels":
            return tuple(NamedValue(id=label, name=label) for label in issue.labels)
        return ()


class _Check:
    """The filters of a subscription other than events, instance and project, prepared for matching.

    Shared by every subscription with the same issue types and field filters (many have none).
    """

    __slots__ = ("broken", "fields", "filters_security", "issue_type_folded", "issue_type_raw")

    def __init__(
        self, issue_types: frozenset[str], fields: Iterable[FieldFilter], jql_security: bool = False
    ) -> None:
        compiled = tuple(_CompiledField.of(f) for f in fields)
        self.issue_type_raw = issue_types
        self.issue_type_folded = frozenset(t.casefold() for t in issue_types)
        self.fields = compiled
        self.broken = any(f.broken for f in compiled)
        # A JQL clause on `level` / `security` counts as a security filter too.
        self.filters_security = jql_security or any(f.key == "security" for f in compiled)

    def accepts(self, event: IssueEvent, view: _IssueView) -> bool:
        """Every filter but events, instance and project, which the index has already applied."""
        if self.broken:
            return False
        if self.issue_type_raw:
            issue_type = event.issue.issue_type
            if issue_type.id not in self.issue_type_raw and (
                issue_type.name.casefold() not in self.issue_type_folded
            ):
                return False
        if not self.filters_security and not view.security.empty:
            return False
        return all(f.accepts(view.field(f.key)) for f in self.fields)


def _project_key(event: IssueEvent) -> str:
    key = event.issue.project.name
    if not key:
        # The issue key carries the project key when the payload's project object is missing.
        key = event.issue.key.rpartition("-")[0]
    return key.upper()


def _rank(entry: _Entry) -> int:
    return entry.rank


def _event_kinds_match(wanted: frozenset[str], kinds: Iterable[str], any_update: bool) -> bool:
    if not wanted.isdisjoint(kinds):
        return True
    return any_update and EVENT_UPDATED_ANY in wanted


def event_time(event: IssueEvent) -> datetime:
    """When the event happened, for JQL's relative dates: the webhook's timestamp, else the
    issue's `updated`, else the epoch (read from the event, never from a clock)."""
    if event.timestamp_ms is not None:
        return datetime.fromtimestamp(event.timestamp_ms / 1000, UTC)
    updated = event.issue.field_values.get("updated")
    found = parse_field_date(updated[0].name) if updated else None
    return found or datetime(1970, 1, 1, tzinfo=UTC)


def compile_subscription_jql(
    jql: str | None,
    *,
    jira_check: bool = False,
    names: JiraNames | None = None,
    offer_jira: bool = True,
) -> CompiledJql | None:
    """The subscription's JQL compiled; None without JQL. Raises JqlError when the JQL is broken
    or, unless `jira_check` (the subscription's `jql_check: jira`), has clauses only Jira can
    answer (naming the first; `offer_jira`: saying Jira could check it). `names`: the instance's
    custom field names and priority order."""
    if jql is None or not jql.strip():
        return None
    compiled = compile_jql(
        jql,
        custom_field_names=names.custom_fields if names else None,
        priority_order=names.priorities if names and names.priorities else None,
    )
    if compiled.remote_clauses and not jira_check:
        remote = compiled.remote_clauses[0]
        offer = (
            f", or let Jira check it (`{JQL_CHECK_JIRA_OPTION}`, with the instance's service account)"
            if offer_jira
            else ""
        )
        rewrite = "rewrite it with fields of the issue"
        if remote.unknown_field:
            # Custom field names come from Jira's field list, read with the service account.
            rewrite = "name a custom field by its id (`cf[10072]`)"
            if not offer_jira:
                rewrite += (
                    ": names are learnt from Jira with the instance's service account, and this "
                    "instance has none"
                )
        raise JqlError(
            f"`{remote.clause}` cannot be answered by the bot ({remote.reason}); remove it or "
            f"{rewrite}{offer}",
            remote.column,
        )
    return compiled


JQL_CHECK_JIRA_OPTION = f"jql_check={JQL_CHECK_JIRA}"


def needs_names(jql: str, names: JiraNames | None = None, jira_check: bool = False) -> bool:
    """Whether the JQL fails, has remote clauses or reads a field in part only for want of names
    Jira could give (a custom field name, the priority order, Server's Epic Link field): worth
    learning them again before refusing it."""
    try:
        compiled = compile_subscription_jql(jql, jira_check=True, names=names)
    except NamesUnknown:
        return True
    except JqlError:
        return False
    return compiled is not None and (
        compiled.partly_known or any(r.unknown_field for r in compiled.remote_clauses)
    )


def subscription_matches(
    sub: Subscription,
    event: IssueEvent,
    now: datetime | None = None,
    *,
    names: JiraNames | None = None,
    jira: bool | None = None,
) -> bool:
    """Whether one subscription accepts the event (the instance is not checked here). `jira`:
    Jira's answer for its JQL when that has remote clauses (None: not asked, no match)."""
    if event.issue.fields_partial:
        return False
    try:
        jql = compile_subscription_jql(
            sub.filters.jql, jira_check=sub.filters.jql_check == JQL_CHECK_JIRA, names=names
        )
    except JqlError:
        return False
    project = _project_key(event)
    if not project:
        return False
    if jql is None and project not in sub.filters.projects:
        return False  # without JQL, a subscription without projects matches nothing
    projects = sub.filters.projects or (jql.projects if jql is not None else None)
    if projects is not None and project not in projects:
        return False
    any_update = any(reaches_updated_any(k) for k in event.kinds)
    if not _event_kinds_match(sub.filters.events, event.kinds, any_update):
        return False
    check = _Check(sub.filters.issue_types, sub.filters.fields, jql is not None and jql.filters_security)
    if not check.accepts(event, _IssueView(event)):
        return False
    if jql is None:
        return True
    verdict = jql.decide(event, now or event_time(event))
    return bool(jira) if verdict is None else verdict


class _Entry:
    """One subscription in the index: what matching needs, and enough to give the subscription
    back. Strings are interned and equal sets and filters shared, so 10,000 subscriptions take
    a few megabytes instead of the ~40 MB of their pydantic models."""

    __slots__ = (
        "channel_id",
        "check",
        "created_by",
        "events",
        "fields",
        "instance_id",
        "issue_types",
        "jql",
        "jql_check",
        "jql_compiled",
        "name",
        "projects",
        "rank",
        "sub_id",
    )

    def __init__(self, sub: Subscription, shared: _Shared, names: JiraNames | None = None) -> None:
        f = sub.filters
        self.rank = 0
        self.sub_id = sub.id
        self.name = sub.name
        self.channel_id = sys.intern(sub.channel_id)
        self.instance_id = sys.intern(sub.instance_id)
        self.created_by = sys.intern(sub.created_by)
        self.events = shared.strings(f.events)
        self.projects = shared.strings(f.projects)
        self.issue_types = shared.strings(f.issue_types)
        self.fields = shared.fields(f.fields)
        self.jql = f.jql
        self.jql_check = f.jql_check
        self.jql_compiled, jql_broken = shared.jql(
            f.jql, self.instance_id, f.jql_check == JQL_CHECK_JIRA, names
        )
        jql_security = self.jql_compiled is not None and self.jql_compiled.filters_security
        self.check = shared.check(self.issue_types, self.fields, jql_security, jql_broken)

    @property
    def index_projects(self) -> frozenset[str] | None:
        """The projects to file the entry under; None for every project of its instance."""
        if self.projects or self.jql_compiled is None:
            return self.projects
        return self.jql_compiled.projects

    def sort_key(self) -> tuple[str, str, str]:
        return (self.name.casefold(), self.sub_id, self.channel_id)

    def subscription(self) -> Subscription:
        """The subscription as given to the index (equal to it, field by field)."""
        filters = SubscriptionFilters.model_construct(
            events=self.events,
            projects=self.projects,
            issue_types=self.issue_types,
            fields=self.fields,
            jql=self.jql,
            jql_check=self.jql_check,
        )
        return Subscription.model_construct(
            id=self.sub_id,
            name=self.name,
            channel_id=self.channel_id,
            instance_id=self.instance_id,
            filters=filters,
            created_by=self.created_by,
        )


class _Shared:
    """Deduplicates what subscriptions have in common while an index is built."""

    def __init__(self) -> None:
        self._sets: dict[frozenset[str], frozenset[str]] = {}
        self._fields: dict[tuple[FieldFilter, ...], tuple[FieldFilter, ...]] = {}
        self._checks: dict[tuple[frozenset[str], tuple[FieldFilter, ...], bool, bool], _Check] = {}
        self._jql: dict[tuple[str, str, bool], tuple[CompiledJql | None, bool]] = {}
        # Instances whose JQL wants names learnt from Jira (see `needs_names`).
        self.names_wanted: set[str] = set()

    def strings(self, values: frozenset[str]) -> frozenset[str]:
        interned = frozenset(sys.intern(v) for v in values)
        return self._sets.setdefault(interned, interned)

    def fields(self, fields: tuple[FieldFilter, ...]) -> tuple[FieldFilter, ...]:
        return self._fields.setdefault(fields, fields)

    def check(
        self,
        issue_types: frozenset[str],
        fields: tuple[FieldFilter, ...],
        jql_security: bool = False,
        jql_broken: bool = False,
    ) -> _Check:
        key = (issue_types, fields, jql_security, jql_broken)
        check = self._checks.get(key)
        if check is None:
            check = self._checks[key] = _Check(issue_types, fields, jql_security)
            check.broken = check.broken or jql_broken
        return check

    def jql(
        self, text: str | None, instance: str = "", jira_check: bool = False, names: JiraNames | None = None
    ) -> tuple[CompiledJql | None, bool]:
        """(compiled JQL, broken): compiled once per distinct text, instance and check."""
        if text is None or not text.strip():
            return None, False
        key = (text, instance, jira_check)
        found = self._jql.get(key)
        if found is None:
            try:
                found = (compile_subscription_jql(text, jira_check=jira_check, names=names), False)
            except JqlError:
                found = (None, True)
            unsure = found[1] or (
                found[0] is not None and (bool(found[0].remote_clauses) or found[0].partly_known)
            )
            if (unsure or names is not None) and needs_names(text):
                self.names_wanted.add(normalise_instance_id(instance))
            self._jql[key] = found
        return found


# A project with more subscriptions than this gets them indexed by event kind as well.
_KIND_INDEX_FROM = 48


class _KindBucket:
    """A busy project's subscriptions, by event kind (each tuple in rank order)."""

    __slots__ = ("by_kind", "updated_any")

    def __init__(self, entries: Sequence[_Entry]) -> None:
        by_kind: dict[str, list[_Entry]] = {}
        updated_any: list[_Entry] = []
        for entry in entries:
            for kind in entry.events:
                if kind == EVENT_UPDATED_ANY:
                    updated_any.append(entry)
                else:
                    by_kind.setdefault(kind, []).append(entry)
        self.by_kind = {kind: tuple(found) for kind, found in by_kind.items()}
        self.updated_any = tuple(updated_any)

    def candidates(self, kinds: frozenset[str], any_update: bool) -> list[_Entry]:
        found: dict[int, _Entry] = {}
        for kind in kinds:
            for entry in self.by_kind.get(kind, ()):
                found[entry.rank] = entry
        if any_update:
            for entry in self.updated_any:
                found[entry.rank] = entry
        return [found[rank] for rank in sorted(found)]


_Bucket = tuple[_Entry, ...] | _KindBucket


class IndexBuilder:
    """Builds a SubscriptionIndex from subscriptions added one by one (they can be streamed
    from the database: only the compact entries are kept)."""

    def __init__(self, names: Mapping[str, JiraNames] | None = None) -> None:
        """`names`: per instance (normalised URL), what was learnt of it from Jira."""
        self._shared = _Shared()
        self._entries: list[_Entry] = []
        self._count = 0
        self._names = names or {}

    @property
    def names_wanted(self) -> set[str]:
        """Instances with JQL that names from Jira might make work (see `needs_names`)."""
        return self._shared.names_wanted

    def add(self, sub: Subscription) -> None:
        self._count += 1
        entry = _Entry(sub, self._shared, self._names.get(normalise_instance_id(sub.instance_id)))
        if entry.check.broken or not entry.events:
            return  # can never match: keep it out of every bucket
        self._entries.append(entry)

    def build(self) -> SubscriptionIndex:
        entries = sorted(self._entries, key=_Entry.sort_key)
        grouped: dict[tuple[str, str], list[_Entry]] = {}
        every_project: dict[str, list[_Entry]] = {}
        for rank, entry in enumerate(entries):
            entry.rank = rank
            instance = normalise_instance_id(entry.instance_id)
            projects = entry.index_projects
            if projects is None:
                every_project.setdefault(instance, []).append(entry)
                continue
            for project in projects:
                grouped.setdefault((instance, project.upper()), []).append(entry)
        buckets: dict[tuple[str, str], _Bucket] = {
            key: _KindBucket(found) if len(found) > _KIND_INDEX_FROM else tuple(found)
            for key, found in grouped.items()
        }
        remote = any(e.jql_compiled is not None and e.jql_compiled.remote_clauses for e in entries)
        return SubscriptionIndex(
            buckets, self._count, {key: _alike(found) for key, found in every_project.items()}, remote
        )


def _alike(entries: Sequence[_Entry]) -> tuple[tuple[_Entry, ...], ...]:
    """`entries` in groups that accept the same events (same kinds, shared check, shared
    compiled JQL), each in rank order: one test per group decides for all its entries, as when
    one JQL filter is subscribed in many channels."""
    groups: dict[tuple[int, int, int], list[_Entry]] = {}
    for entry in entries:
        key = (id(entry.events), id(entry.check), id(entry.jql_compiled))
        groups.setdefault(key, []).append(entry)
    return tuple(tuple(found) for found in groups.values())


class SubscriptionIndex:
    """An immutable index of subscriptions, keyed by (instance, project), and for projects with
    many subscriptions by event kind too.

    Build a new index whenever the subscriptions change; matching only looks at the subscriptions
    of the event's project (that name one of its kinds, or `event_updated_any`).
    """

    __slots__ = ("_buckets", "_count", "_every_project", "has_remote")

    def __init__(
        self,
        buckets: Mapping[tuple[str, str], _Bucket],
        count: int,
        every_project: Mapping[str, tuple[tuple[_Entry, ...], ...]] | None = None,
        has_remote: bool = False,
    ) -> None:
        self._buckets = buckets
        self._count = count
        # Per instance: JQL subscriptions that name no project the index could use, in groups
        # that accept alike (see `_alike`).
        self._every_project = every_project or {}
        # Whether some subscription's JQL has clauses Jira checks (`jql_check: jira`).
        self.has_remote = has_remote

    @classmethod
    def build(
        cls, subscriptions: Iterable[Subscription], names: Mapping[str, JiraNames] | None = None
    ) -> SubscriptionIndex:
        builder = IndexBuilder(names)
        for sub in subscriptions:
            builder.add(sub)
        return builder.build()

    def __len__(self) -> int:
        return self._count

    def match(
        self,
        event: IssueEvent,
        instance_id: str,
        now: datetime | None = None,
        jira: Mapping[str, bool] | None = None,
    ) -> list[Subscription]:
        """The subscriptions the event reaches: at most one per channel, the first by name then id.

        Ordered by that same (name, id) order, so the result is deterministic. `now` is the time
        JQL's relative dates count from (default: the event's time, `event_time`). `jira`: Jira's
        answers (by JQL text) to `jira_questions`; a question without an answer does not match.
        """
        return [entry.subscription() for entry in self._match(event, instance_id, now, jira)]

    def match_targets(
        self,
        event: IssueEvent,
        instance_id: str,
        now: datetime | None = None,
        jira: Mapping[str, bool] | None = None,
    ) -> list[tuple[str, str]]:
        """(channel id, subscription name) of what `match` returns, without building the subscriptions."""
        return [(entry.channel_id, entry.name) for entry in self._match(event, instance_id, now, jira)]

    def jira_questions(self, event: IssueEvent, instance_id: str, now: datetime | None = None) -> list[str]:
        """The JQL texts (of `jql_check: jira` subscriptions) whose answer for this event only
        Jira knows and could change what `match` returns: those the local clauses leave open,
        of subscriptions the other filters accept, ranked before their channel's first sure match."""
        if not self.has_remote:
            return []
        undecided: list[str] = []
        self._match(event, instance_id, now, None, undecided)
        return list(dict.fromkeys(undecided))

    def _match(
        self,
        event: IssueEvent,
        instance_id: str,
        now: datetime | None,
        jira: Mapping[str, bool] | None = None,
        undecided: list[str] | None = None,
    ) -> list[_Entry]:
        if event.issue.fields_partial:
            return []  # unknown security level: fail closed (see the module docstring)
        instance = normalise_instance_id(instance_id)
        bucket = self._buckets.get((instance, _project_key(event)))
        every = self._every_project.get(instance, ())
        if bucket is None and not every:
            return []
        kinds = event.kinds
        any_update = any(reaches_updated_any(k) for k in kinds)
        if isinstance(bucket, _KindBucket):
            candidates: Iterable[_Entry] = bucket.candidates(kinds, any_update)
        else:
            candidates = (e for e in bucket or () if _event_kinds_match(e.events, kinds, any_update))
        view = _IssueView(event)
        values = IssueValues(event)
        when = now or event_time(event)
        # Per event, each shared check and each compiled JQL (shared by equal texts) is
        # evaluated at most once, however many subscriptions use it.
        checks: dict[int, bool] = {}
        verdicts: dict[int, bool] = {}

        def accepts(entry: _Entry) -> bool:
            check = entry.check
            ok = checks.get(id(check))
            if ok is None:
                ok = checks[id(check)] = check.accepts(event, view)
            if not ok:
                return False
            jql = entry.jql_compiled
            if jql is None:
                return True
            verdict = verdicts.get(id(jql))
            if verdict is None:
                found = jql.decide(values, when)
                if found is None:  # only Jira can tell
                    open_questions.add(id(jql))
                    found = bool(jira and jira.get(jql.question, False))
                verdict = verdicts[id(jql)] = found
            return verdict

        # Compiled JQL (by id) whose answer only Jira knows for this event.
        open_questions: set[int] = set()

        def is_open(entry: _Entry) -> bool:
            return undecided is not None and id(entry.jql_compiled) in open_questions

        if every:
            # JQL subscriptions without a project: only those that accept the event (or that
            # Jira may accept) join the project's candidates, so the merge stays short. The
            # first entry of a group answers for the group.
            extra = sorted(
                (
                    e
                    for group in every
                    if _event_kinds_match(group[0].events, kinds, any_update)
                    and (accepts(group[0]) or is_open(group[0]))
                    for e in group
                ),
                key=_rank,
            )
            if extra:
                candidates = heapq.merge(candidates, extra, key=_rank)  # both in rank order
        chosen: dict[str, _Entry] = {}
        for entry in candidates:  # in rank order
            if entry.channel_id in chosen:
                continue  # a better-ranked subscription of this channel already matched
            if accepts(entry):
                chosen[entry.channel_id] = entry
            elif undecided is not None and is_open(entry) and entry.jql_compiled is not None:
                undecided.append(entry.jql_compiled.question)
        return list(chosen.values())
