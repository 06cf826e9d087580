"""An in-process Jira Service Management speaking the parts of its REST API the change gate uses.

Two flavours: "cloud" authenticates with basic auth (email + API token) and searches with
`/rest/api/3/search/jql` (paged by `nextPageToken`; `/rest/api/2/search` answers 410 Gone);
"server" (Data Center) takes personal access tokens as bearer and searches with
`/rest/api/2/search` (paged by `startAt`).

Served: service desks and request types (paged `start`/`limit`/`isLastPage`), create request,
issues with status and the planned start/end custom fields (resolvable by name through
`/rest/api/2/field`), comments (the platform's, always public, and the service desk's with
`public` true or false), and a JQL subset: clauses joined by AND among `project = X`,
`summary ~ "..."`, `statusCategory != Done` / `= Done`, `status = X`, ORDER BY ignored.

Behaviour copied from Jira where the gate depends on it:
- `summary ~` is fuzzy: case-insensitive, punctuation (quotes, curly quotes) ignored, every word of
  the query present in any order, so the caller must compare summaries exactly.
- JSON answers carry `Content-Type: application/json` exactly; errors are
  `{"errorMessages": [...], "errors": {...}}`; a missing issue is a 404.
- `fail_next(status)` answers before authentication (503/429 with Retry-After when given).
"""

from __future__ import annotations

import base64
import binascii
import itertools
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from aiohttp import web
from aiohttp.test_utils import TestServer

Flavour = Literal["cloud", "server"]
_BODY = web.RequestKey("jsm_body", object)

PLANNED_START_ID = "customfield_10201"
PLANNED_END_ID = "customfield_10202"
ISSUE_NOT_FOUND = "Issue does not exist or you do not have permission to see it."
# JSM's change workflow, with the status category each status belongs to.
STATUS_CATEGORIES: dict[str, str] = {
    "Open": "new",
    "Preview": "new",
    "Planning": "indeterminate",
    "Authorize": "indeterminate",
    "Awaiting Implementation": "indeterminate",
    "Implementing": "indeterminate",
    "Peer review": "indeterminate",
    "Completed": "done",
    "Declined": "done",
    "Canceled": "done",
    "Failed": "done",
}
_CATEGORY_NAMES = {"new": "To Do", "indeterminate": "In Progress", "done": "Done"}
_WORD = re.compile(r"[0-9a-z]+(?:\.[0-9a-z]+)*")


@dataclass(frozen=True, slots=True)
class JsmRequest:
    method: str
    path: str
    status: int
    query: Mapping[str, str]
    body: Any


@dataclass(slots=True)
class _Failure:
    remaining: int
    status: int
    retry_after: float | None
    path: str | None


@dataclass(slots=True)
class FakeIssue:
    id: str
    key: str
    project: str
    summary: str
    description: str
    status: str
    request_type_id: str = ""
    fields: dict[str, Any] = field(default_factory=dict)  # custom field id -> value as Jira sends it


