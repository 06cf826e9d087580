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
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from bot.jira.events import EVENT_UPDATED_ANY, IssueEvent, NamedValue
from bot.routing.model import SECURITY_FIELD_KEYS, FieldFilter, Inclusion, Subscription

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


@dataclass(frozen=True, slots=True)
class _Compiled:
    """A subscription prepared for matching; `rank` orders subscriptions by name, then id."""

    sub: Subscription
    rank: int
    issue_type_raw: frozenset[str]
    issue_type_folded: frozenset[str]
    fields: tuple[_CompiledField, ...]
    broken: bool
    filters_security: bool

    @classmethod
    def of(cls, sub: Subscription, rank: int) -> _Compiled:
        fields = tuple(_CompiledField.of(f) for f in sub.filters.fields)
        issue_types = sub.filters.issue_types
        return cls(
            sub=sub,
            rank=rank,
            issue_type_raw=frozenset(issue_types),
            issue_type_folded=frozenset(t.casefold() for t in issue_types),
            fields=fields,
            broken=any(f.broken for f in fields),
            filters_security=any(f.key == "security" for f in fields),
        )

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


def _event_kinds_match(sub: Subscription, kinds: Iterable[str]) -> bool:
    wanted = sub.filters.events
    if not wanted.isdisjoint(kinds):
        return True
    return EVENT_UPDATED_ANY in wanted and any(reaches_updated_any(k) for k in kinds)


def subscription_matches(sub: Subscription, event: IssueEvent) -> bool:
    """Whether one subscription accepts the event (the instance is not checked here)."""
    if event.issue.fields_partial:
        return False
    project = _project_key(event)
    if not project or project not in sub.filters.projects:
        return False
    if not _event_kinds_match(sub, event.kinds):
        return False
    return _Compiled.of(sub, 0).accepts(event, _IssueView(event))


@dataclass(frozen=True, slots=True)
class _ProjectBucket:
    by_kind: Mapping[str, tuple[_Compiled, ...]]
    updated_any: tuple[_Compiled, ...]


def _sort_key(sub: Subscription) -> tuple[str, str, str]:
    return (sub.name.casefold(), sub.id, sub.channel_id)


class SubscriptionIndex:
    """An immutable index of subscriptions, keyed by (instance, project) then by event kind.

    Build a new index whenever the subscriptions change; matching only looks at the subscriptions
    of the event's project that name one of its kinds (or `event_updated_any`).
    """

    __slots__ = ("_buckets", "_count")

    def __init__(self, buckets: Mapping[tuple[str, str], _ProjectBucket], count: int) -> None:
        self._buckets = buckets
        self._count = count

    @classmethod
    def build(cls, subscriptions: Iterable[Subscription]) -> SubscriptionIndex:
        ordered = sorted(subscriptions, key=_sort_key)
        by_kind: dict[tuple[str, str], dict[str, list[_Compiled]]] = {}
        updated_any: dict[tuple[str, str], list[_Compiled]] = {}
        for rank, sub in enumerate(ordered):
            compiled = _Compiled.of(sub, rank)
            if compiled.broken or not sub.filters.events:
                continue  # can never match: keep it out of every bucket
            instance = normalise_instance_id(sub.instance_id)
            for project in sub.filters.projects:
                key = (instance, project.upper())
                kinds = by_kind.setdefault(key, {})
                for kind in sub.filters.events:
                    if kind == EVENT_UPDATED_ANY:
                        updated_any.setdefault(key, []).append(compiled)
                    else:
                        kinds.setdefault(kind, []).append(compiled)
        buckets = {
            key: _ProjectBucket(
                by_kind={kind: tuple(subs) for kind, subs in kinds.items()},
                updated_any=tuple(updated_any.get(key, ())),
            )
            for key, kinds in by_kind.items()
        }
        return cls(buckets, len(ordered))

    def __len__(self) -> int:
        return self._count

    def match(self, event: IssueEvent, instance_id: str) -> list[Subscription]:
        """The subscriptions the event reaches: at most one per channel, the first by name then id.

        Ordered by that same (name, id) order, so the result is deterministic.
        """
        if event.issue.fields_partial:
            return []  # unknown security level: fail closed (see the module docstring)
        bucket = self._buckets.get((normalise_instance_id(instance_id), _project_key(event)))
        if bucket is None:
            return []
        candidates: dict[int, _Compiled] = {}
        for kind in event.kinds:
            for compiled in bucket.by_kind.get(kind, ()):
                candidates[compiled.rank] = compiled
        if bucket.updated_any and any(reaches_updated_any(k) for k in event.kinds):
            for compiled in bucket.updated_any:
                candidates[compiled.rank] = compiled
        if not candidates:
            return []
        view = _IssueView(event)
        chosen: dict[str, _Compiled] = {}
        for rank in sorted(candidates):
            compiled = candidates[rank]
            channel = compiled.sub.channel_id
            if channel in chosen:
                continue  # a better-ranked subscription of this channel already matched
            if compiled.accepts(event, view):
                chosen[channel] = compiled
        # Insertion order is rank order: candidates were visited by rank.
        return [c.sub for c in chosen.values()]
