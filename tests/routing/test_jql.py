"""The JQL compiler and evaluator: Jira's semantics, errors with their column, what is remote."""

from __future__ import annotations

from datetime import timedelta

import pytest

from bot.routing.jql import JqlError, compile_jql
from tests.routing.jql_events import NOW, event

EVENT = event()


def matches(jql: str, ev=EVENT, now=NOW, **kwargs) -> bool:  # type: ignore[no-untyped-def]
    compiled = compile_jql(jql, **kwargs)
    assert compiled.local, compiled.remote_clauses
    return compiled.matches(ev, now)


@pytest.mark.parametrize(
    ("jql", "expected"),
    [
        ("project = WEB", True),
        ("project = web", True),
        ("PROJECT = 10000", True),
        ('project = "Web Shop"', True),
        ("project = API", False),
        ("project in (API, WEB)", True),
        ("project not in (API, WEB)", False),
        ("issuetype = bug", True),
        ("type = Bug AND status = 'in progress'", True),
        ("status != Done", True),
        ("statusCategory = indeterminate", True),
        ('statusCategory = "In Progress"', True),
        ("statusCategory = 4", True),
        ("statusCategory = Done", False),
        ("priority in (High, Highest)", True),
        ("labels = urgent", True),
        ("labels = wontfix", False),
        ("labels != wontfix", True),
        ("labels not in (ops)", False),
        ("component = backend", True),
        ("components = Frontend", False),
        ("fixVersion = 2.0", True),
        ("affectedVersion = 2.0", False),
        ("affectedVersion is EMPTY", True),
        ("affectedVersion != 2.0", False),  # != never matches an empty field
        ("NOT affectedVersion = 2.0", True),  # NOT negates the clause, empty field included
        ("resolution = Unresolved", True),
        ("resolution is EMPTY", True),
        ("resolution is not empty", False),
        ("resolution != Fixed", False),  # empty field
        ("assignee = 5b10a2844c20165700ede21g", True),
        ("assignee = ada@example.com", True),
        ('assignee = "ada lovelace"', True),
        ("assignee != ada@example.com", False),
        ('reporter = "Grace Hopper"', True),
        ("creator = 5b10ac8d82e05b22cc7d4ef5", True),
        ("assignee is EMPTY", False),
        ("key = web-42", True),
        ("issue in (WEB-1, WEB-42)", True),
        ("key > WEB-40 AND key < WEB-50", True),
        ("key > WEB-42", False),
        ("parent = WEB-1", True),
        ('"Epic Link" = WEB-1', True),
        ("level is EMPTY", True),
        ("cf[10072] = 'red team'", True),
        ("cf[10072] = 20001", True),
        ("cf[10016] > 3", True),
        ("cf[10016] >= 6", False),
        ("cf[10016] is not empty", True),
        ("cf[10999] is empty", True),
        ("cf[10099] ~ payment", True),
        ("NOT project = WEB", False),
        ("project = WEB AND NOT labels = ops", False),
        ("project = API OR labels = ops AND priority = High", True),  # AND binds tighter than OR
        ("(project = API OR labels = ops) AND priority = Low", False),
        ("project = WEB && labels = ops || project = API", True),
        ("project = WEB ORDER BY created DESC, key ASC", True),
        ("ORDER BY created", True),
        ("", True),
    ],
)
def test_semantics(jql: str, expected: bool) -> None:
    assert matches(jql) is expected


@pytest.mark.parametrize(
    ("jql", "expected"),
    [
        ("summary ~ disk", True),
        ("summary ~ DISK", True),
        ('summary ~ "server disk"', True),  # every word, in any order
        ('summary ~ "server cpu"', False),
        ("summary ~ serv*", True),
        ("summary ~ serv", False),  # a word, not a substring
        ('summary ~ "\\"disk full\\""', True),  # exact phrase
        ('summary ~ "\\"full disk\\""', False),
        ("summary !~ cpu", True),
        ("summary !~ disk", False),
        ("description ~ nightly", True),
        ("text ~ nightly", True),
        ("text ~ gateway", True),  # text fields among the custom fields
        ("comment ~ reboot", False),
        ("summary is not empty", True),
        ("comment is empty", True),
    ],
)
def test_text_search(jql: str, expected: bool) -> None:
    assert matches(jql) is expected


def test_comment_search_reads_the_event_comment() -> None:
    ev = event(comment="Please reboot the runner")
    assert matches("comment ~ reboot", ev)
    assert matches("text ~ runner", ev)


@pytest.mark.parametrize(
    ("jql", "expected"),
    [
        ("created >= -7d", True),
        ("created >= -1d", False),
        ("created > '2026-02-08'", True),
        ("created < '2026/02/08 09:00'", False),
        ("updated >= startOfDay()", True),
        ("updated >= startOfDay(1d)", False),
        ("created >= startOfWeek(-1w) AND created <= endOfWeek(-1w)", True),  # Sunday Feb 8
        ("created >= startOfMonth() AND created <= endOfMonth()", True),
        ("created > startOfYear()", True),
        ("updated <= now()", True),
        ("duedate = 2026-02-20", True),
        ("due < endOfMonth()", True),
        ("duedate > '2026-02-20'", False),
        ("resolved is EMPTY", True),
        ("resolutiondate > -30d", False),  # empty
        ("created >= -2w", True),
        ("updated >= -4h", True),
        ("updated >= -30m", False),
    ],
)
def test_dates(jql: str, expected: bool) -> None:
    assert matches(jql) is expected


def test_relative_dates_follow_the_given_now() -> None:
    compiled = compile_jql("created >= -7d")
    assert compiled.matches(EVENT, NOW)
    assert not compiled.matches(EVENT, NOW + timedelta(days=7))


