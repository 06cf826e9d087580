"""The JQL field table and the values each field reads from an event, computed lazily."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from bot.jira.events import IssueEvent, JiraUser, NamedValue

# --- The event's values, computed lazily --------------------------------------------------------

_WORD = re.compile(r"\w+")


class IssueValues:
    """The values JQL clauses read from one event, each computed at most once."""

    __slots__ = ("_cache", "event")

    def __init__(self, event: IssueEvent) -> None:
        self.event = event
        self._cache: dict[str, Any] = {}

    def get(self, key: str, compute: Callable[[IssueEvent], Any]) -> Any:
        try:
            return self._cache[key]
        except KeyError:
            value = self._cache[key] = compute(self.event)
            return value


def _field(event: IssueEvent, field_id: str) -> tuple[NamedValue, ...]:
    values = event.issue.field_values
    found = values.get(field_id)
    if found is None:
        lowered = field_id.lower()
        found = next((v for k, v in values.items() if k.lower() == lowered), ())
    return found


def _folded(named: Iterable[NamedValue]) -> frozenset[str]:
    out: set[str] = set()
    for v in named:
        if v.id:
            out.add(v.id.casefold())
        if v.name:
            out.add(v.name.casefold())
    return frozenset(out)


def _user_ids(user: JiraUser | None) -> frozenset[str]:
    if user is None:
        return frozenset()
    return frozenset(
        s.casefold() for s in (user.account_id, user.name, user.key, user.email, user.display_name) if s
    )


def _display(named: Iterable[NamedValue]) -> str:
    shown = [v.name or v.id for v in named]
    return ", ".join(shown) if shown else "EMPTY"


@dataclass(frozen=True, slots=True)
class _Source:
    """How to read one field: a cache key, the set of comparable strings, and what to show."""

    key: str
    read: Callable[[IssueEvent], frozenset[str]]
    show: Callable[[IssueEvent], str]


def _option(field_id: str) -> _Source:
    return _Source(field_id, lambda e: _folded(_field(e, field_id)), lambda e: _display(_field(e, field_id)))


def _either(first: _Source, second: _Source) -> _Source:
    """One field read from two places (`"Epic Link"`: the parent, or Server's Epic Link field)."""

    def read(e: IssueEvent) -> frozenset[str]:
        return first.read(e) | second.read(e)

    def show(e: IssueEvent) -> str:
        return first.show(e) if first.read(e) else second.show(e)

    return _Source(f"{first.key}|{second.key}", read, show)


def _project_values(e: IssueEvent) -> frozenset[str]:
    p = e.issue.project
    key = p.name or e.issue.key.rpartition("-")[0]
    return frozenset(s.casefold() for s in (p.id, key, e.issue.project_name) if s)


def _issue_type(e: IssueEvent) -> tuple[NamedValue, ...]:
    t = e.issue.issue_type
    return (t,) if t.id or t.name else ()


def _user_source(attr: str) -> _Source:
    def read(e: IssueEvent) -> frozenset[str]:
        user = getattr(e.issue, attr, None)
        if user is not None:
            return _user_ids(user)
        return _folded(_field(e, attr))

    def show(e: IssueEvent) -> str:
        user = getattr(e.issue, attr, None)
        if user is not None:
            return user.display_name or user.account_id or user.name or "?"
        return _display(_field(e, attr))

    return _Source(attr, read, show)


def _key_values(e: IssueEvent) -> frozenset[str]:
    return frozenset(s.casefold() for s in (e.issue.key, e.issue.id) if s)


_SOURCES: dict[str, _Source] = {
    "project": _Source("project", _project_values, lambda e: e.issue.project.name or "EMPTY"),
    "issuetype": _Source("issuetype", lambda e: _folded(_issue_type(e)), lambda e: _display(_issue_type(e))),
    "status": _option("status"),
    "statuscategory": _option("statusCategory"),
    "priority": _option("priority"),
    "resolution": _option("resolution"),
    "labels": _option("labels"),
    "component": _option("components"),
    "fixversion": _option("fixVersions"),
    "affectedversion": _option("versions"),
    "level": _option("security"),
    "parent": _option("parent"),
    "assignee": _user_source("assignee"),
    "reporter": _user_source("reporter"),
    "creator": _user_source("creator"),
    "key": _Source("key", _key_values, lambda e: e.issue.key or e.issue.id),
}

# Field names (lower-cased) -> the canonical name above, or a text / date field.
_ALIASES = {
    "type": "issuetype",
    "labels": "labels",
    "label": "labels",
    "components": "component",
    "fixversions": "fixversion",
    "affectedversions": "affectedversion",
    "version": "affectedversion",
    "security": "level",
    "securitylevel": "level",
    "epic link": "parent",
    "issue": "key",
    "issuekey": "key",
    "id": "key",
    "createddate": "created",
    "updateddate": "updated",
    "resolved": "resolutiondate",
    "due": "duedate",
}
_TEXT_FIELDS = frozenset({"summary", "description", "comment", "text", "environment"})
_DATE_FIELDS = frozenset({"created", "updated", "resolutiondate", "duedate"})
# Fields only Jira can answer: the issue's history, its watchers, votes, links, work logs ...
_REMOTE_FIELDS = frozenset(
    {
        "watcher", "watchers", "voter", "votes", "attachments", "issuelinktype", "filter", "request",
        "savedfilter", "searchrequest", "lastviewed", "worklogauthor", "worklogcomment",
        "worklogdate", "timespent", "originalestimate", "remainingestimate", "timeoriginalestimate",
        "timeestimate", "workratio", "subtasks", "category", "projecttype", "development",
        "team", "approvals", "request-channel-type", "organizations", "rank", "hierarchylevel",
    }
)  # fmt: skip
_REMOTE_FUNCTIONS = frozenset(
    {
        "membersof", "issuehistory", "opensprints", "closedsprints", "futuresprints",
        "watchedissues", "votedissues", "linkedissues", "updatedby", "releasedversions",
        "unreleasedversions", "latestreleasedversion", "earliestunreleasedversion",
        "componentsleadbyuser", "projectsleadbyuser", "projectswhereuserhaspermission",
        "projectswhereuserhasrole", "issueswithremotelinksbyglobalid", "lastlogin",
        "currentlogin", "standardissuetypes", "subtaskissuetypes", "parentepic",
        "portfoliochildissuesof", "childissuesof", "approved", "approver", "myapproval",
        "mypending", "pending", "pendingby", "cascadeoption", "issuesincomments",
    }
)  # fmt: skip
_CUSTOM_FIELD = re.compile(r"cf\[(\d+)\]", re.IGNORECASE)


def _text_of(field: str) -> Callable[[IssueEvent], str]:
    def read(e: IssueEvent) -> str:
        issue = e.issue
        comment = e.comment.body if e.comment is not None else ""
        if field == "summary":
            return issue.summary
        if field == "description":
            return issue.description
        if field == "comment":
            return comment
        if field == "environment":
            return " ".join(v.name for v in _field(e, "environment"))
        custom = " ".join(
            v.name for k, vs in issue.field_values.items() if k.startswith("customfield_") for v in vs
        )
        return "\n".join((issue.summary, issue.description, comment, custom))

    return read