class _HTTPError(Exception):
    def __init__(self, status: int, *messages: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(status)
        self.status = status
        self.messages = list(messages)
        self.headers = dict(headers or {})


def _json(data: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(
        body=json.dumps(data).encode(),
        status=status,
        headers={"Content-Type": "application/json", **(headers or {})},
    )


def words(text: str) -> list[str]:
    """How the fake's text search sees text: lowercase words, punctuation dropped."""
    return _WORD.findall(text.casefold())


class FakeJsm:
    """Recorded JSM state plus an aiohttp application serving it."""

    def __init__(self, flavour: Flavour = "cloud", *, initial_status: str = "Planning") -> None:
        if flavour not in ("cloud", "server"):
            raise ValueError(f"unknown flavour {flavour!r}")
        self.flavour: Flavour = flavour
        self.initial_status = initial_status
        self.service_desks: dict[str, dict[str, Any]] = {}  # id -> {id, projectKey, projectName}
        self.request_types: dict[str, list[dict[str, Any]]] = {}  # desk id -> request types
        self.issues: dict[str, FakeIssue] = {}  # id -> issue
        self.comments: dict[str, list[str]] = {}  # issue key -> comment bodies, in order
        # issue key -> whether each comment (same order) is public; the platform API's are.
        self.comments_public: dict[str, list[bool]] = {}
        self.requests: list[JsmRequest] = []
        self.page_size = 2  # small, so that clients must follow the pages
        self.extra_fields: list[dict[str, Any]] = []
        self._ids = itertools.count(10001)
        self._numbers: dict[str, itertools.count[int]] = {}
        self._basic: dict[tuple[str, str], str] = {}  # (email, api token) -> account
        self._tokens: dict[str, str] = {}  # PAT -> account
        self._failures: list[_Failure] = []
        self._server: TestServer | None = None

    # -- setup ----------------------------------------------------------------------------------

    def add_api_token(self, email: str, token: str) -> None:
        self._basic[(email, token)] = email

    def add_pat(self, token: str, name: str = "svc-gate") -> None:
        self._tokens[token] = name

    def add_service_desk(self, project_key: str, name: str = "") -> str:
        desk_id = str(len(self.service_desks) + 1)
        self.service_desks[desk_id] = {
            "id": desk_id,
            "projectId": str(next(self._ids)),
            "projectKey": project_key,
            "projectName": name or project_key,
        }
        self.request_types[desk_id] = []
        self._numbers.setdefault(project_key, itertools.count(1))
        return desk_id

    def add_request_type(self, desk_id: str, name: str) -> str:
        type_id = str(next(self._ids))
        self.request_types[desk_id].append(
            {"id": type_id, "name": name, "serviceDeskId": desk_id, "issueTypeId": "10100", "description": ""}
        )
        return type_id

    def add_issue(
        self, project: str, summary: str, status: str = "Planning", **planned: str | None
    ) -> FakeIssue:
        """An issue made in Jira by a person (not through the gate)."""
        issue = self._new_issue(project, summary, "", status, "")
        self.set_planned(issue.key, **planned)
        return issue

    def set_status(self, key: str, status: str) -> None:
        """Move the issue to `status`, as a transition in Jira would."""
        if status not in STATUS_CATEGORIES:
            raise ValueError(f"unknown status {status!r}")
        self.issue(key).status = status

    def set_planned(self, key: str, start: str | None = None, end: str | None = None) -> None:
        """Planned start/end as Jira sends them: `2024-05-01T10:00:00.000+0200` or `2024-05-01`."""
        issue = self.issue(key)
        issue.fields[PLANNED_START_ID] = start
        issue.fields[PLANNED_END_ID] = end

    def issue(self, key_or_id: str) -> FakeIssue:
        found = self._find(key_or_id)
        if found is None:
            raise KeyError(key_or_id)
        return found

    def fail_next(
        self, status: int, *, times: int = 1, retry_after: float | None = None, path: str | None = None
    ) -> None:
        """The next `times` requests (whose path starts with `path`, when given) answer `status`."""
        self._failures.append(_Failure(times, status, retry_after, path))

    def requests_to(self, path_prefix: str, method: str | None = None) -> list[JsmRequest]:
        return [
            r
            for r in self.requests
            if r.path.startswith(path_prefix) and (method is None or r.method == method.upper())
        ]

    def creates(self) -> list[JsmRequest]:
        """The requests to create a customer request (not those commenting on one)."""
        return [r for r in self.requests if r.method == "POST" and r.path == "/rest/servicedeskapi/request"]

    # -- serving --------------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware])
        r = app.router
        r.add_get("/rest/servicedeskapi/servicedesk", self._service_desks)
        r.add_get("/rest/servicedeskapi/servicedesk/{desk_id}/requesttype", self._request_types)
        r.add_post("/rest/servicedeskapi/request", self._create_request)
        r.add_get("/rest/api/2/field", self._fields)
        r.add_get("/rest/api/2/issue/{key}", self._get_issue)
        r.add_post("/rest/api/2/issue/{key}/comment", self._add_comment)
        r.add_post("/rest/servicedeskapi/request/{key}/comment", self._add_request_comment)
        r.add_route("*", "/rest/api/3/search/jql", self._search_cloud)
        r.add_route("*", "/rest/api/2/search", self._search_server)
        return app

    async def start(self) -> str:
        if self._server is None:
            self._server = TestServer(self.app())
            await self._server.start_server()
        return self.url

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.close()
            self._server = None

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("FakeJsm.start() has not been called")
        return str(self._server.make_url("")).rstrip("/")

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        body: Any = None
        if request.can_read_body:
            raw = await request.read()
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = raw.decode(errors="replace")
        try:
            failure = self._take_failure(request.path)
            if failure is not None:
                headers = {"Retry-After": str(failure.retry_after)} if failure.retry_after is not None else {}
                raise _HTTPError(failure.status, f"injected failure {failure.status}", headers=headers)
            self._authenticate(request)
            content_type = request.headers.get("Content-Type", "").split(";")[0]
            if request.method in ("POST", "PUT") and body is not None and content_type != "application/json":
                raise _HTTPError(415, "Content-Type must be application/json")
            request[_BODY] = body
            response = await handler(request)
        except _HTTPError as e:
            response = _json({"errorMessages": e.messages, "errors": {}}, e.status, e.headers)
        self.requests.append(
            JsmRequest(request.method, request.path, response.status, dict(request.query), body)
        )
        return response

    def _take_failure(self, path: str) -> _Failure | None:
        for failure in self._failures:
            if failure.remaining > 0 and (failure.path is None or path.startswith(failure.path)):
                failure.remaining -= 1
                return failure
        return None

    def _authenticate(self, request: web.Request) -> str:
        header = request.headers.get("Authorization", "")
        scheme, _, value = header.partition(" ")
        if self.flavour == "cloud" and scheme == "Basic":
            try:
                email, _, token = base64.b64decode(value).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                raise _HTTPError(401, "Basic authentication is malformed") from None
            account = self._basic.get((email, token))
        elif self.flavour == "server" and scheme == "Bearer":
            account = self._tokens.get(value)
        else:
            account = None
        if account is None:
            raise _HTTPError(
                401, "You are not authenticated. Authentication required to perform this operation."
            )
        return account

    # -- handlers -------------------------------------------------------------------------------

    def _page(self, request: web.Request, values: list[dict[str, Any]]) -> web.Response:
        start = int(request.query.get("start", "0"))
        limit = min(int(request.query.get("limit", "50")), self.page_size)
        chunk = values[start : start + limit]
        return _json(
            {
                "size": len(chunk),
                "start": start,
                "limit": limit,
                "isLastPage": start + len(chunk) >= len(values),
                "values": chunk,
            }
        )

    async def _service_desks(self, request: web.Request) -> web.Response:
        return self._page(request, list(self.service_desks.values()))

    async def _request_types(self, request: web.Request) -> web.Response:
        desk_id = request.match_info["desk_id"]
        if desk_id not in self.request_types:
            raise _HTTPError(404, f"The service desk {desk_id} does not exist.")
        return self._page(request, self.request_types[desk_id])

    async def _create_request(self, request: web.Request) -> web.Response:
        body = request[_BODY]
        if not isinstance(body, dict):
            raise _HTTPError(400, "The request body is not valid JSON.")
        desk = self.service_desks.get(str(body.get("serviceDeskId")))
        if desk is None:
            raise _HTTPError(404, "The service desk does not exist.")
        type_id = str(body.get("requestTypeId"))
        if not any(t["id"] == type_id for t in self.request_types[desk["id"]]):
            raise _HTTPError(400, f"The request type {type_id} does not exist in this service desk.")
        values = body.get("requestFieldValues") or {}
        summary = values.get("summary")
        if not isinstance(summary, str) or not summary.strip():
            raise _HTTPError(400, "Summary is required.")
        issue = self._new_issue(
            desk["projectKey"], summary, str(values.get("description") or ""), self.initial_status, type_id
        )
        return _json(
            {
                "issueId": issue.id,
                "issueKey": issue.key,
                "requestTypeId": type_id,
                "serviceDeskId": desk["id"],
                "createdDate": {"iso8601": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S%z")},
                "currentStatus": {
                    "status": issue.status,
                    "statusCategory": STATUS_CATEGORIES[issue.status].upper(),
                },
                "_links": {
                    "web": f"{self._base(request)}/servicedesk/customer/portal/{desk['id']}/{issue.key}",
                    "agent": f"{self._base(request)}/browse/{issue.key}",
                    "self": f"{self._base(request)}/rest/servicedeskapi/request/{issue.id}",
                },
            },
            status=201,
        )

    async def _fields(self, request: web.Request) -> web.Response:
        fields = [
            {
                "id": "summary",
                "name": "Summary",
                "custom": False,
                "schema": {"type": "string", "system": "summary"},
            },
            {
                "id": "status",
                "name": "Status",
                "custom": False,
                "schema": {"type": "status", "system": "status"},
            },
            {
                "id": "customfield_10200",
                "name": "Planned start",
                "custom": True,
                "schema": {"type": "string"},
            },
            {"id": PLANNED_START_ID, "name": "Planned start", "custom": True, "schema": {"type": "datetime"}},
            {"id": PLANNED_END_ID, "name": "Planned end", "custom": True, "schema": {"type": "datetime"}},
            *self.extra_fields,
        ]
        return _json(fields)

    async def _get_issue(self, request: web.Request) -> web.Response:
        issue = self._find(request.match_info["key"])
        if issue is None:
            raise _HTTPError(404, ISSUE_NOT_FOUND)
        wanted = [f for f in request.query.get("fields", "*all").split(",") if f]
        return _json(self._issue_json(issue, wanted, request))

    async def _add_comment(self, request: web.Request) -> web.Response:
        issue = self._find(request.match_info["key"])
        if issue is None:
            raise _HTTPError(404, ISSUE_NOT_FOUND)
        body = request[_BODY]
        text = body.get("body") if isinstance(body, dict) else None
        if not isinstance(text, str) or not text.strip():
            raise _HTTPError(400, "Comment body can not be empty!")
        comments = self.comments.setdefault(issue.key, [])
        comments.append(text)
        self.comments_public.setdefault(issue.key, []).append(True)
        return _json({"id": str(next(self._ids)), "body": text}, status=201)

    async def _add_request_comment(self, request: web.Request) -> web.Response:
        # POST /rest/servicedeskapi/request/{issueIdOrKey}/comment, body {"body", "public"}: JSM's
        # CommentCreateDTO; 201 with a CommentDTO. "public" defaults to true; false is internal.
        issue = self._find(request.match_info["key"])
        if issue is None:
            raise _HTTPError(404, ISSUE_NOT_FOUND)
        body = request[_BODY]
        text = body.get("body") if isinstance(body, dict) else None
        if not isinstance(text, str) or not text.strip():
            raise _HTTPError(400, "Comment body can not be empty!")
        public = body.get("public", True)
        if not isinstance(public, bool):
            raise _HTTPError(400, "public must be a boolean")
        self.comments.setdefault(issue.key, []).append(text)
        self.comments_public.setdefault(issue.key, []).append(public)
        return _json({"id": str(next(self._ids)), "body": text, "public": public}, status=201)

    async def _search_cloud(self, request: web.Request) -> web.Response:
        if self.flavour != "cloud":
            raise _HTTPError(404, "null for uri")
        query = self._search_query(request)
        matches = self._run_jql(str(query.get("jql", "")))
        size = min(int(query.get("maxResults", 50)), self.page_size)
        start = int(query.get("nextPageToken") or 0)
        chunk = matches[start : start + size]
        fields = _field_list(query.get("fields"))
        answer: dict[str, Any] = {
            "issues": [self._issue_json(i, fields, request) for i in chunk],
            "isLast": start + size >= len(matches),
        }
        if start + size < len(matches):
            answer["nextPageToken"] = str(start + size)
        return _json(answer)

    async def _search_server(self, request: web.Request) -> web.Response:
        if self.flavour == "cloud":
            raise _HTTPError(
                410, "The requested API has been removed. Please migrate to /rest/api/3/search/jql."
            )
        query = self._search_query(request)
        matches = self._run_jql(str(query.get("jql", "")))
        size = min(int(query.get("maxResults", 50)), self.page_size)
        start = int(query.get("startAt", 0))
        fields = _field_list(query.get("fields"))
        return _json(
            {
                "startAt": start,
                "maxResults": size,
                "total": len(matches),
                "issues": [self._issue_json(i, fields, request) for i in matches[start : start + size]],
            }
        )

    # -- internals ------------------------------------------------------------------------------

    def _new_issue(
        self, project: str, summary: str, description: str, status: str, type_id: str
    ) -> FakeIssue:
        numbers = self._numbers.setdefault(project, itertools.count(1))
        issue = FakeIssue(
            id=str(next(self._ids)),
            key=f"{project}-{next(numbers)}",
            project=project,
            summary=summary,
            description=description,
            status=status,
            request_type_id=type_id,
            fields={PLANNED_START_ID: None, PLANNED_END_ID: None},
        )
        self.issues[issue.id] = issue
        return issue

    def _find(self, key_or_id: str) -> FakeIssue | None:
        if key_or_id in self.issues:
            return self.issues[key_or_id]
        return next((i for i in self.issues.values() if i.key.upper() == key_or_id.upper()), None)

    @staticmethod
    def _base(request: web.Request) -> str:
        return f"{request.scheme}://{request.host}"

    def _issue_json(self, issue: FakeIssue, wanted: Iterable[str], request: web.Request) -> dict[str, Any]:
        category = STATUS_CATEGORIES.get(issue.status, "indeterminate")
        everything: dict[str, Any] = {
            "summary": issue.summary,
            "description": issue.description,
            "status": {
                "name": issue.status,
                "id": str(abs(hash(issue.status)) % 10000),
                "statusCategory": {"key": category, "name": _CATEGORY_NAMES[category]},
            },
            "project": {"key": issue.project},
            **issue.fields,
        }
        wanted = list(wanted)
        if "*all" not in wanted:
            everything = {k: v for k, v in everything.items() if k in wanted}
        return {
            "id": issue.id,
            "key": issue.key,
            "self": f"{self._base(request)}/rest/api/2/issue/{issue.id}",
            "fields": everything,
        }

    @staticmethod
    def _search_query(request: web.Request) -> Mapping[str, Any]:
        if request.method == "POST":
            body = request[_BODY]
            if not isinstance(body, dict):
                raise _HTTPError(400, "The request body is not valid JSON.")
            return body
        return request.query

    def _run_jql(self, jql: str) -> list[FakeIssue]:
        clauses = _parse_jql(jql)
        return [
            i for i in sorted(self.issues.values(), key=lambda i: int(i.id)) if all(c(i) for c in clauses)
        ]


def _field_list(value: Any) -> list[str]:
    if isinstance(value, list):
        return [str(v) for v in value]
    if isinstance(value, str):
        return [v for v in value.split(",") if v]
    return ["*all"]


_CLAUSE = re.compile(
    r'\s*(?P<field>[A-Za-z]+)\s*(?P<op>!=|=|~)\s*(?P<value>"(?:[^"\\]|\\.)*"|[^\s"]+)\s*', re.DOTALL
)


def _unquote(value: str) -> str:
    if value.startswith('"'):
        return re.sub(r"\\(.)", r"\1", value[1:-1])
    return value


def _parse_jql(jql: str) -> list[Any]:
    """The subset the gate sends: clauses joined by AND, ORDER BY ignored. Anything else is a
    400, as Jira answers a query it cannot parse."""
    text = re.split(r"\border\s+by\b", jql, flags=re.IGNORECASE)[0]
    parts = re.split(r"\s+AND\s+", text.strip(), flags=re.IGNORECASE) if text.strip() else []
    clauses = []
    for part in parts:
        m = _CLAUSE.fullmatch(part)
        if m is None:
            raise _HTTPError(400, f"Error in the JQL Query: cannot parse {part!r}.")
        name, op, value = m["field"].lower(), m["op"], _unquote(m["value"])
        clauses.append(_clause(name, op, value))
    return clauses


def _clause(name: str, op: str, value: str) -> Any:
    if name == "project" and op == "=":
        return lambda i: i.project.upper() == value.upper()
    if name == "summary" and op == "~":
        # Jira's phrase search, loosely: every word present, case and punctuation ignored.
        wanted = set(words(value))
        return lambda i: bool(wanted) and wanted <= set(words(i.summary))
    if name == "statuscategory" and op in ("=", "!="):
        target = value.casefold()

        def in_category(i: FakeIssue) -> bool:
            category = STATUS_CATEGORIES.get(i.status, "indeterminate")
            return target in (category, _CATEGORY_NAMES[category].casefold())

        return in_category if op == "=" else (lambda i: not in_category(i))
    if name == "status" and op in ("=", "!="):
        return (
            (lambda i: i.status.casefold() == value.casefold())
            if op == "="
            else (lambda i: i.status.casefold() != value.casefold())
        )
    raise _HTTPError(400, f"Field '{name}' does not support operator '{op}' in this fake.")
