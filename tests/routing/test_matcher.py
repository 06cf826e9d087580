"""Subscription matching: the plugin's filter semantics and the index that applies them."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import pytest

from bot.jira import events as ev
from bot.jira.events import IssueEvent, IssueSnapshot, NamedValue, normalise
from bot.jira.models import parse_webhook
from bot.routing.matcher import IndexBuilder, SubscriptionIndex, reaches_updated_any, subscription_matches
from bot.routing.model import (
    FieldFilter,
    Inclusion,
    Subscription,
    SubscriptionFilters,
    subscriptions_from_plugin_export,
)
from tests.conftest import load_shared_webhook_bytes, require_shared_fixtures, shared_webhook_names

JIRA = "https://acme.atlassian.net"
OTHER_JIRA = "https://jira.corp.example"
STORY = NamedValue(id="10001", name="Story")
BUG = NamedValue(id="10004", name="Bug")


def nv(id_: str, name: str = "") -> NamedValue:
    return NamedValue(id=id_, name=name)


def make_event(
    kinds: Iterable[str] = (ev.EVENT_CREATED,),
    *,
    project: str = "TES",
    issue_type: NamedValue = STORY,
    fields: Mapping[str, Sequence[NamedValue]] | None = None,
    security: NamedValue | None = None,
    key: str | None = None,
    partial: bool = False,
) -> IssueEvent:
    field_values = {k: tuple(v) for k, v in (fields or {}).items()}
    issue = IssueSnapshot(
        id="10100",
        key=key if key is not None else f"{project}-1",
        self_url=f"{JIRA}/rest/api/2/issue/10100",
        project=NamedValue(id="10000", name=project),
        issue_type=issue_type,
        security_level=security,
        field_values=field_values,
        fields_partial=partial,
    )
    return IssueEvent(
        webhook_event="jira:issue_updated",
        issue_event_type="issue_generic",
        kinds=frozenset(kinds),
        issue=issue,
    )


def make_sub(
    *,
    id_: str = "s1",
    name: str = "sub",
    channel: str = "c1",
    instance: str = JIRA,
    events: Iterable[str] = (ev.EVENT_CREATED,),
    projects: Iterable[str] = ("TES",),
    issue_types: Iterable[str] = ("10001",),
    fields: Iterable[FieldFilter] = (),
) -> Subscription:
    return Subscription(
        id=id_,
        name=name,
        channel_id=channel,
        instance_id=instance,
        filters=SubscriptionFilters(
            events=frozenset(events),
            projects=frozenset(projects),
            issue_types=frozenset(issue_types),
            fields=tuple(fields),
        ),
    )


def field(key: str, inclusion: Inclusion, *values: str) -> FieldFilter:
    return FieldFilter(key=key, inclusion=inclusion, values=values)


def check_both(sub: Subscription, event: IssueEvent) -> bool:
    """Match through the plain function and the index; they must agree."""
    direct = subscription_matches(sub, event)
    indexed = SubscriptionIndex.build([sub]).match(event, sub.instance_id)
    assert indexed == ([sub] if direct else [])
    return direct


# --- events -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sub_events", "event_kinds", "expected"),
    [
        ({ev.EVENT_CREATED}, {ev.EVENT_CREATED}, True),
        ({ev.EVENT_CREATED}, {ev.EVENT_UPDATED_STATUS}, False),
        ({ev.EVENT_UPDATED_STATUS}, {ev.EVENT_UPDATED_STATUS, ev.EVENT_UPDATED_RESOLVED}, True),
        ({ev.EVENT_UPDATED_PRIORITY}, {ev.EVENT_UPDATED_STATUS, ev.EVENT_UPDATED_RESOLVED}, False),
        ({ev.EVENT_CREATED_COMMENT, ev.EVENT_DELETED}, {ev.EVENT_DELETED, ev.EVENT_DELETED_UNRESOLVED}, True),
        (set(), {ev.EVENT_CREATED}, False),
        # event_updated_any: every update and comment kind...
        ({ev.EVENT_UPDATED_ANY}, {ev.EVENT_UPDATED_SUMMARY}, True),
        ({ev.EVENT_UPDATED_ANY}, {ev.EVENT_UPDATED_REOPENED}, True),
        ({ev.EVENT_UPDATED_ANY}, {ev.EVENT_UPDATED_ASSIGNEE}, True),
        ({ev.EVENT_UPDATED_ANY}, {ev.EVENT_CREATED_COMMENT}, True),
        ({ev.EVENT_UPDATED_ANY}, {ev.EVENT_DELETED_COMMENT}, True),
        ({ev.EVENT_UPDATED_ANY}, {ev.EVENT_UPDATED_COMMENT}, True),
        ({ev.EVENT_UPDATED_ANY}, {"event_updated_customfield_10072"}, True),
        ({ev.EVENT_UPDATED_ANY}, {"event_updated_Story Points"}, True),
        # ... but neither creation nor deletion.
        ({ev.EVENT_UPDATED_ANY}, {ev.EVENT_CREATED}, False),
        ({ev.EVENT_UPDATED_ANY}, {ev.EVENT_DELETED}, False),
        ({ev.EVENT_UPDATED_ANY}, {ev.EVENT_DELETED, ev.EVENT_DELETED_UNRESOLVED}, False),
        ({ev.EVENT_UPDATED_ANY}, set(), False),
        # Custom field kinds are matched by name, not by event_updated_any alone.
        ({"event_updated_customfield_10072"}, {"event_updated_customfield_10072"}, True),
        ({"event_updated_customfield_10072"}, {"event_updated_customfield_10073"}, False),
        ({"event_updated_customfield_10072"}, {ev.EVENT_UPDATED_STATUS}, False),
        ({"event_updated_Story Points"}, {"event_updated_Story Points"}, True),
    ],
)
def test_event_kinds(sub_events: set[str], event_kinds: set[str], expected: bool) -> None:
    assert check_both(make_sub(events=sub_events), make_event(event_kinds)) is expected


@pytest.mark.parametrize(
    "kind",
    sorted(ev.STANDARD_KINDS - {ev.EVENT_CREATED, ev.EVENT_DELETED, ev.EVENT_DELETED_UNRESOLVED}),
)
def test_updated_any_covers_every_update_and_comment_kind(kind: str) -> None:
    assert reaches_updated_any(kind)


@pytest.mark.parametrize("kind", [ev.EVENT_CREATED, ev.EVENT_DELETED, ev.EVENT_DELETED_UNRESOLVED])
def test_updated_any_skips_creation_and_deletion(kind: str) -> None:
    assert not reaches_updated_any(kind)


def test_sub_with_updated_any_and_created_gets_both() -> None:
    sub = make_sub(events={ev.EVENT_UPDATED_ANY, ev.EVENT_CREATED})
    assert check_both(sub, make_event({ev.EVENT_CREATED}))
    assert check_both(sub, make_event({ev.EVENT_UPDATED_LABELS}))
    assert not check_both(sub, make_event({ev.EVENT_DELETED}))


# --- projects and issue types -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("projects", "event_project", "expected"),
    [
        ({"TES"}, "TES", True),
        ({"TES", "OPS"}, "OPS", True),
        ({"OPS"}, "TES", False),
        ({"tes"}, "TES", True),  # keys are upper-cased by the model
        (set(), "TES", False),  # a subscription must name its projects
    ],
)
def test_projects(projects: set[str], event_project: str, expected: bool) -> None:
    assert check_both(make_sub(projects=projects), make_event(project=event_project)) is expected


def test_project_key_falls_back_on_issue_key() -> None:
    event = make_event(project="", key="OPS-12")
    assert check_both(make_sub(projects={"OPS"}), event)
    assert not check_both(make_sub(projects={"TES"}), event)


@pytest.mark.parametrize(
    ("issue_types", "issue_type", "expected"),
    [
        ({"10001"}, STORY, True),
        ({"10001"}, BUG, False),
        ({"Story"}, STORY, True),
        ({"story"}, STORY, True),
        ({"STORY", "10004"}, BUG, True),
        ({"Bug"}, STORY, False),
        (set(), BUG, True),  # no issue type filter: every type
    ],
)
def test_issue_types(issue_types: set[str], issue_type: NamedValue, expected: bool) -> None:
    assert check_both(make_sub(issue_types=issue_types), make_event(issue_type=issue_type)) is expected


# --- field filters ------------------------------------------------------------------------------

HIGH = nv("2", "High")
LOW = nv("4", "Low")
V1 = nv("10200", "1.0")
V2 = nv("10201", "2.0")
V3 = nv("10202", "3.0")


@pytest.mark.parametrize(
    ("inclusion", "values", "issue_values", "expected"),
    [
        # include_any
        (Inclusion.INCLUDE_ANY, ("10200",), (V1, V2), True),
        (Inclusion.INCLUDE_ANY, ("10202", "10201"), (V1, V2), True),
        (Inclusion.INCLUDE_ANY, ("10202",), (V1, V2), False),
        (Inclusion.INCLUDE_ANY, ("10200",), (), False),
        # include_all
        (Inclusion.INCLUDE_ALL, ("10200", "10201"), (V1, V2, V3), True),
        (Inclusion.INCLUDE_ALL, ("10200", "10202"), (V1, V2), False),
        (Inclusion.INCLUDE_ALL, ("10200",), (), False),
        # exclude_any
        (Inclusion.EXCLUDE_ANY, ("10202",), (V1, V2), True),
        (Inclusion.EXCLUDE_ANY, ("10202", "10200"), (V1, V2), False),
        (Inclusion.EXCLUDE_ANY, ("10200",), (), True),
        # empty
        (Inclusion.EMPTY, (), (), True),
        (Inclusion.EMPTY, (), (V1,), False),
        # include_or_empty
        (Inclusion.INCLUDE_OR_EMPTY, ("10200",), (V1,), True),
        (Inclusion.INCLUDE_OR_EMPTY, ("10200",), (), True),
        (Inclusion.INCLUDE_OR_EMPTY, ("10200",), (V2,), False),
    ],
)
def test_inclusion_modes(
    inclusion: Inclusion, values: tuple[str, ...], issue_values: tuple[NamedValue, ...], expected: bool
) -> None:
    sub = make_sub(fields=[field("fixVersions", inclusion, *values)])
    event = make_event(fields={"fixVersions": issue_values})
    assert check_both(sub, event) is expected


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (("2",), True),  # id
        (("High",), True),  # name
        (("high",), True),  # names are case-insensitive
        (("HIGH", "Low"), True),
        (("Highest",), False),
        (("4",), False),
    ],
)
def test_values_match_ids_or_names(values: tuple[str, ...], expected: bool) -> None:
    sub = make_sub(fields=[field("priority", Inclusion.INCLUDE_ANY, *values)])
    assert check_both(sub, make_event(fields={"priority": (HIGH,)})) is expected


def test_include_all_mixes_ids_and_names() -> None:
    sub = make_sub(fields=[field("fixVersions", Inclusion.INCLUDE_ALL, "10200", "2.0")])
    assert check_both(sub, make_event(fields={"fixVersions": (V1, V2)}))
    assert not check_both(sub, make_event(fields={"fixVersions": (V1, V3)}))


def test_field_keys_are_case_insensitive() -> None:
    # The plugin stores `fixversions` for the fixVersions field.
    sub = make_sub(fields=[field("fixversions", Inclusion.INCLUDE_ANY, "10200")])
    assert check_both(sub, make_event(fields={"fixVersions": (V1,)}))


def test_custom_field_filter() -> None:
    team_a = nv("10050", "Team A")
    sub = make_sub(fields=[field("customfield_10800", Inclusion.INCLUDE_ANY, "Team A")])
    assert check_both(sub, make_event(fields={"customfield_10800": (team_a,)}))
    assert not check_both(sub, make_event(fields={"customfield_10800": (nv("10051", "Team B"),)}))
    assert not check_both(sub, make_event())


def test_all_field_filters_must_pass() -> None:
    sub = make_sub(
        fields=[
            field("priority", Inclusion.INCLUDE_ANY, "High"),
            field("labels", Inclusion.EXCLUDE_ANY, "noisy"),
        ]
    )
    labels_ok = (nv("backend", "backend"),)
    labels_noisy = (nv("noisy", "noisy"),)
    assert check_both(sub, make_event(fields={"priority": (HIGH,), "labels": labels_ok}))
    assert not check_both(sub, make_event(fields={"priority": (HIGH,), "labels": labels_noisy}))
    assert not check_both(sub, make_event(fields={"priority": (LOW,), "labels": labels_ok}))


@pytest.mark.parametrize(
    "inclusion",
    [Inclusion.INCLUDE_ANY, Inclusion.INCLUDE_ALL, Inclusion.EXCLUDE_ANY, Inclusion.INCLUDE_OR_EMPTY],
)
def test_filter_without_values_is_broken(inclusion: Inclusion) -> None:
    # As in the plugin: a filter that needs values and has none disables the subscription.
    sub = make_sub(fields=[field("priority", inclusion)])
    assert not check_both(sub, make_event(fields={"priority": (HIGH,)}))
    assert not check_both(sub, make_event())


def test_standard_fields_fall_back_on_snapshot_attributes() -> None:
    issue = IssueSnapshot(
        id="1",
        key="TES-1",
        self_url=f"{JIRA}/rest/api/2/issue/1",
        project=NamedValue(id="10000", name="TES"),
        issue_type=STORY,
        priority=HIGH,
        status=nv("3", "In Progress"),
        labels=("backend",),
    )
    event = IssueEvent("jira:issue_created", "issue_created", frozenset({ev.EVENT_CREATED}), issue)
    for key, value in (("priority", "High"), ("status", "in progress"), ("labels", "backend")):
        assert check_both(make_sub(fields=[field(key, Inclusion.INCLUDE_ANY, value)]), event), key


# --- security level -----------------------------------------------------------------------------

SECRET = nv("10001", "Secret")
INTERNAL = nv("10002", "Internal")


@pytest.mark.parametrize(
    ("filters", "issue_security", "expected"),
    [
        # No security filter: only issues without a security level get through.
        ((), None, True),
        ((), SECRET, False),
        # A filter on the security level lets the matching levels through.
        ((field("security", Inclusion.INCLUDE_ANY, "10001"),), SECRET, True),
        ((field("security", Inclusion.INCLUDE_ANY, "Secret"),), SECRET, True),
        ((field("securitylevel", Inclusion.INCLUDE_ANY, "10001"),), SECRET, True),
        ((field("security", Inclusion.INCLUDE_ANY, "10002"),), SECRET, False),
        ((field("security", Inclusion.INCLUDE_ANY, "10001"),), None, False),
        ((field("security", Inclusion.INCLUDE_OR_EMPTY, "10001"),), None, True),
        ((field("security", Inclusion.INCLUDE_OR_EMPTY, "10001"),), SECRET, True),
        ((field("security", Inclusion.INCLUDE_OR_EMPTY, "10001"),), INTERNAL, False),
        ((field("security", Inclusion.EMPTY),), None, True),
        ((field("security", Inclusion.EMPTY),), SECRET, False),
        # exclude_any on the security level means "no security level" (plugin default).
        ((field("security", Inclusion.EXCLUDE_ANY, "10002"),), SECRET, False),
        ((field("security", Inclusion.EXCLUDE_ANY, "10002"),), None, True),
        # Another field filter does not count as a security filter.
        ((field("priority", Inclusion.EXCLUDE_ANY, "4"),), SECRET, False),
    ],
)
def test_security_level(
    filters: tuple[FieldFilter, ...], issue_security: NamedValue | None, expected: bool
) -> None:
    sub = make_sub(fields=filters)
    via_attribute = make_event(security=issue_security)
    via_fields = make_event(fields={"security": (issue_security,)} if issue_security else {})
    assert check_both(sub, via_attribute) is expected
    assert check_both(sub, via_fields) is expected


def test_partial_snapshot_matches_nothing() -> None:
    # Cloud's standalone comment events carry no security level: it must be fetched first.
    subs = [
        make_sub(id_="plain", channel="c1", events={ev.EVENT_UPDATED_ANY}),
        make_sub(
            id_="secured",
            channel="c2",
            events={ev.EVENT_UPDATED_ANY},
            fields=[field("security", Inclusion.INCLUDE_OR_EMPTY, "10001")],
        ),
    ]
    partial = make_event({ev.EVENT_CREATED_COMMENT}, partial=True)
    full = make_event({ev.EVENT_CREATED_COMMENT})
    for sub in subs:
        assert not check_both(sub, partial)
        assert check_both(sub, full)


# --- the index ----------------------------------------------------------------------------------


def test_one_subscription_per_channel_first_by_name_then_id() -> None:
    subs = [
        make_sub(id_="z", name="beta", channel="c1"),
        make_sub(id_="b", name="Alpha", channel="c1"),
        make_sub(id_="a", name="alpha", channel="c1"),
        make_sub(id_="c", name="Gamma", channel="c2"),
    ]
    matched = SubscriptionIndex.build(subs).match(make_event(), JIRA)
    assert [(s.channel_id, s.id) for s in matched] == [("c1", "a"), ("c2", "c")]


def test_channel_falls_back_to_next_subscription_when_first_does_not_match() -> None:
    subs = [
        make_sub(id_="1", name="a-high-only", fields=[field("priority", Inclusion.INCLUDE_ANY, "High")]),
        make_sub(id_="2", name="b-everything"),
    ]
    index = SubscriptionIndex.build(subs)
    assert [s.id for s in index.match(make_event(fields={"priority": (HIGH,)}), JIRA)] == ["1"]
    assert [s.id for s in index.match(make_event(fields={"priority": (LOW,)}), JIRA)] == ["2"]


def test_result_order_is_independent_of_input_order() -> None:
    subs = [make_sub(id_=f"s{i}", name=f"n{i % 7}", channel=f"c{i % 5}") for i in range(30)]
    first = SubscriptionIndex.build(subs).match(make_event(), JIRA)
    second = SubscriptionIndex.build(list(reversed(subs))).match(make_event(), JIRA)
    assert first == second
    assert len({s.channel_id for s in first}) == len(first) == 5
    ranks = [(s.name.casefold(), s.id) for s in first]
    assert ranks == sorted(ranks)


def test_instances_are_separate() -> None:
    subs = [
        make_sub(id_="cloud", channel="c1", instance=JIRA),
        make_sub(id_="server", channel="c2", instance=OTHER_JIRA),
    ]
    index = SubscriptionIndex.build(subs)
    assert [s.id for s in index.match(make_event(), JIRA)] == ["cloud"]
    assert [s.id for s in index.match(make_event(), OTHER_JIRA + "/")] == ["server"]
    assert index.match(make_event(), "https://elsewhere.example") == []


def test_index_handles_updated_any_and_specific_kinds_together() -> None:
    subs = [
        make_sub(id_="any", name="a", channel="c1", events={ev.EVENT_UPDATED_ANY}),
        make_sub(id_="status", name="b", channel="c2", events={ev.EVENT_UPDATED_STATUS}),
        make_sub(id_="cf", name="c", channel="c3", events={"event_updated_customfield_10072"}),
        make_sub(id_="created", name="d", channel="c4", events={ev.EVENT_CREATED}),
    ]
    index = SubscriptionIndex.build(subs)
    status_and_cf = make_event({ev.EVENT_UPDATED_STATUS, "event_updated_customfield_10072"})
    assert [s.id for s in index.match(status_and_cf, JIRA)] == ["any", "status", "cf"]
    assert [s.id for s in index.match(make_event({ev.EVENT_CREATED}), JIRA)] == ["created"]
    assert [s.id for s in index.match(make_event({ev.EVENT_CREATED_COMMENT}), JIRA)] == ["any"]


def test_subscription_over_several_projects_is_returned_once() -> None:
    sub = make_sub(projects={"TES", "OPS"}, events={ev.EVENT_UPDATED_ANY, ev.EVENT_UPDATED_STATUS})
    index = SubscriptionIndex.build([sub])
    assert index.match(make_event({ev.EVENT_UPDATED_STATUS}, project="OPS"), JIRA) == [sub]
    assert index.match(make_event({ev.EVENT_UPDATED_STATUS}, project="DEV"), JIRA) == []


def test_index_matches_the_plain_function_on_a_mixed_population() -> None:
    kinds_pool = [
        {ev.EVENT_CREATED},
        {ev.EVENT_UPDATED_ANY},
        {ev.EVENT_UPDATED_STATUS, ev.EVENT_CREATED_COMMENT},
        {"event_updated_customfield_10072"},
    ]
    field_pool: list[tuple[FieldFilter, ...]] = [
        (),
        (field("priority", Inclusion.INCLUDE_ANY, "High"),),
        (field("security", Inclusion.INCLUDE_OR_EMPTY, "Secret"),),
        (field("labels", Inclusion.EMPTY),),
    ]
    subs = [
        make_sub(
            id_=f"s{i:03}",
            name=f"sub {i % 11}",
            channel=f"c{i % 13}",
            projects={("TES", "OPS")[i % 2]},
            events=kinds_pool[i % 4],
            issue_types=({"10001"}, {"Bug"}, set())[i % 3],
            fields=field_pool[(i // 4) % 4],
        )
        for i in range(200)
    ]
    index = SubscriptionIndex.build(subs)
    events = [
        make_event(kinds, project=project, issue_type=itype, fields=fields, security=security)
        for kinds in ({ev.EVENT_CREATED}, {ev.EVENT_UPDATED_STATUS}, {"event_updated_customfield_10072"})
        for project in ("TES", "OPS")
        for itype in (STORY, BUG)
        for fields in ({}, {"priority": (HIGH,)}, {"labels": (nv("x", "x"),)})
        for security in (None, SECRET)
    ]
    routed = 0
    for event in events:
        expected: dict[str, Subscription] = {}
        for sub in sorted(subs, key=lambda s: (s.name.casefold(), s.id)):
            if subscription_matches(sub, event):
                expected.setdefault(sub.channel_id, sub)
        assert index.match(event, JIRA) == list(expected.values())
        routed += len(expected)
    # The population is varied enough that matches are neither none nor everything.
    assert 0 < routed < len(events) * 13


def test_empty_index() -> None:
    index = SubscriptionIndex.build([])
    assert len(index) == 0
    assert index.match(make_event(), JIRA) == []


# --- model helpers ------------------------------------------------------------------------------


def test_filters_normalise_names() -> None:
    filters = SubscriptionFilters.model_validate(
        {
            "events": ["Event_Created", " event_updated_ANY ", "event_updated_Story Points", ""],
            "projects": ["tes", " ops "],
            "issue_types": [" 10001 "],
        }
    )
    assert filters.events == {ev.EVENT_CREATED, ev.EVENT_UPDATED_ANY, "event_updated_Story Points"}
    assert filters.projects == {"TES", "OPS"}
    assert filters.issue_types == {"10001"}


def test_field_filter_normalises_inclusion_and_values() -> None:
    f = FieldFilter.model_validate({"key": " priority ", "inclusion": "Include_Any", "values": "High"})
    assert (f.key, f.inclusion, f.values) == ("priority", Inclusion.INCLUDE_ANY, ("High",))
    plugin_set = FieldFilter.model_validate({"key": "labels", "values": {"a": True, "b": False}})
    assert plugin_set.values == ("a",)
    assert FieldFilter(key="SecurityLevel").is_security


def test_from_plugin_json() -> None:
    record = {
        "id": "sub1",
        "channel_id": "chan1",
        "name": "Bugs",
        "instance_id": "",
        "filters": {
            "events": ["event_created", "event_updated_any"],
            "projects": ["tes"],
            "issue_types": ["10004"],
            "fields": [
                {"key": "priority", "inclusion": "include_any", "values": ["2"]},
                {"key": "security", "inclusion": "empty", "values": []},
            ],
        },
    }
    sub = Subscription.from_plugin_json(record, instance_id=JIRA)
    assert sub.instance_id == JIRA
    assert sub.filters.projects == {"TES"}
    assert sub.filters.fields[0] == FieldFilter(
        key="priority", inclusion=Inclusion.INCLUDE_ANY, values=("2",)
    )
    assert sub.filters.has_security_filter
    event = make_event({ev.EVENT_UPDATED_STATUS}, issue_type=BUG, fields={"priority": (HIGH,)})
    assert subscription_matches(sub, event)


def test_subscriptions_from_plugin_store_record() -> None:
    store = {
        "PluginVersion": "4.0.0",
        "Channel": {
            "by_id": {
                "a": {"id": "a", "channel_id": "c1", "name": "A", "filters": {"events": ["event_created"]}},
                "b": {
                    "ID": "b",
                    "ChannelID": "c2",
                    "Name": "B",
                    "InstanceID": OTHER_JIRA,
                    "Filters": {"Events": ["event_created"], "Projects": ["OPS"]},
                },
            },
            "id_by_channel_id": {},
            "id_by_event": {},
        },
    }
    subs = {s.id: s for s in subscriptions_from_plugin_export(store, instance_id=JIRA)}
    assert subs["a"].instance_id == JIRA
    assert subs["b"].instance_id == OTHER_JIRA
    assert subs["b"].channel_id == "c2"
    assert subs["b"].filters.projects == {"OPS"}


# --- real payloads ------------------------------------------------------------------------------


def real_event(name: str) -> IssueEvent:
    event = normalise(parse_webhook(load_shared_webhook_bytes(name)))
    assert event is not None, name
    return event


def test_shared_fixtures_are_present() -> None:
    require_shared_fixtures()
    names = shared_webhook_names()
    assert len(names) == 55
    assert "webhook-issue-created-with-security-level.json" in names


def test_real_issue_with_security_level_needs_a_security_filter() -> None:
    event = real_event("webhook-issue-created-with-security-level.json")
    plain = make_sub(id_="plain", channel="c1")
    by_id = make_sub(id_="by-id", channel="c2", fields=[field("security", Inclusion.INCLUDE_ANY, "10001")])
    other = make_sub(id_="other", channel="c3", fields=[field("security", Inclusion.INCLUDE_ANY, "10002")])
    empty = make_sub(id_="empty", channel="c4", fields=[field("security", Inclusion.EMPTY)])
    index = SubscriptionIndex.build([plain, by_id, other, empty])
    assert [s.id for s in index.match(event, JIRA)] == ["by-id"]
    # The same subscriptions on an issue without a security level.
    unsecured = real_event("webhook-issue-created.json")
    assert [s.id for s in index.match(unsecured, JIRA)] == ["empty", "plain"]  # by name, then id


def test_real_custom_field_change() -> None:
    event = real_event("webhook-cloud-issue-updated-custom-field.json")
    custom = make_sub(id_="custom", channel="c1", events={"event_updated_customfield_10072"})
    any_update = make_sub(id_="any", channel="c2", events={ev.EVENT_UPDATED_ANY})
    status = make_sub(id_="status", channel="c3", events={ev.EVENT_UPDATED_STATUS})
    index = SubscriptionIndex.build([custom, any_update, status])
    assert [s.id for s in index.match(event, JIRA)] == ["any", "custom"]  # by name, then id


@pytest.mark.parametrize(
    ("filter_", "expected"),
    [
        (field("fixVersions", Inclusion.INCLUDE_ANY, "VERSION 1"), True),
        (field("fixVersions", Inclusion.INCLUDE_ALL, "10004", "version 2"), True),
        (field("fixVersions", Inclusion.INCLUDE_ALL, "10004", "version 3"), False),
        (field("fixVersions", Inclusion.EXCLUDE_ANY, "version 2"), False),
        (field("components", Inclusion.INCLUDE_ANY, "special component"), True),
        (field("labels", Inclusion.INCLUDE_ANY, "tt"), True),
        (field("customfield_10071", Inclusion.INCLUDE_ANY, "ThisOne"), True),
        (field("customfield_10072", Inclusion.EMPTY), True),
        (field("customfield_10072", Inclusion.INCLUDE_OR_EMPTY, "5"), True),
        (field("priority", Inclusion.INCLUDE_ANY, "3"), True),
        (field("priority", Inclusion.INCLUDE_ANY, "High"), False),
    ],
)
def test_real_field_filters(filter_: FieldFilter, expected: bool) -> None:
    event = real_event("webhook-issue-updated-components.json")
    sub = make_sub(events={ev.EVENT_UPDATED_COMPONENTS}, issue_types={"task"}, fields=[filter_])
    assert check_both(sub, event) is expected


def test_real_cloud_standalone_comment_is_not_routed_until_expanded() -> None:
    event = real_event("webhook-cloud-comment-created.json")
    assert event.issue.fields_partial
    sub = make_sub(events={ev.EVENT_CREATED_COMMENT})
    assert SubscriptionIndex.build([sub]).match(event, JIRA) == []


@pytest.mark.parametrize("name", shared_webhook_names())
def test_index_agrees_with_plain_function_on_real_payloads(name: str) -> None:
    event = normalise(parse_webhook(load_shared_webhook_bytes(name)))
    if event is None:
        return  # nothing postable: nothing to route
    project = event.issue.project.name
    subs = [
        make_sub(id_="s1", channel="c1", events={ev.EVENT_UPDATED_ANY}, projects={project}, issue_types=()),
        make_sub(id_="s2", channel="c2", events=event.kinds, projects={project}, issue_types=()),
        make_sub(id_="s3", channel="c3", events={ev.EVENT_CREATED}, projects={project}, issue_types=()),
    ]
    expected = [s for s in subs if subscription_matches(s, event)]
    assert SubscriptionIndex.build(subs).match(event, JIRA) == expected
    # A subscription naming the event's own kinds gets every complete, unsecured event.
    routable = not event.issue.fields_partial and event.issue.security_level is None
    assert (subs[1] in expected) is routable


def test_small_and_large_projects_route_alike_and_targets_follow_the_matches() -> None:
    """A project with few subscriptions is scanned, one with many is indexed by kind: both give
    what the plain function gives, and match_targets names the same channels and subscriptions."""
    for count in (12, 120):  # around the size from which a project is indexed by kind
        subs = [
            make_sub(
                id_=f"s{i:03}",
                name=f"sub {i % 7}",
                channel=f"c{i % 5}",
                events=({ev.EVENT_CREATED}, {ev.EVENT_UPDATED_ANY}, {ev.EVENT_UPDATED_STATUS})[i % 3],
                issue_types=({"10001"}, ())[i % 2],
                fields=((), (field("priority", Inclusion.INCLUDE_ANY, "High"),))[(i // 3) % 2],
            )
            for i in range(count)
        ]
        builder = IndexBuilder()
        for sub in reversed(subs):
            builder.add(sub)
        streamed, built = builder.build(), SubscriptionIndex.build(subs)
        assert len(streamed) == len(built) == count
        for kinds in ({ev.EVENT_CREATED}, {ev.EVENT_UPDATED_STATUS}, {ev.EVENT_CREATED_COMMENT}):
            for fields in ({}, {"priority": (HIGH,)}):
                event = make_event(kinds, fields=fields)
                expected: dict[str, Subscription] = {}
                for sub in sorted(subs, key=lambda s: (s.name.casefold(), s.id)):
                    if subscription_matches(sub, event):
                        expected.setdefault(sub.channel_id, sub)
                matched = built.match(event, JIRA)
                assert matched == list(expected.values())
                assert streamed.match(event, JIRA) == matched
                assert built.match_targets(event, JIRA) == [(s.channel_id, s.name) for s in matched]


def test_matched_subscriptions_are_given_back_whole() -> None:
    sub = make_sub(
        id_="full",
        name="Everything",
        events={ev.EVENT_CREATED},
        issue_types=(),
        fields=(field("labels", Inclusion.EXCLUDE_ANY, "spam"),),
    )
    sub = sub.model_copy(update={"created_by": "user-1"})
    [found] = SubscriptionIndex.build([sub]).match(make_event(), JIRA)
    assert found == sub
    assert found.model_dump() == sub.model_dump()
