"""JQL with clauses only Jira can answer (`jql_check: jira`), and names learnt from Jira."""

from __future__ import annotations

from typing import Any

import pytest

from bot.routing.explain import explain
from bot.routing.jql import JiraNames, JqlError, NamesUnknown, compile_jql
from bot.routing.matcher import (
    IndexBuilder,
    SubscriptionIndex,
    compile_subscription_jql,
    needs_names,
    subscription_matches,
)
from bot.routing.model import Subscription, SubscriptionFilters
from tests.routing.jql_events import NOW, event

INSTANCE = "https://acme.atlassian.net"
WEB = event()  # WEB-42, labels ops + Urgent, priority High, customfield_10016 = 5
NAMES = JiraNames.of(
    {"Story Points": "customfield_10016", "Team": "customfield_10072"},
    ("Highest", "High", "Medium", "Low", "Lowest"),
)


def sub(name: str, jql: str, channel: str = "", check: str = "jira", **filters: Any) -> Subscription:
    filters.setdefault("events", {"event_updated_status"})
    return Subscription(
        id=name,
        name=name,
        channel_id=channel or f"ch-{name}",
        instance_id=INSTANCE,
        filters=SubscriptionFilters(jql=jql, jql_check=check, **filters),
    )


@pytest.mark.parametrize(
    ("jql", "expected"),
    [
        ("watcher = currentUser()", None),
        ("labels = ops AND watcher = bob", None),
        ("labels = nope AND watcher = bob", False),  # the local part already says no
        ("labels = ops OR watcher = bob", True),  # ... or already says yes
        ("labels = nope OR watcher = bob", None),
        ("NOT (labels = nope AND watcher = bob)", True),
        ("NOT (labels = ops AND watcher = bob)", None),
        ("sprint in openSprints() AND NOT labels = ops", False),
        ("(watcher = bob OR labels = ops) AND priority = High", True),
        ("status WAS Open AND labels = ops", None),  # history: Jira's
        ("status CHANGED TO Done AFTER -1d AND labels = nope", False),
        ("labels = ops", True),  # no remote clause: decide is matches
        ("labels = nope", False),
    ],
)
def test_local_clauses_decide_what_they_can(jql: str, expected: bool | None) -> None:
    compiled = compile_jql(jql, channel=False)
    assert compiled.decide(WEB, NOW) is expected
    if not compiled.remote_clauses:
        assert compiled.matches(WEB, NOW) is expected


def test_remote_clauses_are_refused_without_the_opt_in() -> None:
    with pytest.raises(JqlError, match=r"`watcher = bob` cannot be answered by the bot.*jql_check=jira"):
        compile_subscription_jql("labels = ops AND watcher = bob")
    compiled = compile_subscription_jql("labels = ops AND watcher = bob", jira_check=True)
    assert compiled is not None and [r.clause for r in compiled.remote_clauses] == ["watcher = bob"]
    # Broken JQL stays broken with the opt-in.
    with pytest.raises(JqlError, match="column"):
        compile_subscription_jql("labels = ", jira_check=True)


def test_the_index_asks_jira_only_what_the_local_clauses_leave_open() -> None:
    subs = [
        sub("a-watched-ops", "labels = ops AND watcher = bob"),
        sub("b-watched-nope", "labels = nope AND watcher = bob"),
        sub("c-sprint", "project = WEB AND sprint in openSprints()"),
        sub("d-other-project", "project = API AND watcher = bob"),
        sub("e-created-only", "watcher = bob", events={"event_created"}),
        sub("f-local", "labels = ops", check="local"),
        sub("g-refused", "watcher = bob", check="local"),
    ]
    index = SubscriptionIndex.build(subs)
    assert index.has_remote
    questions = index.jira_questions(WEB, INSTANCE)
    assert questions == ["labels = ops AND watcher = bob", "project = WEB AND sprint in openSprints()"]
    # Unanswered questions do not match; answers decide.
    assert [s.name for s in index.match(WEB, INSTANCE)] == ["f-local"]
    answers = {"labels = ops AND watcher = bob": True, "project = WEB AND sprint in openSprints()": False}
    assert [s.name for s in index.match(WEB, INSTANCE, jira=answers)] == ["a-watched-ops", "f-local"]
    assert index.match_targets(WEB, INSTANCE, jira=answers) == [
        ("ch-a-watched-ops", "a-watched-ops"),
        ("ch-f-local", "f-local"),
    ]
    # The single-subscription function agrees.
    for s in subs:
        answer = answers.get(s.filters.jql or "")
        expected = s.name in ("a-watched-ops", "f-local")
        assert subscription_matches(s, WEB, jira=answer) is expected, s.name
    # The jql_check survives the index's compact entries.
    assert index.match(WEB, INSTANCE, jira=answers)[0] == subs[0]


