"""The JQL parser under generated and mutated input (10,000 inputs: 5,000 token soups, 1,500
arbitrary texts, 3,500 mutated queries), and properties of the evaluator (1,000 more): NOT and De
Morgan's rewrites agree with it, ORDER BY changes nothing.

Linear time is asserted by counting the parser's steps (tokens consumed), not by the clock.
The file takes 10-20 s on 2 cores because the issue asks for at least 10,000 fuzzed inputs; the
token-soup test and the mutation test take most of it."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.routing.jql import JqlError, compile_jql
from bot.routing.jql.syntax import parse, tokenize
from tests.routing.jql_events import NOW, event

_FAST = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None)

_PIECES = [
    "project", "status", "labels", "summary", "cf[10072]", "created", "assignee", "priority",
    "=", "!=", "~", "!~", "<", ">=", " IN ", " NOT IN ", " IS ", " IS NOT ", " EMPTY ", " NULL ",
    " AND ", " OR ", " NOT ", "(", ")", ",", '"', "'", "\\", "WEB", "ops", "-7d", "now()",
    "startOfDay(-1d)", "membersOf(x)", " ORDER BY ", " DESC", "&&", "||", "!", "[", "]", " ", "é", "\n",
    " WAS ", " CHANGED ", " BY ", " DURING ", " FROM ", " TO ", " AFTER ", " ON ",
]  # fmt: skip

SEEDS = [
    'project = WEB AND status in (Open, "In Progress") ORDER BY created DESC',
    'labels = ops OR NOT (priority = High AND summary ~ "disk*")',
    "created >= -7d AND updated <= endOfWeek(-1w) AND cf[10072] IS NOT EMPTY",
    "assignee != ada@example.com AND component not in (Backend, 'Front end')",
    'status CHANGED FROM "To Do" TO Done BY ada AFTER -7d OR assignee WAS NOT IN (a, b) '
    'DURING ("2026-01-01", now())',
]


def _check(text: str) -> None:
    try:
        tokens = tokenize(text)
        parsed = parse(text)
        compile_jql(text)
    except JqlError as e:
        assert e.column >= 0
        return
    # Every step consumes one token (or stands at the end): linear in the length of the text.
    assert parsed.steps <= len(tokens) + 1
    assert len(tokens) <= len(text) + 1


@settings(_FAST, max_examples=5000)
@given(st.lists(st.sampled_from(_PIECES), max_size=30).map("".join))
def test_generated_token_soup_raises_only_jql_errors(text: str) -> None:
    _check(text)


@settings(_FAST, max_examples=1500)
@given(st.text(max_size=80))
def test_arbitrary_text_raises_only_jql_errors(text: str) -> None:
    _check(text)


@st.composite
def _mutated(draw: st.DrawFn) -> str:
    text = draw(st.sampled_from(SEEDS))
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(text)))
        action = draw(st.sampled_from(["insert", "delete", "replace"]))
        piece = draw(st.sampled_from(_PIECES))
        if action == "insert":
            text = text[:i] + piece + text[i:]
        elif action == "delete":
            text = text[:i] + text[i + draw(st.integers(1, 6)) :]
        else:
            text = text[:i] + piece + text[i + len(piece) :]
    return text


@settings(_FAST, max_examples=3500)
@given(_mutated())
def test_mutated_queries_raise_only_jql_errors(text: str) -> None:
    _check(text)


def test_deep_and_long_inputs_are_refused_quickly() -> None:
    for text in ["(" * 5000, "NOT " * 2000 + "a = b", "a = b AND " * 1000, '"' + "x" * 5000]:
        try:
            compile_jql(text)
        except JqlError:
            continue
        raise AssertionError(text[:40])


# -- properties of the evaluator -----------------------------------------------------------------

_CLAUSES = [
    "project = WEB", "project = API", "labels = ops", "labels != wontfix", "labels IS EMPTY",
    "priority in (High, Low)", "status != Done", "resolution = Unresolved", "affectedVersion != 1.0",
    'summary ~ "disk"', "summary !~ cpu", "created >= -1d", "created >= -7d", "assignee = ada@example.com",
    "cf[10016] > 3", "cf[10072] = 'Blue team'", "component not in (Backend)", "duedate < endOfMonth()",
]  # fmt: skip

EVENTS = [
    event(),
    event(labels=[], priority={"id": "4", "name": "Low"}, assignee=None, customfield_10016=None),
    event(project={"id": "1", "key": "API", "name": "Api"}, summary="CPU spike", components=[]),
]


def _expr(depth: int) -> st.SearchStrategy[str]:
    leaf = st.sampled_from(_CLAUSES)
    if depth == 0:
        return leaf
    sub = _expr(depth - 1)
    return st.one_of(
        leaf,
        st.tuples(sub, st.sampled_from([" AND ", " OR "]), sub).map(lambda t: f"({t[0]}{t[1]}{t[2]})"),
        sub.map(lambda s: f"NOT ({s})"),
    )


def _eval(text: str, index: int) -> bool:
    return compile_jql(text).matches(EVENTS[index], NOW)


@settings(_FAST, max_examples=700)
@given(_expr(3), _expr(3), st.integers(0, len(EVENTS) - 1))
def test_not_and_de_morgan_agree_with_the_evaluator(a: str, b: str, i: int) -> None:
    assert _eval(f"NOT ({a})", i) is not _eval(a, i)
    assert _eval(f"NOT ({a} AND {b})", i) == _eval(f"NOT ({a}) OR NOT ({b})", i)
    assert _eval(f"NOT ({a} OR {b})", i) == _eval(f"NOT ({a}) AND NOT ({b})", i)
    assert _eval(f"{a} AND {b}", i) == (_eval(a, i) and _eval(b, i))
    assert _eval(f"{a} OR {b}", i) == (_eval(a, i) or _eval(b, i))


@settings(_FAST, max_examples=300)
@given(_expr(3), st.integers(0, len(EVENTS) - 1), st.sampled_from(["created DESC", "key, priority ASC"]))
def test_order_by_changes_nothing(a: str, i: int, order: str) -> None:
    assert _eval(f"{a} ORDER BY {order}", i) == _eval(a, i)
    assert compile_jql(f"{a} order by {order}").projects == compile_jql(a).projects
