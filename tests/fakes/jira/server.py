"""The fake Jira itself: its state, setting it up (users, tokens, projects, issues, create
fields), injected failures and the request log, the aiohttp application with its middleware,
and authentication (basic, bearer, OAuth 2.0 through the gateway, OAuth 1.0a)."""

from __future__ import annotations

import asyncio
import base64
import binascii
import itertools
import json
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import unquote

from aiohttp import web
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from oauthlib.oauth1.rfc5849 import signature as oauth_signature
from oauthlib.oauth1.rfc5849.utils import parse_authorization_header

from tests.fakes.jira.common import (
    _BODY,
    _GATEWAY,
    _USER,
    DEFAULT_ISSUE_TYPES,
    DEFAULT_WORKFLOW,
    PRIORITIES,
    FakeProject,
    FakeUser,
    Flavour,
    JiraRequest,
    _error_response,
    _Failure,
    _JiraHTTPError,
    _json,
    _now,
)
from tests.fakes.jira.issues import Issues
from tests.fakes.jira.metadata import ProjectsAndCreateMeta
from tests.fakes.jira.search import Search
from tests.fakes.jira.users import UsersAndServer
from tests.fakes.jira.views import Views


class FakeJira(UsersAndServer, ProjectsAndCreateMeta, Issues, Search, Views):
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
        # GET /field lists these custom fields (id -> name); GET /priority these priorities
        # (name -> id), from the highest to the lowest.
        self.custom_fields: dict[str, str] = {}
        self.priorities: dict[str, str] = dict(PRIORITIES)
        # Searches whose JQL the fake cannot evaluate (`watcher = x`, `sprint in openSprints()`):
        # JQL text -> the keys of the issues Jira would find. `(<JQL>) AND issue = <id or key>`
        # is answered from it.
        self.jql_answers: dict[str, set[str]] = {}
        self.requests: list[JiraRequest] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._tokens: dict[str, str] = {}  # bearer token -> user id
        self._oauth1_consumers: dict[str, rsa.RSAPublicKey] = {}
        self._oauth1_tokens: dict[str, str] = {}  # OAuth 1.0a access token -> user id
        self._failures: list[_Failure] = []
        # REST path prefix -> the gate its requests wait at until set (see `hold`).
        self._holds: dict[str, asyncio.Event] = {}
        self.held = 0  # requests waiting at a gate now
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

    def hold(self, path: str) -> asyncio.Event:
        """Requests whose REST path starts with `path` wait (counted in `held`) until the
        returned event is set: a test sees what the bot does while Jira has not answered."""
        gate = self._holds[path] = asyncio.Event()
        return gate

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
            ("GET", "/rest/api/2/field", self._fields),
            ("GET", "/rest/api/2/priority", self._priorities),
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
            for prefix, gate in self._holds.items():
                if rest_path.startswith(prefix) and not gate.is_set():
                    self.held += 1
                    try:
                        await gate.wait()
                    finally:
                        self.held -= 1
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
