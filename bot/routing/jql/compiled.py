"""A compiled JQL query: its clause tree, the evaluation of that tree and the per-clause results."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime

from bot.jira.events import IssueEvent
from bot.routing.jql.fields import IssueValues

# --- Compiled clauses ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ClauseResult:
    """One clause of a query, for `/jira subscribe test`: its text, whether the issue satisfies it,
    and the issue's value of the field."""

    clause: str
    matched: bool
    value: str
    remote: bool = False

    def line(self, jira: bool | None = None) -> str:
        """One line of the explanation; a remote clause is checked by Jira, whose answer for the
        whole query (`jira`) is shown when the check ran."""
        if not self.remote:
            return f"{'✔' if self.matched else '✖'} `{self.clause}` (issue: {self.value})"
        if jira is None:
            return f"⇄ `{self.clause}`: checked by Jira when an event comes"
        answer = "matches" if jira else "does not match"
        return f"⇄ `{self.clause}`: checked by Jira (Jira says the issue {answer} the whole JQL)"


@dataclass(frozen=True, slots=True)
class RemoteClause:
    clause: str
    column: int
    reason: str
    # The field name when the clause names a field unknown here (a custom field name, perhaps):
    # learning the instance's field names may make it local.
    unknown_field: str = ""


class _Leaf:
    __slots__ = ("remote", "show", "test", "text")

    def __init__(
        self,
        text: str,
        test: Callable[[IssueValues, datetime], bool],
        show: Callable[[IssueValues], str],
        remote: RemoteClause | None = None,
    ) -> None:
        self.text = text
        self.test = test
        self.show = show
        self.remote = remote


@dataclass(frozen=True, slots=True)
class _AndN:
    children: tuple[_Node, ...]


@dataclass(frozen=True, slots=True)
class _OrN:
    children: tuple[_Node, ...]


@dataclass(frozen=True, slots=True)
class _NotN:
    child: _Node


_Node = _Leaf | _AndN | _OrN | _NotN | None  # None: match everything


def _eval(node: _Node, values: IssueValues, now: datetime) -> bool:
    if node is None:
        return True
    if isinstance(node, _Leaf):
        return node.test(values, now)
    if isinstance(node, _AndN):
        return all(_eval(c, values, now) for c in node.children)
    if isinstance(node, _OrN):
        return any(_eval(c, values, now) for c in node.children)
    return not _eval(node.child, values, now)


def _decide(node: _Node, values: IssueValues, now: datetime) -> bool | None:
    """Three-valued evaluation: None when the answer depends on remote clauses (Kleene logic:
    `False AND ?` is False, `True OR ?` is True)."""
    if node is None:
        return True
    if isinstance(node, _Leaf):
        return None if node.remote is not None else node.test(values, now)
    if isinstance(node, _NotN):
        found = _decide(node.child, values, now)
        return None if found is None else not found
    decisive = isinstance(node, _OrN)  # the value that settles an OR (True) or an AND (False)
    result: bool | None = not decisive
    for child in node.children:
        found = _decide(child, values, now)
        if found is decisive:
            return decisive
        if found is None:
            result = None
    return result


def _leaves(node: _Node) -> Iterable[_Leaf]:
    if node is None:
        return
    if isinstance(node, _Leaf):
        yield node
    elif isinstance(node, _NotN):
        yield from _leaves(node.child)
    else:
        for child in node.children:
            yield from _leaves(child)


class CompiledJql:
    """A JQL query ready to be evaluated against events, many times."""

    __slots__ = (
        "_root",
        "filters_security",
        "partly_known",
        "projects",
        "question",
        "remote_clauses",
        "source",
    )

    def __init__(
        self,
        source: str,
        question: str,
        root: _Node,
        projects: frozenset[str] | None,
        remote_clauses: tuple[RemoteClause, ...],
        filters_security: bool,
        partly_known: bool = False,
    ) -> None:
        self.source = source
        # The query without ORDER BY: what is asked of Jira as `(<question>) AND issue = <id>`
        # (Jira refuses ORDER BY inside parentheses).
        self.question = question
        self._root = root
        # Project keys (upper case) every matching issue belongs to, from `project = X` or
        # `project IN (...)` at the top-level AND; None when the query does not say.
        self.projects = projects
        self.remote_clauses = remote_clauses
        # Whether a clause reads the security level (the routing's security rule then defers to it).
        self.filters_security = filters_security
        # Whether a field is read only in part for want of the instance's field list (`"Epic
        # Link"`: the parent alone until Server's Epic Link field is known by name).
        self.partly_known = partly_known

    @property
    def local(self) -> bool:
        return not self.remote_clauses

    def matches(self, event: IssueEvent | IssueValues, now: datetime) -> bool:
        values = event if isinstance(event, IssueValues) else IssueValues(event)
        return _eval(self._root, values, now)

    def decide(self, event: IssueEvent | IssueValues, now: datetime) -> bool | None:
        """Whether the issue matches, or None when only Jira can tell (the answer depends on
        remote clauses). Equal to `matches` for a query without remote clauses."""
        values = event if isinstance(event, IssueValues) else IssueValues(event)
        if not self.remote_clauses:
            return _eval(self._root, values, now)
        return _decide(self._root, values, now)

    def explain(self, event: IssueEvent, now: datetime) -> list[ClauseResult]:
        values = IssueValues(event)
        return [
            ClauseResult(leaf.text, leaf.test(values, now), leaf.show(values), leaf.remote is not None)
            for leaf in _leaves(self._root)
        ]
