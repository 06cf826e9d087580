"""JQL in the subscription index: ANDed with the other filters, compiled once, indexed by project."""

from __future__ import annotations

from typing import Any

import pytest

import bot.routing.jql.compiler as jql_compiler
from bot.routing.jql.compiled import CompiledJql
from bot.routing.matcher import SubscriptionIndex, subscription_matches
from bot.routing.model import FieldFilter, Inclusion, Subscription, SubscriptionFilters
from tests.routing.jql_events import NOW, event

INSTANCE = "https://acme.atlassian.net"
WEB_STATUS = event()  # WEB-42, event_updated_status, labels ops + Urgent, priority High


def sub(name: str, jql: str | None, channel: str = "", **filters: Any) -> Subscription:
    filters.setdefault("events", {"event_updated_status"})
    return Subscription(
        id=name,
        name=name,
        channel_id=channel or f"ch-{name}",
        instance_id=INSTANCE,
        filters=SubscriptionFilters(jql=jql, **filters),
    )


def names(subs: list[Subscription], ev: Any = WEB_STATUS, instance: str = INSTANCE) -> list[str]:
    index = SubscriptionIndex.build(subs)
    found = [s.name for s in index.match(ev, instance)]
    # The index and the plain function agree.
    if len({s.channel_id for s in subs}) == len(subs):
        assert found == sorted(
            s.name for s in subs if s.instance_id == instance and subscription_matches(s, ev)
        )
    return found


def test_jql_is_anded_with_the_event_filter() -> None:
    subs = [
        sub("ops", "labels = ops"),
        sub("wontfix", "labels = wontfix"),
        sub("created-only", "labels = ops", events={"event_created"}),
    ]
    assert names(subs) == ["ops"]


def test_with_jql_projects_are_optional_and_read_from_the_jql() -> None:
    subs = [
        sub("web", "project = WEB AND priority = High"),
        sub("api", "project in (API, OPS)"),
        sub("any-project", "priority = High"),
        sub("no-jql-no-projects", None),
    ]
    assert names(subs) == ["any-project", "web"]
    api_event = event(project={"id": "1", "key": "API", "name": "Api"})
    assert names(subs, api_event) == ["any-project", "api"]
    assert names(subs, WEB_STATUS, "https://other.atlassian.net") == []


def test_jql_combines_with_projects_issue_types_and_field_filters() -> None:
    subs = [
        sub(
            "all",
            "statusCategory = indeterminate",
            projects={"WEB"},
            issue_types={"Bug"},
            fields=(FieldFilter(key="labels", inclusion=Inclusion.INCLUDE_ANY, values=("ops",)),),
        ),
        sub("other-project", "labels = ops", projects={"API"}),
        sub("wrong-type", "labels = ops", projects={"WEB"}, issue_types={"Story"}),
    ]
    assert names(subs) == ["all"]


@pytest.mark.parametrize("jql", ["project = ", "assignee in membersOf(devs)", "watcher = ada"])
def test_jql_that_cannot_be_evaluated_matches_nothing(jql: str) -> None:
    subs = [sub("broken", jql, projects={"WEB"})]
    assert names(subs) == []


def test_a_secured_issue_reaches_jql_subscriptions_that_name_the_level() -> None:
    secured = event(security={"id": "10300", "name": "Internal"})
    subs = [sub("level", "level = internal"), sub("labels", "labels = ops", projects={"WEB"})]
    assert names(subs, secured) == ["level"]


def test_relative_dates_count_from_the_event_time() -> None:
    subs = [sub("recent", "created >= -3d")]
    assert names(subs) == ["recent"]  # created 2026-02-08, event at 2026-02-10
    index = SubscriptionIndex.build(subs)
    assert index.match(WEB_STATUS, INSTANCE, now=NOW.replace(month=3)) == []


def test_one_match_per_channel_across_project_and_every_project_entries() -> None:
    subs = [sub("b-web", "project = WEB", channel="c"), sub("a-any", "labels = ops", channel="c")]
    assert [s.name for s in SubscriptionIndex.build(subs).match(WEB_STATUS, INSTANCE)] == ["a-any"]


def test_jql_is_compiled_once_per_text_not_per_event(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    real = jql_compiler.parse

    def counting(text: str) -> Any:
        calls.append(text)
        return real(text)

    monkeypatch.setattr(jql_compiler, "parse", counting)
    subs = [sub(f"s{i}", "labels = ops AND priority = High", projects={"WEB"}) for i in range(5)]
    index = SubscriptionIndex.build(subs)
    for _ in range(20):
        assert len(index.match(WEB_STATUS, INSTANCE)) == 5
    assert calls == ["labels = ops AND priority = High"]


def test_one_jql_without_project_in_many_channels_is_decided_once_and_keeps_the_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    decided: list[str] = []
    real = CompiledJql.decide

    def counting(self: CompiledJql, *args: Any) -> Any:
        decided.append(self.question)
        return real(self, *args)

    monkeypatch.setattr(CompiledJql, "decide", counting)
    # Names interleave the project's subscriptions with the alike ones of every project.
    alike = [sub(f"any-{i:02d}", "labels = ops", channel=f"c{i}") for i in range(0, 40, 2)]
    project = [sub(f"any-{i:02d}", None, channel=f"c{i}", projects={"WEB"}) for i in range(1, 40, 2)]
    other_kind = [sub(f"any-{i:02d}x", "labels = ops", events={"event_created"}) for i in range(5)]
    index = SubscriptionIndex.build(alike + project + other_kind)
    found = [s.name for s in index.match(WEB_STATUS, INSTANCE)]
    assert found == [f"any-{i:02d}" for i in range(40)]
    assert decided == ["labels = ops"]
    # A channel keeps its first subscription by name whichever list it comes from.
    shared_channel = [
        sub("a-web", None, channel="c", projects={"WEB"}),
        sub("b-any", "labels = ops", channel="c"),
    ]
    assert [s.name for s in SubscriptionIndex.build(alike + shared_channel).match(WEB_STATUS, INSTANCE)] == [
        "a-web",
        *[f"any-{i:02d}" for i in range(0, 40, 2)],
    ]


def test_the_subscription_given_back_keeps_its_jql() -> None:
    s = sub("ops", "labels = ops")
    assert SubscriptionIndex.build([s]).match(WEB_STATUS, INSTANCE) == [s]