def test_order_by_is_left_out_of_what_jira_is_asked() -> None:
    # Jira refuses `(… ORDER BY created) AND issue = 1`: the question is the query before it.
    s = sub("ordered", "labels = ops AND watcher = bob  order by created DESC, key")
    index = SubscriptionIndex.build([s])
    assert index.jira_questions(WEB, INSTANCE) == ["labels = ops AND watcher = bob"]
    assert [m.name for m in index.match(WEB, INSTANCE, jira={"labels = ops AND watcher = bob": True})] == [
        "ordered"
    ]
    compiled = compile_jql(" watcher = bob ")
    assert compiled.question == "watcher = bob"
    assert compile_jql('summary ~ "order by"').question == 'summary ~ "order by"'


def test_jira_is_not_asked_for_a_channel_that_already_matched_before() -> None:
    subs = [
        sub("a-local", "labels = ops", channel="ch", check="local"),
        sub("b-remote", "watcher = bob", channel="ch"),
        sub("c-remote-elsewhere", "watcher = bob AND labels = Urgent", channel="other"),
    ]
    index = SubscriptionIndex.build(subs)
    assert index.jira_questions(WEB, INSTANCE) == ["watcher = bob AND labels = Urgent"]
    # A remote subscription ranked first in its channel wins there only when Jira says yes.
    subs2 = [
        sub("a-remote", "watcher = bob", channel="ch"),
        sub("b-local", "labels = ops", channel="ch", check="local"),
    ]
    index2 = SubscriptionIndex.build(subs2)
    assert index2.jira_questions(WEB, INSTANCE) == ["watcher = bob"]
    assert [s.name for s in index2.match(WEB, INSTANCE, jira={"watcher = bob": True})] == ["a-remote"]
    assert [s.name for s in index2.match(WEB, INSTANCE, jira={"watcher = bob": False})] == ["b-local"]


def test_an_index_without_remote_clauses_asks_nothing() -> None:
    index = SubscriptionIndex.build([sub("local", "labels = ops", check="local")])
    assert not index.has_remote
    assert index.jira_questions(WEB, INSTANCE) == []


def test_custom_field_names_and_priority_order_from_the_instance() -> None:
    names = {INSTANCE: NAMES}
    subs = [
        sub("points", '"Story Points" > 3', check="local"),
        sub("team", "Team = 'red team' AND priority > Medium", check="local"),
        sub("low", "priority <= Low", check="local"),
    ]
    assert [s.name for s in SubscriptionIndex.build(subs).match(WEB, INSTANCE)] == []
    index = SubscriptionIndex.build(subs, names)
    assert [s.name for s in index.match(WEB, INSTANCE)] == ["points", "team"]
    for s in subs:
        assert subscription_matches(s, WEB, names=NAMES) is (s.name != "low")
    # Jira's order: `priority > Medium` is a higher priority than Medium.
    for jql, expected in [
        ("priority > Medium", True),
        ("priority > High", False),
        ("priority >= High", True),
        ("priority < Medium", False),
        ("priority <= Highest", True),
    ]:
        compiled = compile_subscription_jql(jql, names=NAMES)
        assert compiled is not None and compiled.matches(WEB, NOW) is expected, jql


def test_what_names_from_jira_could_resolve_is_reported_by_the_builder() -> None:
    assert needs_names('"Story Points" > 3')
    assert needs_names("priority > High")
    assert needs_names("priority > Blocker", NAMES)  # a priority Jira may have added since
    assert not needs_names("labels = ops")
    assert not needs_names("watcher = bob")  # only Jira answers it, whatever the names
    assert not needs_names("labels = ")
    with pytest.raises(NamesUnknown):
        compile_subscription_jql("priority > High")
    builder = IndexBuilder()
    builder.add(sub("points", '"Story Points" > 3', check="local"))
    builder.add(
        Subscription.model_validate(
            {
                **sub("other", "labels = ops", check="local").model_dump(),
                "instance_id": "https://b.example.com/",
            }
        )
    )
    builder.build()
    assert builder.names_wanted == {INSTANCE}
    # Names in use keep the instance wanted, so they are refreshed.
    builder = IndexBuilder({INSTANCE: NAMES})
    builder.add(sub("points", '"Story Points" > 3', check="local"))
    assert builder.names_wanted == {INSTANCE}


