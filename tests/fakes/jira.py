"""An in-process Jira speaking the parts of REST API v2/v3 the bot uses, over real HTTP.

Two flavours, as the bot meets them:
- "cloud": users are identified by `accountId` (no name/key); basic auth is email + API token;
  OAuth 2.0 bearer tokens are accepted only under the API gateway prefix
  `/ex/jira/{cloud_id}/rest/...` (the same app plays api.atlassian.com for `cloud_id`);
  search is `/rest/api/3/search/jql` (also `/rest/api/2/search/jql`) paged by `nextPageToken`,
  and the removed `/rest/api/2/search` and `/rest/api/3/search` answer 410 Gone.
  Assignable-user search takes `query`; `username` is refused (GDPR strict mode).
- "server" (Data Center): users have `name` and `key`; personal access tokens as bearer,
  basic auth with username + password, OAuth 1.0a RSA-SHA1 (application links, signatures
  verified with the consumer's public key); search is `/rest/api/2/search` paged by `startAt`.
  Assignable-user search takes `username`. `version="8.x"` has only the old
  `/issue/createmeta?projectKeys=…&expand=projects.issuetypes.fields`; 9+ (the default) and
  Cloud only the per-project `/issue/createmeta/{project}/issuetypes[/{id}]`, paged under
  `issueTypes`/`fields` on Cloud and `values` + `isLast` on Server.

Behaviour copied from Jira where tests depend on it:
- JSON answers carry `Content-Type: application/json` exactly; errors have Jira's shape
  `{"errorMessages": [...], "errors": {...}}`.
- A user without browse permission on a project, or outside an issue's security level, gets
  404 "Issue does not exist or you do not have permission to see it." as if it did not exist.
  Users outside a project's `editors` may browse but get 403 on changes, and no transitions.
- Assignable users are the active users who may edit the project.
- GET /rest/api/2/issue/{id or key}?fields=… answers as Jira does (`*navigable`, names, `-name`
  to leave one out), the security level object included; GET /rest/api/2/user takes
  `accountId` on Cloud (`username` refused, GDPR strict mode) and `username` on Server, 404
  for no such user.
- Unknown credentials get 401; transitions, assignment and comments answer 204/201 like Jira.
- Attachments (POST /issue/{key}/attachments) need `X-Atlassian-Token: no-check` (else 403 "XSRF
  check failed") and the edit permission; each multipart `file` part is stored in `attachments`
  and answered as a list of attachment objects. `attachments_enabled = False` answers 403 as a
  site with attachments switched off does.
- Searches understand a JQL subset (`field =, !=, in, not in, is [not] EMPTY` joined by AND/OR,
  `currentUser()`, ORDER BY ignored) and cap page sizes at `max_results_cap`.
- Injected failures (`fail_next`) answer before authentication, 429/503 with `Retry-After`
  when given; `latency` delays every answer. `max_in_flight` records peak concurrency.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import itertools
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import policy as email_policy
from email.parser import BytesParser
from typing import Any, Literal
from urllib.parse import unquote

from aiohttp import web
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from oauthlib.oauth1.rfc5849 import signature as oauth_signature
from oauthlib.oauth1.rfc5849.utils import parse_authorization_header

Flavour = Literal["cloud", "server"]

_KeyFactory: Any = getattr(web, "RequestKey", None)
_USER: Any = _KeyFactory("jira_user", object) if _KeyFactory else "jira_user"
_GATEWAY: Any = _KeyFactory("jira_gateway", bool) if _KeyFactory else "jira_gateway"
_BODY: Any = _KeyFactory("jira_body", object) if _KeyFactory else "jira_body"

ISSUE_NOT_FOUND = "Issue does not exist or you do not have permission to see it."
DEFAULT_ISSUE_TYPES: dict[str, str] = {
    "Epic": "10000",
    "Story": "10001",
    "Task": "10002",
    "Sub-task": "10003",
    "Bug": "10004",
}
PRIORITIES: dict[str, str] = {"Highest": "1", "High": "2", "Medium": "3", "Low": "4", "Lowest": "5"}
STATUS_CATEGORIES = {"new": "To Do", "indeterminate": "In Progress", "done": "Done"}
# status name -> [(transition id, transition name, target status)]
DEFAULT_WORKFLOW: dict[str, list[tuple[str, str, str]]] = {
    "To Do": [("11", "Start Progress", "In Progress"), ("31", "Done", "Done")],
    "In Progress": [("21", "Stop Progress", "To Do"), ("31", "Done", "Done")],
    "Done": [("41", "Reopen", "To Do")],
}


@dataclass(frozen=True, slots=True)
class JiraRequest:
    method: str
    path: str  # as requested, gateway prefix included
    rest_path: str  # from /rest/ on
    user: str  # user id (accountId or name); empty when not authenticated
    status: int
    query: Mapping[str, str]
    body: Any
    gateway: bool  # came through /ex/jira/{cloud_id}


@dataclass(slots=True)
class _Failure:
    remaining: int
    status: int
    retry_after: float | None
    path: str | None


@dataclass(slots=True)
class FakeUser:
    id: str  # accountId (Cloud) or name (Server)
    display_name: str
    email: str
    key: str = ""
    password: str | None = None
    active: bool = True
    groups: set[str] = field(default_factory=set)


@dataclass(slots=True)
class FakeProject:
    id: str
    key: str
    name: str
    issue_types: list[str]  # issue type names
    browse: set[str] | None = None  # user ids; None: everyone
    editors: set[str] | None = None  # user ids; None: everyone who can browse
    # issue type id -> field id -> createmeta field (Jira's shape, without fieldId/key)
    create_fields: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)


class _JiraHTTPError(Exception):
    def __init__(
        self, status: int, messages: Iterable[str] = (), errors: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(status)
        self.status = status
        self.messages = list(messages)
        self.errors = dict(errors or {})


def _json(data: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(
        body=json.dumps(data).encode(),
        status=status,
        headers={"Content-Type": "application/json", **(headers or {})},
    )


def _error_response(
    status: int,
    messages: Iterable[str] = (),
    errors: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    return _json({"errorMessages": list(messages), "errors": dict(errors or {})}, status, headers)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000+0000")


def _adf(text: str) -> dict[str, Any]:
    """A description as API v3 returns it: an Atlassian Document Format document."""
    paragraphs = [p for p in text.split("\n") if p]
    return {
        "type": "doc",
        "version": 1,
        "content": [{"type": "paragraph", "content": [{"type": "text", "text": p}]} for p in paragraphs],
    }


class FakeJira:
    """Recorded Jira state plus an aiohttp application serving it."""

    def __init__(
        self,
        flavour: Flavour = "cloud",
        *,
        version: str | None = None,
        cloud_id: str = "11111111-2222-3333-4444-555555555555",
        latency: float = 0.0,
    ) -> None:
        if flavour not in ("cloud", "server"):
            raise ValueError(f"unknown flavour {flavour!r}")
        self.flavour: Flavour = flavour
        self.version = version or ("1001.0.0-SNAPSHOT" if flavour == "cloud" else "9.12.0")
        self.cloud_id = cloud_id
        self.latency = latency
        # Jira caps page sizes whatever maxResults asks for (100 for searches on Cloud).
        self.max_results_cap = 100
        self.users: dict[str, FakeUser] = {}
        self.projects: dict[str, FakeProject] = {}
        self.issues: dict[str, dict[str, Any]] = {}
        self.comments: dict[str, list[dict[str, Any]]] = {}
        # issue key -> attachments as Jira describes them, plus their "bytes"
        self.attachments: dict[str, list[dict[str, Any]]] = {}
        self.attachments_enabled = True
        self.workflow: dict[str, list[tuple[str, str, str]]] = {
            k: list(v) for k, v in DEFAULT_WORKFLOW.items()
        }
        self.status_ids: dict[str, str] = {"To Do": "10000", "In Progress": "3", "Done": "10001"}
        self.status_categories: dict[str, str] = {
            "To Do": "new",
            "In Progress": "indeterminate",
            "Done": "done",
        }
        self.issue_type_ids: dict[str, str] = dict(DEFAULT_ISSUE_TYPES)
        self.security_levels: dict[str, tuple[str, set[str]]] = {}  # name -> (id, member user ids)
        self.requests: list[JiraRequest] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._tokens: dict[str, str] = {}  # bearer token -> user id
        self._oauth1_consumers: dict[str, rsa.RSAPublicKey] = {}
        self._oauth1_tokens: dict[str, str] = {}  # OAuth 1.0a access token -> user id
        self._failures: list[_Failure] = []
        self._ids = itertools.count(10001)
        self._project_counters: dict[str, int] = {}

    @property
    def is_cloud(self) -> bool:
        return self.flavour == "cloud"

    @property
    def legacy_createmeta(self) -> bool:
        """Jira 8.x: only the old createmeta endpoint exists."""
        return not self.is_cloud and self.version.split(".")[0] in {"8", "7"}

    def _next_id(self) -> str:
        return str(next(self._ids))

    # -- setup --------------------------------------------------------------------------------------

    def add_user(
        self,
        display_name: str,
        *,
        email: str = "",
        name: str | None = None,
        account_id: str | None = None,
        password: str | None = None,
        groups: Iterable[str] = (),
        active: bool = True,
    ) -> str:
        """A user; returns its id: the accountId on Cloud, the username on Server. `password`
        is the API token (Cloud, with the email) or the password (Server, with the name)."""
        if self.is_cloud:
            user_id = account_id or f"5b10ac8d82e05b22cc7d{len(self.users):04d}"
            key = ""
        else:
            user_id = name or display_name.split()[0].lower()
            key = f"JIRAUSER{10000 + len(self.users)}"
        if user_id in self.users:
            raise ValueError(f"user {user_id} exists already")
        self.users[user_id] = FakeUser(user_id, display_name, email, key, password, active, set(groups))
        return user_id

    def add_token(self, token: str, user_id: str) -> None:
        """A bearer token acting as `user_id`: an OAuth 2.0 access token on Cloud (gateway
        only), a personal access token on Server."""
        self._user(user_id)
        self._tokens[token] = user_id

    def revoke_token(self, token: str) -> None:
        self._tokens.pop(token, None)

    def add_oauth1_consumer(self, consumer_key: str, public_key_pem: str) -> None:
        """An application link (Server): requests signed with the matching private key pass."""
        key = serialization.load_pem_public_key(public_key_pem.encode())
        if not isinstance(key, rsa.RSAPublicKey):
            raise ValueError("an application link needs an RSA public key")
        self._oauth1_consumers[consumer_key] = key

    def add_oauth1_token(self, token: str, user_id: str) -> None:
        self._user(user_id)
        self._oauth1_tokens[token] = user_id

    def add_project(
        self,
        key: str,
        name: str | None = None,
        *,
        project_id: str | None = None,
        issue_types: Iterable[str] = ("Task", "Bug"),
        browse: Iterable[str] | None = None,
        editors: Iterable[str] | None = None,
    ) -> FakeProject:
        """A project; `browse` and `editors` restrict who sees it and who may change its
        issues (user ids; None: everyone)."""
        types = list(issue_types)
        for type_name in types:
            self.issue_type_ids.setdefault(type_name, self._next_id())
        project = FakeProject(
            id=project_id or self._next_id(),
            key=key,
            name=name or key,
            issue_types=types,
            browse=set(browse) if browse is not None else None,
            editors=set(editors) if editors is not None else None,
        )
        self.projects[key] = project
        for type_name in types:
            project.create_fields[self.issue_type_ids[type_name]] = self._default_create_fields(
                project, type_name
            )
        return project

    def add_issue(
        self,
        project_key: str,
        summary: str,
        *,
        issue_type: str = "Task",
        status: str = "To Do",
        assignee: str | None = None,
        reporter: str | None = None,
        priority: str | None = "Medium",
        description: str = "",
        security: str | None = None,
        labels: Iterable[str] = (),
        issue_id: str | None = None,
        number: int | None = None,
        **custom_fields: Any,
    ) -> str:
        """An issue; returns its key. Users are ids (accountId or name). `issue_id` and `number`
        (the key's number) default to the next free ones; webhook fixtures name fixed ones.
        Other keyword arguments are further fields as Jira sends them (`components`,
        `fixVersions`, `customfield_10072`...)."""
        if project_key not in self.projects:
            raise ValueError(f"no project {project_key!r}")
        count = number if number is not None else self._project_counters.get(project_key, 0) + 1
        self._project_counters[project_key] = max(count, self._project_counters.get(project_key, 0))
        key = f"{project_key}-{count}"
        self.issues[key] = {
            "id": issue_id or self._next_id(),
            "key": key,
            "project": project_key,
            "issuetype": issue_type,
            "status": status,
            "summary": summary,
            "description": description,
            "assignee": assignee,
            "reporter": reporter,
            "priority": priority,
            "security": security,
            "labels": list(labels),
            "watchers": [],
            "custom": dict(custom_fields),
            "created": _now(),
            "updated": _now(),
        }
        self.comments[key] = []
        self.status_ids.setdefault(status, self._next_id())
        return key

    def set_security_level(self, name: str, members: Iterable[str]) -> None:
        """An issue security level: only `members` (user ids) see issues that carry it."""
        level_id = self.security_levels[name][0] if name in self.security_levels else self._next_id()
        self.security_levels[name] = (level_id, set(members))

    def set_transitions(self, status: str, transitions: Iterable[tuple[str, str, str]]) -> None:
        """The workflow from `status`: (transition id, transition name, target status)."""
        self.workflow[status] = list(transitions)
        for _, _, target in self.workflow[status]:
            self.status_ids.setdefault(target, self._next_id())
            self.status_categories.setdefault(target, "indeterminate")

    def add_create_field(
        self,
        project_key: str,
        field_id: str,
        meta: Mapping[str, Any],
        *,
        issue_types: Iterable[str] | None = None,
    ) -> None:
        """A field on the create screen of the project's issue types (names; None: all), in
        Jira's createmeta shape (`name`, `required`, `schema`, `allowedValues`...)."""
        project = self.projects[project_key]
        for type_name in issue_types if issue_types is not None else project.issue_types:
            type_id = self.issue_type_ids[type_name]
            project.create_fields.setdefault(type_id, {})[field_id] = {"hasDefaultValue": False, **meta}

    def load_createmeta(self, payload: Mapping[str, Any]) -> list[str]:
        """Projects, issue types and create screens from an old-style createmeta answer (as in
        the shared jira-rest fixtures); returns the project keys."""
        keys = []
        for raw in payload.get("projects") or []:
            types = raw.get("issuetypes") or []
            for t in types:
                self.issue_type_ids[t["name"]] = str(t["id"])
            project = self.projects.get(raw["key"]) or self.add_project(
                raw["key"], raw.get("name"), project_id=str(raw["id"]), issue_types=()
            )
            for t in types:
                if t["name"] not in project.issue_types:
                    project.issue_types.append(t["name"])
                fields = {
                    fid: {k: v for k, v in meta.items() if k != "key"} for fid, meta in t["fields"].items()
                }
                project.create_fields[str(t["id"])] = fields
            keys.append(raw["key"])
        return keys

    # -- failures and inspection --------------------------------------------------------------------

    def fail_next(
        self, n: int = 1, status: int = 503, retry_after: float | None = None, path: str | None = None
    ) -> None:
        """The next `n` requests (whose REST path, from /rest/, starts with `path` when given)
        get `status`; `retry_after` adds the Retry-After header, in whole seconds."""
        self._failures.append(_Failure(n, status, retry_after, path))

    def requests_to(self, rest_path: str, method: str | None = None) -> list[JiraRequest]:
        return [
            r
            for r in self.requests
            if r.rest_path == rest_path and (method is None or r.method == method.upper())
        ]

    def issue(self, key: str) -> dict[str, Any]:
        return self.issues[key]

    # -- serving ------------------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware])
        routes: list[tuple[str, str, Any]] = [
            ("GET", "/rest/api/2/myself", self._myself),
            ("GET", "/rest/api/2/serverInfo", self._server_info),
            ("GET", "/rest/api/2/project", self._projects),
            ("GET", "/rest/api/2/project/{key}", self._project),
            ("POST", "/rest/api/2/issue", self._create_issue),
            ("GET", "/rest/api/2/issue/createmeta", self._legacy_createmeta),
            ("GET", "/rest/api/2/issue/createmeta/{project}/issuetypes", self._createmeta_issue_types),
            ("GET", "/rest/api/2/issue/createmeta/{project}/issuetypes/{type_id}", self._createmeta_fields),
            ("GET", "/rest/api/2/issue/{key}", self._get_issue),
            ("GET", "/rest/api/2/issue/{key}/transitions", self._get_transitions),
            ("GET", "/rest/api/2/issue/{key}/watchers", self._get_watchers),
            ("POST", "/rest/api/2/issue/{key}/transitions", self._do_transition),
            ("PUT", "/rest/api/2/issue/{key}/assignee", self._assign),
            ("POST", "/rest/api/2/issue/{key}/comment", self._add_comment),
            ("POST", "/rest/api/2/issue/{key}/attachments", self._add_attachments),
            ("GET", "/rest/api/2/user/assignable/search", self._assignable),
            ("GET", "/rest/api/2/user", self._get_user),
        ]
        for version in ("2", "3"):
            for method in ("GET", "POST"):
                routes.append((method, f"/rest/api/{version}/search", self._search_old))
                routes.append((method, f"/rest/api/{version}/search/jql", self._search_jql))
        for method, path, handler in routes:
            app.router.add_route(method, path, handler)
            if self.is_cloud:
                app.router.add_route(method, "/ex/jira/{cloud_id}" + path, handler)
        return app

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        rest_path = request.path[request.path.find("/rest/") :] if "/rest/" in request.path else request.path
        body: Any = None
        user = ""
        try:
            if request.can_read_body:
                raw = await request.read()
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = raw.decode(errors="replace")
            if self.latency:
                await asyncio.sleep(self.latency)
            response = self._injected_failure(rest_path)
            if response is None:
                try:
                    request[_GATEWAY] = "cloud_id" in request.match_info
                    if request[_GATEWAY] and request.match_info["cloud_id"] != self.cloud_id:
                        raise _JiraHTTPError(404, ["Site not found"])
                    found = self._authenticate(request)
                    user = found.id if found else ""
                    request[_USER] = found
                    if found is None and rest_path != "/rest/api/2/serverInfo":
                        raise _JiraHTTPError(401, ["You are not authenticated. Authentication required."])
                    request[_BODY] = body
                    response = await handler(request)
                except _JiraHTTPError as exc:
                    response = _error_response(exc.status, exc.messages, exc.errors)
                except web.HTTPException as exc:
                    # No such route or method: what Jira's REST layer answers for those.
                    response = _json(
                        {"message": f"null for uri: {request.url}", "status-code": exc.status}, exc.status
                    )
            self.requests.append(
                JiraRequest(
                    request.method,
                    request.path,
                    rest_path,
                    user,
                    response.status,
                    dict(request.query),
                    body,
                    "cloud_id" in request.match_info,
                )
            )
            return response
        finally:
            self.in_flight -= 1

    def _injected_failure(self, rest_path: str) -> web.Response | None:
        for failure in self._failures:
            if failure.remaining > 0 and (failure.path is None or rest_path.startswith(failure.path)):
                failure.remaining -= 1
                headers = {}
                if failure.retry_after is not None:
                    headers["Retry-After"] = str(int(failure.retry_after))
                messages = (
                    ["Rate limit exceeded."]
                    if failure.status == 429
                    else [f"Injected failure {failure.status}."]
                )
                return _error_response(failure.status, messages, headers=headers)
        return None

    # -- authentication -----------------------------------------------------------------------------

    def _authenticate(self, request: web.Request) -> FakeUser | None:
        header = request.headers.get("Authorization", "")
        scheme, _, value = header.partition(" ")
        scheme = scheme.lower()
        if not header:
            return None
        user_id: str | None = None
        if scheme == "basic" and not request[_GATEWAY]:
            try:
                login, _, secret = base64.b64decode(value).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                login, secret = "", ""
            for user in self.users.values():
                identity = user.email if self.is_cloud else user.id
                if identity and identity == login and user.password is not None and user.password == secret:
                    user_id = user.id
        elif scheme == "bearer" and (request[_GATEWAY] or not self.is_cloud):
            # Cloud accepts OAuth 2.0 access tokens only through the API gateway.
            user_id = self._tokens.get(value.strip())
        elif scheme == "oauth" and not self.is_cloud:
            user_id = self._verify_oauth1(request, header)
        if user_id is None:
            raise _JiraHTTPError(401, ["You are not authenticated. Authentication required."])
        user = self.users[user_id]
        if not user.active:
            raise _JiraHTTPError(401, ["The user is deactivated."])
        return user

    def _verify_oauth1(self, request: web.Request, header: str) -> str | None:
        params = {k: unquote(v) for k, v in parse_authorization_header(header)}
        public_key = self._oauth1_consumers.get(params.get("oauth_consumer_key", ""))
        user_id = self._oauth1_tokens.get(params.get("oauth_token", ""))
        if public_key is None or user_id is None or params.get("oauth_signature_method") != "RSA-SHA1":
            return None
        collected = oauth_signature.collect_parameters(
            uri_query=request.query_string, headers={"Authorization": header}, exclude_oauth_signature=True
        )
        base_string = oauth_signature.signature_base_string(
            request.method,
            oauth_signature.base_string_uri(str(request.url.with_query(None))),
            oauth_signature.normalize_parameters(collected),
        )
        try:
            public_key.verify(
                base64.b64decode(params.get("oauth_signature", "")),
                base_string.encode(),
                padding.PKCS1v15(),
                hashes.SHA1(),
            )
        except (InvalidSignature, binascii.Error):
            return None
        return user_id

    # -- representation -----------------------------------------------------------------------------

    def _base(self, request: web.Request) -> str:
        origin = f"{request.scheme}://{request.host}"
        return f"{origin}/ex/jira/{self.cloud_id}" if request[_GATEWAY] else origin

    def _user(self, user_id: str) -> FakeUser:
        try:
            return self.users[user_id]
        except KeyError:
            raise ValueError(f"no user {user_id!r}") from None

    def _user_json(self, request: web.Request, user: FakeUser | None) -> dict[str, Any] | None:
        if user is None:
            return None
        base = self._base(request)
        data: dict[str, Any]
        if self.is_cloud:
            data = {"self": f"{base}/rest/api/2/user?accountId={user.id}", "accountId": user.id}
            data["accountType"] = "atlassian"
        else:
            data = {"self": f"{base}/rest/api/2/user?username={user.id}", "key": user.key, "name": user.id}
        data.update(
            emailAddress=user.email,
            displayName=user.display_name,
            active=user.active,
            timeZone="Europe/Berlin",
        )
        return data

    def _status_json(self, request: web.Request, name: str) -> dict[str, Any]:
        category = self.status_categories.get(name, "indeterminate")
        status_id = self.status_ids.setdefault(name, self._next_id())
        return {
            "self": f"{self._base(request)}/rest/api/2/status/{status_id}",
            "id": status_id,
            "name": name,
            "statusCategory": {"key": category, "name": STATUS_CATEGORIES[category]},
        }

    def _issue_type_json(self, request: web.Request, name: str) -> dict[str, Any]:
        type_id = self.issue_type_ids[name]
        return {
            "self": f"{self._base(request)}/rest/api/2/issuetype/{type_id}",
            "id": type_id,
            "name": name,
            "subtask": name == "Sub-task",
        }

    def _project_json(self, request: web.Request, project: FakeProject) -> dict[str, Any]:
        return {
            "self": f"{self._base(request)}/rest/api/2/project/{project.id}",
            "id": project.id,
            "key": project.key,
            "name": project.name,
            "projectTypeKey": "software",
        }

    def _issue_fields(
        self, request: web.Request, issue: dict[str, Any], *, adf: bool = False
    ) -> dict[str, Any]:
        base = self._base(request)
        priority = issue["priority"]
        security = issue["security"]
        fields: dict[str, Any] = {
            "summary": issue["summary"],
            "description": (_adf(issue["description"]) if adf else issue["description"]) or None,
            "status": self._status_json(request, issue["status"]),
            "issuetype": self._issue_type_json(request, issue["issuetype"]),
            "priority": {
                "self": f"{base}/rest/api/2/priority/{PRIORITIES[priority]}",
                "id": PRIORITIES[priority],
                "name": priority,
            }
            if priority
            else None,
            "assignee": self._user_json(request, self.users.get(issue["assignee"] or "")),
            "reporter": self._user_json(request, self.users.get(issue["reporter"] or "")),
            "project": self._project_json(request, self.projects[issue["project"]]),
            "labels": list(issue["labels"]),
            "created": issue["created"],
            "updated": issue["updated"],
            **issue["custom"],
        }
        if security:
            level_id = self.security_levels[security][0]
            fields["security"] = {
                "self": f"{base}/rest/api/2/securitylevel/{level_id}",
                "id": level_id,
                "name": security,
                "description": "",
            }
        return fields

    def _issue_json(
        self, request: web.Request, issue: dict[str, Any], wanted: list[str] | None, *, adf: bool = False
    ) -> dict[str, Any]:
        data: dict[str, Any] = {
            "expand": "renderedFields,names,schema,operations,editmeta,changelog,versionedRepresentations",
            "id": issue["id"],
            "self": f"{self._base(request)}/rest/api/2/issue/{issue['id']}",
            "key": issue["key"],
        }
        fields = self._issue_fields(request, issue, adf=adf)
        if wanted is not None and not {"*all", "*navigable"} & set(wanted):
            fields = {k: v for k, v in fields.items() if k in wanted}
        if wanted is not None:  # "-comment": every field asked for except comment
            fields = {k: v for k, v in fields.items() if f"-{k}" not in wanted}
        data["fields"] = fields
        return data

    # -- permissions --------------------------------------------------------------------------------

    @staticmethod
    def _current(request: web.Request) -> FakeUser:
        user = request[_USER]
        if user is None:
            raise _JiraHTTPError(401, ["You are not authenticated. Authentication required."])
        return user  # type: ignore[no-any-return]

    def _can_browse(self, user: FakeUser, project: FakeProject) -> bool:
        return project.browse is None or user.id in project.browse

    def _can_edit(self, user: FakeUser, project: FakeProject) -> bool:
        return self._can_browse(user, project) and (project.editors is None or user.id in project.editors)

    def _can_see(self, user: FakeUser, issue: dict[str, Any]) -> bool:
        if not self._can_browse(user, self.projects[issue["project"]]):
            return False
        level = issue["security"]
        return level is None or user.id in self.security_levels.get(level, ("", set()))[1]

    def _visible_issue(self, request: web.Request) -> dict[str, Any]:
        user = self._current(request)
        key = request.match_info["key"]
        issue = self.issues.get(key.upper()) or next(
            (i for i in self.issues.values() if i["id"] == key), None
        )
        if issue is None or not self._can_see(user, issue):
            raise _JiraHTTPError(404, [ISSUE_NOT_FOUND])
        return issue

    def _visible_project(self, request: web.Request, key_or_id: str) -> FakeProject:
        user = self._current(request)
        project = self.projects.get(key_or_id.upper()) or next(
            (p for p in self.projects.values() if p.id == key_or_id), None
        )
        if project is None or not self._can_browse(user, project):
            raise _JiraHTTPError(404, [f"No project could be found with key '{key_or_id}'."])
        return project

    # -- handlers: users, server --------------------------------------------------------------------

    async def _myself(self, request: web.Request) -> web.Response:
        user = self._current(request)
        data = self._user_json(request, user) or {}
        if "groups" in request.query.get("expand", "").split(","):
            items = []
            for group in sorted(user.groups):
                item: dict[str, Any] = {
                    "name": group,
                    "self": f"{self._base(request)}/rest/api/2/group?groupname={group}",
                }
                if self.is_cloud:
                    item["groupId"] = f"group-{group}"
                items.append(item)
            data["groups"] = {"size": len(items), "items": items}
        return _json(data)

    async def _server_info(self, request: web.Request) -> web.Response:
        numbers = [int(part) if part.isdigit() else 0 for part in re.split(r"[.-]", self.version)[:3]]
        return _json(
            {
                "baseUrl": f"{request.scheme}://{request.host}",
                "version": self.version,
                "versionNumbers": numbers,
                "deploymentType": "Cloud" if self.is_cloud else "Server",
                "buildNumber": 100000,
                "serverTitle": "Jira",
            }
        )

    async def _get_user(self, request: web.Request) -> web.Response:
        """GET /rest/api/2/user: by `accountId` on Cloud (`username` refused, GDPR strict mode),
        by `username` (or `key`) on Server/DC; 404 when there is no such user."""
        self._current(request)
        query = request.query
        if self.is_cloud:
            if "username" in query or "key" in query:
                raise _JiraHTTPError(
                    400, ["The query parameter 'username' is not supported in GDPR strict mode."]
                )
            wanted = query.get("accountId", "")
            user = self.users.get(wanted)
            if user is None:
                raise _JiraHTTPError(
                    404, ["Specified user does not exist or you do not have required permissions"]
                )
        else:
            wanted = query.get("username") or ""
            by_key = query.get("key") or ""
            user = self.users.get(wanted) or next(
                (u for u in self.users.values() if by_key and u.key == by_key), None
            )
            if user is None:
                raise _JiraHTTPError(404, [f"The user named '{wanted or by_key}' does not exist"])
        return _json(self._user_json(request, user))

    async def _assignable(self, request: web.Request) -> web.Response:
        self._current(request)
        query = request.query
        if self.is_cloud and "username" in query:
            raise _JiraHTTPError(
                400, ["The query parameter 'username' is not supported in GDPR strict mode."]
            )
        if not self.is_cloud and "username" not in query:
            raise _JiraHTTPError(400, ["The username query parameter was not provided"])
        if "issueKey" in query:
            issue = self.issues.get(query["issueKey"].upper())
            if issue is None or not self._can_see(self._current(request), issue):
                raise _JiraHTTPError(404, [ISSUE_NOT_FOUND])
            project = self.projects[issue["project"]]
        elif "project" in query:
            project = self._visible_project(request, query["project"])
        else:
            raise _JiraHTTPError(400, ["Neither an issue key nor a project key was provided."])
        needle = (query.get("query") if self.is_cloud else query.get("username")) or ""
        needle = needle.casefold()
        max_results = int(query.get("maxResults", "50"))
        found = [
            u
            for u in self.users.values()
            if u.active
            and self._can_edit(u, project)
            and (not needle or any(needle in text.casefold() for text in (u.display_name, u.email, u.id)))
        ]
        return _json([self._user_json(request, u) for u in found[:max_results]])

    # -- handlers: projects and create metadata -----------------------------------------------------

    async def _projects(self, request: web.Request) -> web.Response:
        user = self._current(request)
        visible = [p for p in self.projects.values() if self._can_browse(user, p)]
        return _json([self._project_json(request, p) for p in visible])

    async def _project(self, request: web.Request) -> web.Response:
        project = self._visible_project(request, request.match_info["key"])
        data = self._project_json(request, project)
        data["issueTypes"] = [self._issue_type_json(request, t) for t in project.issue_types]
        return _json(data)

    def _default_create_fields(self, project: FakeProject, type_name: str) -> dict[str, dict[str, Any]]:
        def system(
            name: str, schema_type: str, system_name: str, required: bool = False, **extra: Any
        ) -> dict[str, Any]:
            return {
                "required": required,
                "schema": {"type": schema_type, "system": system_name, **extra.pop("schema", {})},
                "name": name,
                "hasDefaultValue": extra.pop("hasDefaultValue", False),
                "operations": ["set"],
                **extra,
            }

        return {
            "summary": system("Summary", "string", "summary", True),
            "issuetype": system(
                "Issue Type",
                "issuetype",
                "issuetype",
                True,
                allowedValues=[{"id": self.issue_type_ids[type_name], "name": type_name}],
            ),
            "project": system(
                "Project",
                "project",
                "project",
                True,
                allowedValues=[{"id": project.id, "key": project.key, "name": project.name}],
            ),
            "description": system("Description", "string", "description"),
            "priority": system(
                "Priority",
                "priority",
                "priority",
                hasDefaultValue=True,
                allowedValues=[{"id": i, "name": n} for n, i in PRIORITIES.items()],
            ),
            "labels": system("Labels", "array", "labels", schema={"items": "string"}),
            "assignee": system("Assignee", "user", "assignee"),
            "reporter": system("Reporter", "user", "reporter", True, hasDefaultValue=True),
        }

    def _creatable_project(self, request: web.Request, key_or_id: str) -> FakeProject:
        project = self._visible_project(request, key_or_id)
        if not self._can_edit(self._current(request), project):
            raise _JiraHTTPError(403, ["You do not have permission to create issues in this project."])
        return project

    @staticmethod
    def _page(items: list[Any], request: web.Request) -> tuple[list[Any], int, int]:
        start = int(request.query.get("startAt", "0"))
        size = int(request.query.get("maxResults", "50"))
        return items[start : start + size], start, size

    def _paged(self, items: list[Any], request: web.Request, cloud_key: str) -> web.Response:
        page, start, size = self._page(items, request)
        if self.is_cloud:
            return _json({"maxResults": size, "startAt": start, "total": len(items), cloud_key: page})
        last = start + len(page) >= len(items)
        return _json(
            {"maxResults": size, "startAt": start, "total": len(items), "isLast": last, "values": page}
        )

    def _no_such_resource(self, request: web.Request) -> web.Response:
        # What Jira 8's REST layer answers for a resource it does not have.
        return _json({"message": f"null for uri: {request.url}", "status-code": 404}, 404)

    async def _createmeta_issue_types(self, request: web.Request) -> web.Response:
        if self.legacy_createmeta:
            return self._no_such_resource(request)
        project = self._creatable_project(request, request.match_info["project"])
        types = []
        for name in project.issue_types:
            entry = self._issue_type_json(request, name)
            entry["description"] = ""
            types.append(entry)
        return self._paged(types, request, "issueTypes")

    async def _createmeta_fields(self, request: web.Request) -> web.Response:
        if self.legacy_createmeta:
            return self._no_such_resource(request)
        project = self._creatable_project(request, request.match_info["project"])
        fields = project.create_fields.get(request.match_info["type_id"])
        if fields is None:
            raise _JiraHTTPError(
                404, ["Issue type with given ID does not exist or is not available in the project."]
            )
        items = []
        for field_id, meta in fields.items():
            entry = {**meta, "fieldId": field_id}
            if self.is_cloud:
                entry["key"] = field_id
            items.append(entry)
        return self._paged(items, request, "fields")

    async def _legacy_createmeta(self, request: web.Request) -> web.Response:
        if not self.legacy_createmeta:
            # Removed in Jira 9 and on Cloud.
            return self._no_such_resource(request)
        user = self._current(request)
        keys = {k.upper() for k in request.query.get("projectKeys", "").split(",") if k}
        type_ids = {t for t in request.query.get("issuetypeIds", "").split(",") if t}
        expand_fields = "projects.issuetypes.fields" in request.query.get("expand", "")
        projects = []
        for project in self.projects.values():
            if (keys and project.key not in keys) or not self._can_edit(user, project):
                continue
            entry: dict[str, Any] = {**self._project_json(request, project), "issuetypes": []}
            for name in project.issue_types:
                type_entry = self._issue_type_json(request, name)
                if type_ids and type_entry["id"] not in type_ids:
                    continue
                if expand_fields:
                    type_entry["fields"] = project.create_fields.get(type_entry["id"], {})
                entry["issuetypes"].append(type_entry)
            projects.append(entry)
        return _json({"expand": "projects", "projects": projects})

    # -- handlers: issues ---------------------------------------------------------------------------

    async def _get_issue(self, request: web.Request) -> web.Response:
        issue = self._visible_issue(request)
        wanted = request.query.get("fields")
        return _json(self._issue_json(request, issue, wanted.split(",") if wanted else None))

    def _transitions_for(self, user: FakeUser, issue: dict[str, Any]) -> list[tuple[str, str, str]]:
        if not self._can_edit(user, self.projects[issue["project"]]):
            return []  # Jira lists only the transitions the user may make
        return self.workflow.get(issue["status"], [])

    async def _get_watchers(self, request: web.Request) -> web.Response:
        issue = self._visible_issue(request)
        watchers = [self._user_json(request, self.users.get(w)) for w in issue.get("watchers", [])]
        return _json({"isWatching": False, "watchCount": len(watchers), "watchers": watchers})

    async def _get_transitions(self, request: web.Request) -> web.Response:
        issue = self._visible_issue(request)
        items = []
        for transition_id, name, target in self._transitions_for(self._current(request), issue):
            items.append(
                {
                    "id": transition_id,
                    "name": name,
                    "to": self._status_json(request, target),
                    "hasScreen": False,
                    "isGlobal": False,
                    "isInitial": False,
                    "isConditional": False,
                }
            )
        return _json({"expand": "transitions", "transitions": items})

    async def _do_transition(self, request: web.Request) -> web.Response:
        issue = self._visible_issue(request)
        body = request[_BODY] if isinstance(request[_BODY], dict) else {}
        wanted = str((body.get("transition") or {}).get("id", ""))
        for transition_id, _, target in self._transitions_for(self._current(request), issue):
            if transition_id == wanted:
                issue["status"] = target
                issue["updated"] = _now()
                return web.Response(status=204)
        raise _JiraHTTPError(400, [f"Transition id '{wanted}' is not valid for this issue."])

    def _find_user(self, ref: Any) -> FakeUser | None:
        """A user reference in a request body: {"accountId"} on Cloud, {"name"} on Server."""
        if not isinstance(ref, dict):
            return None
        ident = ref.get("accountId") if self.is_cloud else ref.get("name")
        return self.users.get(ident or "")

    async def _assign(self, request: web.Request) -> web.Response:
        issue = self._visible_issue(request)
        project = self.projects[issue["project"]]
        if not self._can_edit(self._current(request), project):
            raise _JiraHTTPError(403, ["You do not have permission to assign issues."])
        body = request[_BODY] if isinstance(request[_BODY], dict) else {}
        id_key = "accountId" if self.is_cloud else "name"
        if self.is_cloud and "name" in body:
            raise _JiraHTTPError(
                400, ["'accountId' must be the only user identifying query parameter in GDPR strict mode."]
            )
        if id_key not in body:
            raise _JiraHTTPError(400, [], {"assignee": f"Specify the assignee by '{id_key}'."})
        if body[id_key] in (None, "-1"):
            issue["assignee"] = None
        else:
            user = self._find_user(body)
            if user is None or not user.active or not self._can_edit(user, project):
                raise _JiraHTTPError(
                    400, [], {"assignee": f"User '{body[id_key]}' cannot be assigned issues."}
                )
            issue["assignee"] = user.id
        issue["updated"] = _now()
        return web.Response(status=204)

    async def _add_comment(self, request: web.Request) -> web.Response:
        issue = self._visible_issue(request)
        user = self._current(request)
        if not self._can_edit(user, self.projects[issue["project"]]):
            raise _JiraHTTPError(403, ["You do not have the permission to comment on this issue."])
        body = request[_BODY] if isinstance(request[_BODY], dict) else {}
        text = body.get("body")
        if not isinstance(text, str) or not text.strip():
            raise _JiraHTTPError(400, [], {"comment": "Comment body can not be empty!"})
        comment_id = self._next_id()
        author = self._user_json(request, user)
        comment = {
            "self": f"{self._base(request)}/rest/api/2/issue/{issue['id']}/comment/{comment_id}",
            "id": comment_id,
            "author": author,
            "body": text,
            "updateAuthor": author,
            "created": _now(),
            "updated": _now(),
        }
        self.comments[issue["key"]].append(comment)
        return _json(comment, 201)

    async def _add_attachments(self, request: web.Request) -> web.Response:
        if request.headers.get("X-Atlassian-Token", "").lower() != "no-check":
            raise _JiraHTTPError(403, ["XSRF check failed"])
        issue = self._visible_issue(request)
        user = self._current(request)
        if not self.attachments_enabled:
            raise _JiraHTTPError(403, ["Attachments are disabled."])
        if not self._can_edit(user, self.projects[issue["project"]]):
            raise _JiraHTTPError(403, ["You do not have permission to create attachments for this issue."])
        raw = await request.read()  # the middleware read it already; aiohttp keeps the bytes
        header = f"Content-Type: {request.headers.get('Content-Type', '')}\r\n\r\n".encode()
        message = BytesParser(policy=email_policy.HTTP).parsebytes(header + raw)
        if not message.is_multipart():
            raise _JiraHTTPError(415, ["Expected a multipart/form-data request."])
        created = []
        for part in message.iter_parts():
            if part.get_param("name", header="content-disposition") != "file":
                continue
            content = part.get_payload(decode=True) or b""
            attachment_id = self._next_id()
            entry = {
                "self": f"{self._base(request)}/rest/api/2/attachment/{attachment_id}",
                "id": attachment_id,
                "filename": part.get_filename() or "",
                "author": self._user_json(request, user),
                "created": _now(),
                "size": len(content),
                "mimeType": part.get_content_type(),
                "content": f"{self._base(request)}/secure/attachment/{attachment_id}/{part.get_filename()}",
            }
            self.attachments.setdefault(issue["key"], []).append({**entry, "bytes": content})
            created.append(entry)
        if not created:
            raise _JiraHTTPError(400, ["No file was sent."])
        return _json(created)

    async def _create_issue(self, request: web.Request) -> web.Response:
        user = self._current(request)
        body = request[_BODY] if isinstance(request[_BODY], dict) else {}
        fields = body.get("fields")
        if not isinstance(fields, dict):
            raise _JiraHTTPError(400, ["Issue must be created with 'fields'."])
        project_ref = fields.get("project") or {}
        project_key = (
            project_ref.get("key") or project_ref.get("id") if isinstance(project_ref, dict) else None
        )
        if not project_key:
            raise _JiraHTTPError(400, [], {"project": "Specify a valid project ID or key"})
        try:
            project = self._creatable_project(request, str(project_key))
        except _JiraHTTPError as exc:
            if exc.status == 404:
                raise _JiraHTTPError(400, [], {"project": "Specify a valid project ID or key"}) from None
            raise
        raw_type = fields.get("issuetype")
        type_ref: dict[str, Any] = raw_type if isinstance(raw_type, dict) else {}
        type_name = next(
            (
                n
                for n in project.issue_types
                if type_ref.get("id") == self.issue_type_ids[n] or type_ref.get("name") == n
            ),
            None,
        )
        if type_name is None:
            raise _JiraHTTPError(400, [], {"issuetype": "Specify an issue type"})
        screen = project.create_fields.get(self.issue_type_ids[type_name], {})
        errors: dict[str, str] = {}
        for field_id, meta in screen.items():
            if (
                meta.get("required")
                and not meta.get("hasDefaultValue")
                and fields.get(field_id) in (None, "", [], {})
            ):
                errors[field_id] = (
                    "You must specify a summary of the issue."
                    if field_id == "summary"
                    else f"{meta.get('name', field_id)} is required."
                )
        for field_id in fields:
            if field_id not in screen:
                errors[field_id] = (
                    f"Field '{field_id}' cannot be set. It is not on the appropriate screen, or unknown."
                )
        priority = None
        if isinstance(fields.get("priority"), dict):
            ref = fields["priority"]
            priority = next(
                (n for n, i in PRIORITIES.items() if ref.get("id") == i or ref.get("name") == n), None
            )
            if priority is None:
                errors["priority"] = "Specify a valid priority."
        assignee = None
        if fields.get("assignee") is not None:
            found = self._find_user(fields["assignee"])
            if found is None or not self._can_edit(found, project):
                errors["assignee"] = "User cannot be assigned issues."
            else:
                assignee = found.id
        if errors:
            raise _JiraHTTPError(400, [], errors)
        known = {
            "project",
            "issuetype",
            "summary",
            "description",
            "priority",
            "assignee",
            "reporter",
            "labels",
        }
        key = self.add_issue(
            project.key,
            str(fields.get("summary", "")),
            issue_type=type_name,
            assignee=assignee,
            reporter=user.id,
            priority=priority or "Medium",
            description=str(fields.get("description") or ""),
            labels=fields.get("labels") or (),
            **{k: v for k, v in fields.items() if k not in known},
        )
        issue = self.issues[key]
        return _json(
            {"id": issue["id"], "key": key, "self": f"{self._base(request)}/rest/api/2/issue/{issue['id']}"},
            201,
        )

    # -- handlers: search ---------------------------------------------------------------------------

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
        matcher = _parse_jql(jql, self, user)
        return [i for i in self.issues.values() if self._can_see(user, i) and matcher(i)]


# -- a small JQL subset -------------------------------------------------------------------------------

_TOKEN_RE = re.compile(
    r'\s*(?:(?P<str>"[^"]*"|\'[^\']*\')|(?P<op>!=|=|\(|\)|,)|(?P<word>[^\s=!(),"\']+(?:\(\))?))'
)
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
    ORDER BY ignored. Enough for the bot's queries."""
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

    if not tokens:
        return lambda issue: True
    alternatives = [conjunction()]
    while pos < len(tokens) and tokens[pos].lower() == "or":
        take()
        alternatives.append(conjunction())
    if pos != len(tokens):
        raise _jql_error(f"Error in the JQL Query: unexpected '{tokens[pos]}'.")
    return lambda issue: any(a(issue) for a in alternatives)
