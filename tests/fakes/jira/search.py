"""Searching: the old /search (Server, startAt) and /search/jql (Cloud, nextPageToken), over a
small JQL subset."""

from __future__ import annotations

import base64
import binascii
import re
from typing import TYPE_CHECKING, Any

from aiohttp import web

from tests.fakes.jira.common import (
    _BODY,
    FakeUser,
    _JiraHTTPError,
    _json,
)

if TYPE_CHECKING:
    from tests.fakes.jira.server import FakeJira


class Search:
    """POST/GET /rest/api/{2,3}/search and /search/jql.

    State lives on `FakeJira` (server.py).
    """

    def _search_params(self, request: web.Request) -> tuple[str, list[str] | None, int, str]:
        if request.method == "POST":
            body = request[_BODY] if isinstance(request[_BODY], dict) else {}
            jql = str(body.get("jql") or "")
            fields = body.get("fields")
            return (
                jql,
                list(fields) if fields is not None else None,
                int(body.get("maxResults", 50)),
                str(body.get("nextPageToken") or body.get("startAt") or ""),
            )
        query = request.query
        fields_text = query.get("fields")
        fields_list = [f for f in fields_text.split(",") if f] if fields_text is not None else None
        return (
            query.get("jql", ""),
            fields_list,
            int(query.get("maxResults", "50")),
            query.get("nextPageToken") or query.get("startAt") or "",
        )

    async def _search_old(self, request: web.Request) -> web.Response:
        if self.is_cloud or request.path.startswith("/rest/api/3/"):
            if self.is_cloud:
                raise _JiraHTTPError(
                    410,
                    [
                        "The requested API has been removed. Please migrate to the /rest/api/3/search/jql "
                        "API. A full migration guideline is available at "
                        "https://developer.atlassian.com/changelog/#CHANGE-2046"
                    ],
                )
            return self._no_such_resource(request)
        jql, fields, max_results, start = self._search_params(request)
        max_results = min(max_results, self.max_results_cap)
        found = self._run_jql(request, jql)
        start_at = int(start or 0)
        page = found[start_at : start_at + max_results]
        return _json(
            {
                "expand": "names,schema",
                "startAt": start_at,
                "maxResults": max_results,
                "total": len(found),
                "issues": [self._issue_json(request, i, fields) for i in page],
            }
        )

    async def _search_jql(self, request: web.Request) -> web.Response:
        if not self.is_cloud:
            return self._no_such_resource(request)
        jql, fields, max_results, token = self._search_params(request)
        max_results = min(max_results, self.max_results_cap)
        found = self._run_jql(request, jql)
        try:
            offset = int(base64.urlsafe_b64decode(token.encode()).decode()) if token else 0
        except (ValueError, binascii.Error):
            raise _JiraHTTPError(400, ["Invalid nextPageToken."]) from None
        page = found[offset : offset + max_results]
        adf = request.path.split("/rest/api/")[1].startswith("3")
        issues = []
        for issue in page:
            if not fields:
                # The enhanced search returns only ids unless fields are asked for.
                issues.append({"id": issue["id"]})
            else:
                issues.append(self._issue_json(request, issue, fields, adf=adf))
        data: dict[str, Any] = {"issues": issues, "isLast": offset + len(page) >= len(found)}
        if not data["isLast"]:
            data["nextPageToken"] = base64.urlsafe_b64encode(str(offset + len(page)).encode()).decode()
        return _json(data)

    def _run_jql(self, request: web.Request, jql: str) -> list[dict[str, Any]]:
        user = self._current(request)
        matcher = self._answered_jql(jql) or _parse_jql(jql, self, user)
        return [i for i in self.issues.values() if self._can_see(user, i) and matcher(i)]

    def _answered_jql(self, jql: str) -> Any:
        """`(<JQL>) AND issue = <id or key>` with <JQL> in `jql_answers`: the canned answer."""
        found = _ONE_ISSUE.fullmatch(jql.strip())
        if found is None or found["inner"].strip() not in self.jql_answers:
            return None
        keys, wanted = self.jql_answers[found["inner"].strip()], found["issue"].strip("\"'").casefold()
        if not any(wanted in (i["key"].casefold(), i["id"]) for i in self.issues.values()):
            # What Jira answers when `issue =` names an issue it does not know.
            raise _jql_error(f"An issue with key '{found['issue']}' does not exist for field 'issue'.")
        return lambda issue: issue["key"] in keys and wanted in (issue["key"].casefold(), issue["id"])


# -- a small JQL subset -------------------------------------------------------------------------------