def test_priority_order_when_known() -> None:
    order = ["Highest", "High", "Medium", "Low", "Lowest"]
    assert matches("priority > Medium", priority_order=order)
    assert matches("priority >= high", priority_order=order)
    assert not matches("priority > High", priority_order=order)
    assert matches("priority < Highest", priority_order=order)


def test_priority_order_unknown_is_refused() -> None:
    with pytest.raises(JqlError, match="priority order"):
        compile_jql("priority > High")


def test_custom_field_by_name() -> None:
    names = {"Team": "customfield_10072", "Story Points": "customfield_10016"}
    assert matches('Team = "Red team" AND "story points" >= 5', custom_field_names=names)
    remote = compile_jql('"Story Points" > 3').remote_clauses
    assert [r.clause for r in remote] == ['"Story Points" > 3']


@pytest.mark.parametrize(
    ("jql", "column", "message"),
    [
        ("project = ", 11, 'expected a value after "="'),
        ("project = WEB AND status = ", 28, 'expected a value after "="'),
        ("project WEB", 9, "expected an operator"),
        ("project = WEB AND", 18, "expected a clause"),
        ("(project = WEB", 15, 'expected ")" to close the "(" of column 1'),
        ("project = WEB)", 14, '")" closes no "("'),
        ('summary ~ "open', 11, "no closing"),
        ("project in WEB", 12, 'expected "(" and a list'),
        ("project in (WEB API)", 17, 'expected "," or ")"'),
        ("status is Done", 11, "EMPTY or NULL"),
        ("summary = disk", 1, "text fields are searched with ~"),
        ("labels ~ ops", 1, "~ is for text fields"),
        ("created > yesterday", 11, "is not a date"),
        ("assignee = currentUser()", 12, "currentUser()"),
        ("status was", 11, 'expected a value after "WAS"'),
        ("status WAS Open FROM x", 17, "FROM goes with CHANGED, not with WAS"),
        ("status changed during (a)", 16, "DURING takes two dates"),
        ("status changed after EMPTY", 22, "expected a date after AFTER"),
        ('status changed before "2026-13-45"', 23, "is not a date"),
        ("status was Open by currentUser()", 20, "currentUser()"),
        ("project = WEB ORDER created", 21, 'expected "BY"'),
        ("project = WEB foo", 15, "expected AND, OR or ORDER BY"),
        ("status = bogus()", 10, "unknown function bogus()"),
        ("summary ~ '*disk'", 11, "only a trailing *"),
    ],
)
def test_errors_name_the_column(jql: str, column: int, message: str) -> None:
    with pytest.raises(JqlError) as caught:
        compile_jql(jql)
    assert caught.value.column == column
    assert message in str(caught.value)
    assert str(caught.value).startswith(f"column {column}: ")


def test_length_and_depth_limits() -> None:
    with pytest.raises(JqlError, match="longer than"):
        compile_jql("labels = a OR " * 400 + "labels = b")
    with pytest.raises(JqlError, match="nested"):
        compile_jql("(" * 30 + "labels = a" + ")" * 30)
    compile_jql("(" * 20 + "labels = a" + ")" * 20)


@pytest.mark.parametrize(
    ("jql", "clause"),
    [
        ("assignee in membersOf(developers)", "assignee in membersOf(developers)"),
        ("issue in issueHistory()", "issue in issueHistory()"),
        ("watcher = ada", "watcher = ada"),
        ("sprint = 5", "sprint = 5"),
        ("sprint in openSprints()", "sprint in openSprints()"),
        ('project = WEB AND "Flux Capacitor" = on', '"Flux Capacitor" = on'),
        # History: WAS and CHANGED with their predicates.
        ("status was Open AND labels = ops", "status was Open"),
        (
            'status CHANGED FROM "To Do" TO Done BY ada AFTER -7d',
            'status CHANGED FROM "To Do" TO Done BY ada AFTER -7d',
        ),
        (
            'assignee WAS NOT IN (ada, bob) DURING ("2026-01-01", startOfWeek()) ORDER BY created',
            'assignee WAS NOT IN (ada, bob) DURING ("2026-01-01", startOfWeek())',
        ),
        ("priority changed", "priority changed"),
    ],
)
def test_remote_clauses_are_named(jql: str, clause: str) -> None:
    compiled = compile_jql(jql)
    assert not compiled.local
    assert [r.clause for r in compiled.remote_clauses] == [clause]
    assert not compiled.matches(EVENT, NOW)  # never matches locally


@pytest.mark.parametrize(
    ("jql", "projects"),
    [
        ("project = web AND labels = ops", {"WEB"}),
        ("project in (WEB, API) AND status = Open", {"WEB", "API"}),
        ("project in (WEB, API) AND project = API", {"API"}),
        ("project = WEB OR labels = ops", None),
        ("labels = ops", None),
        ("project = 10000", None),
        ('project = "Web Shop"', None),
        ("NOT project = WEB", None),
    ],
)
def test_projects_for_the_index(jql: str, projects: set[str] | None) -> None:
    found = compile_jql(jql).projects
    assert (set(found) if found is not None else None) == projects


def test_explain_shows_each_clause_with_the_issue_value() -> None:
    compiled = compile_jql('project = WEB AND priority = Low AND summary ~ "disk"')
    lines = [r.line() for r in compiled.explain(EVENT, NOW)]
    assert lines == [
        "✔ `project = WEB` (issue: WEB)",
        "✖ `priority = Low` (issue: High)",
        '✔ `summary ~ "disk"` (issue: Disk full on the build server)',
    ]


def test_security_clause_is_flagged() -> None:
    assert compile_jql("level = Internal").filters_security
    assert not compile_jql("labels = x").filters_security