def test_explain_shows_remote_clauses_as_checked_by_jira() -> None:
    s = sub("watched", "labels = ops AND watcher = bob")
    unasked = explain(s, WEB, NOW)
    assert "✔ `labels = ops` (issue: ops, Urgent)" in unasked.lines
    assert "⇄ `watcher = bob`: checked by Jira when an event comes" in unasked.lines
    assert "? JQL as a whole: Jira decides (it could not be asked now)" in unasked.lines
    assert not unasked.matched and unasked.kinds == ("event_updated_status",)
    yes = explain(s, WEB, NOW, jira=True)
    assert "⇄ `watcher = bob`: checked by Jira (Jira says the issue matches the whole JQL)" in yes.lines
    assert "✔ JQL as a whole (answered by Jira)" in yes.lines
    assert yes.matched
    no = explain(s, WEB, NOW, jira=False)
    assert "✖ JQL as a whole (answered by Jira)" in no.lines
    assert not no.matched and no.kinds == ()
    # The local part already says no: Jira's answer does not matter.
    local_no = explain(sub("nope", "labels = nope AND watcher = bob"), WEB, NOW)
    assert "✖ JQL as a whole" in local_no.lines
    # Names learnt from Jira are used.
    named = explain(sub("points", '"Story Points" > 3', check="local"), WEB, NOW, names=NAMES)
    assert named.lines[-1] == "✔ JQL as a whole" and named.matched


# Cloud sends the sprints as objects; Server/Data Center as the Java toString of each sprint.
SPRINT_NAMES = JiraNames.of(
    {**NAMES.custom_fields, "Sprint": "customfield_10020", "Epic Link": "customfield_10008"}, NAMES.priorities
)
CLOUD_SPRINT = event(customfield_10020=[{"id": 37, "name": "Sprint 12", "state": "active", "boardId": 3}])
SERVER_SPRINT = event(
    customfield_10020=[
        "com.atlassian.greenhopper.service.sprint.Sprint@6b5e8c0f[id=37,rapidViewId=3,state=ACTIVE,"
        "name=Sprint 12,goal=,startDate=2026-02-02T09:00:00.000Z,endDate=2026-02-16T09:00:00.000Z,"
        "completeDate=<null>,sequence=37]"
    ]
)
NO_SPRINT = event(customfield_10020=None)


@pytest.mark.parametrize(
    ("jql", "cloud", "server", "none"),
    [
        ("sprint = 37", True, True, False),
        ('Sprint = "sprint 12"', True, True, False),
        ("sprint in (36, 38)", False, False, False),
        ("sprint != 36", True, True, False),  # an issue in no sprint is not "not in 36"
        ("sprint is EMPTY", False, False, True),
    ],
)
def test_sprint_by_id_or_name_once_the_field_list_names_it(
    jql: str, cloud: bool, server: bool, none: bool
) -> None:
    # Without the field list, the clause names the field list and learning names may resolve it.
    [remote] = compile_jql(jql).remote_clauses
    assert "field list" in remote.reason and needs_names(jql)
    compiled = compile_subscription_jql(jql, names=SPRINT_NAMES)
    assert compiled is not None and compiled.local
    assert [compiled.matches(e, NOW) for e in (CLOUD_SPRINT, SERVER_SPRINT, NO_SPRINT)] == [
        cloud,
        server,
        none,
    ]


def test_sprint_functions_stay_with_jira_whatever_the_names() -> None:
    compiled = compile_subscription_jql("sprint in openSprints()", jira_check=True, names=SPRINT_NAMES)
    assert compiled is not None and [r.clause for r in compiled.remote_clauses] == ["sprint in openSprints()"]
    assert not needs_names("sprint in openSprints()")


def test_epic_link_reads_parent_and_servers_epic_link_field() -> None:
    # Cloud: the epic is the parent (WEB-1 in the test issue).
    assert compile_jql('"Epic Link" = WEB-1').matches(WEB, NOW)
    server_story = event(parent=None, customfield_10008="WEB-7")
    for jql, expected in [('"Epic Link" = WEB-7', True), ('"epic link" in (WEB-1)', False)]:
        compiled = compile_subscription_jql(jql, names=SPRINT_NAMES)
        assert compiled is not None and compiled.matches(server_story, NOW) is expected, jql
        # Without the field list, only the parent is read.
        assert compile_jql(jql).matches(server_story, NOW) is False
    # Until the field list is read, the instance is wanted for it (Server keeps epics there).
    assert needs_names('"Epic Link" = WEB-7') and not needs_names('"Epic Link" = WEB-7', SPRINT_NAMES)
    assert not needs_names("parent = WEB-7")
    builder = IndexBuilder()
    builder.add(sub("epic", '"Epic Link" = WEB-7', check="local"))
    assert builder.names_wanted == {INSTANCE}
    index = SubscriptionIndex.build(
        [sub("epic", '"Epic Link" = WEB-7', check="local")], {INSTANCE: SPRINT_NAMES}
    )
    assert [m.name for m in index.match(server_story, INSTANCE)] == ["epic"]
    named = compile_subscription_jql('"Epic Link" = WEB-1', names=SPRINT_NAMES)
    assert named is not None and named.matches(WEB, NOW)  # Cloud's parent still counts
    [line] = named.explain(server_story, NOW)
    assert line.value == "WEB-7"