_TOKEN_RE = re.compile(
    r'\s*(?:(?P<str>"[^"]*"|\'[^\']*\')|(?P<op>!=|=|\(|\)|,)|(?P<word>[^\s=!(),"\']+(?:\(\))?))'
)
_ONE_ISSUE = re.compile(r"\((?P<inner>.*)\)\s+AND\s+issue\s*=\s*(?P<issue>\S+)", re.IGNORECASE | re.DOTALL)
_JQL_FIELDS = {
    "project": "project",
    "key": "key",
    "issuekey": "key",
    "status": "status",
    "assignee": "assignee",
    "reporter": "reporter",
    "issuetype": "issuetype",
    "type": "issuetype",
    "priority": "priority",
    "labels": "labels",
}


def _jql_error(message: str) -> _JiraHTTPError:
    return _JiraHTTPError(400, [message])


def _tokenize(jql: str) -> list[str]:
    tokens: list[str] = []
    pos = 0
    text = jql.strip()
    while pos < len(text):
        match = _TOKEN_RE.match(text, pos)
        if match is None or match.end() == pos:
            raise _jql_error(f"Error in the JQL Query: unexpected character at position {pos}.")
        tokens.append(match.group(match.lastgroup or "word").strip())
        pos = match.end()
    return [t for t in tokens if t]


def _parse_jql(jql: str, fake: FakeJira, user: FakeUser) -> Any:
    """`field (=|!=|in|not in|is|is not) value` clauses joined by AND/OR (AND binds tighter),
    parentheses, ORDER BY ignored. Enough for the bot's queries."""
    tokens = _tokenize(re.split(r"\border\s+by\b", jql, flags=re.IGNORECASE)[0])
    pos = 0

    def take() -> str:
        nonlocal pos
        if pos >= len(tokens):
            raise _jql_error("Error in the JQL Query: the query ended unexpectedly.")
        pos += 1
        return tokens[pos - 1]

    def value(token: str) -> str | None:
        if token.lower() in {"empty", "null"}:
            return None
        if token.lower() == "currentuser()":
            return user.id
        return token[1:-1] if token[:1] in "\"'" else token

    def clause() -> Any:
        if pos < len(tokens) and tokens[pos] == "(":
            take()
            inner = disjunction()
            if take() != ")":
                raise _jql_error("Error in the JQL Query: expected ')'.")
            return inner
        name = take()
        attr = _JQL_FIELDS.get(name.lower())
        if attr is None:
            raise _jql_error(f"Field '{name}' does not exist or you do not have permission to view it.")
        op = take().lower()
        negate = False
        if op == "not":  # NOT IN
            negate, op = True, take().lower()
        elif op == "is" and pos < len(tokens) and tokens[pos].lower() == "not":
            take()
            negate = True
        elif op == "!=":
            negate, op = True, "="
        if op == "in":
            if take() != "(":
                raise _jql_error("Error in the JQL Query: expected '(' after IN.")
            values: list[str | None] = []
            while True:
                values.append(value(take()))
                sep = take()
                if sep == ")":
                    break
                if sep != ",":
                    raise _jql_error("Error in the JQL Query: expected ',' or ')'.")
        elif op in ("=", "is"):
            values = [value(take())]
        else:
            raise _jql_error(f"Error in the JQL Query: the operator '{op}' is not supported.")
        folded = {v.casefold() if v is not None else None for v in values}

        def test(issue: dict[str, Any]) -> bool:
            raw = issue[attr]
            if attr == "project":
                project = fake.projects[raw]
                candidates: list[str | None] = [project.key, project.id]
            elif attr == "key":
                candidates = [issue["key"], issue["id"]]
            elif attr == "issuetype":
                candidates = [raw, fake.issue_type_ids.get(raw)]
            elif attr == "status":
                candidates = [raw, fake.status_ids.get(raw)]
            elif attr == "labels":
                candidates = list(raw) or [None]
            else:
                candidates = [raw]
            hit = any((c.casefold() if c is not None else None) in folded for c in candidates)
            return hit != negate

        return test

    def conjunction() -> Any:
        tests = [clause()]
        while pos < len(tokens) and tokens[pos].lower() == "and":
            take()
            tests.append(clause())
        return lambda issue: all(t(issue) for t in tests)

    def disjunction() -> Any:
        alternatives = [conjunction()]
        while pos < len(tokens) and tokens[pos].lower() == "or":
            take()
            alternatives.append(conjunction())
        return lambda issue: any(a(issue) for a in alternatives)

    if not tokens:
        return lambda issue: True
    matcher = disjunction()
    if pos != len(tokens):
        raise _jql_error(f"Error in the JQL Query: unexpected '{tokens[pos]}'.")
    return matcher
