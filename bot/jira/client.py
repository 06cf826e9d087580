"""The Jira REST client the slash commands use, always with a person's own credentials.

The `jira` library is synchronous, so every call runs in the gateway's bounded thread pool,
never on the event loop, and is bounded twice: by the HTTP timeout given to the library and by
`asyncio.wait_for` around the await. The library's own retry loop (which may sleep for minutes
inside a worker) is switched off; 429 and 503 are retried here, once, when Jira asks to wait
no longer than `retry_after_cap` seconds. Every failure becomes a `JiraError`. How one request
is built, signed and sent, and how failures are mapped, is in bot/jira/transport.py.

Cloud and Server/Data Center differ in places this module hides: users (accountId vs name),
search (Cloud removed /rest/api/2/search in favour of /rest/api/3/search/jql), create
metadata (per-project endpoints on Cloud and 9+, the old createmeta on 8.x) and OAuth 2.0
requests, which go through the Atlassian API gateway instead of the site.
"""

from __future__ import annotations

import asyncio
import io
import logging
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar
from urllib.parse import quote

from bot.breakers import Breakers, jira_target
from bot.config import JiraSettings
from bot.jira.credentials import Credentials, OAuth2Token
from bot.jira.errors import JiraError
from bot.jira.guard import through_breaker
from bot.jira.rest_models import (
    AllowedValue,
    CreatedIssue,
    CreateMeta,
    FieldMeta,
    IssueCard,
    IssueTypeMeta,
    JiraAccount,
    JiraUserCandidate,
    ProjectRef,
    RestCreated,
    RestFieldMeta,
    RestFieldPage,
    RestIssue,
    RestIssueTypeMeta,
    RestIssueTypePage,
    RestLegacyCreateMeta,
    RestProject,
    RestUser,
    Transition,
    has_more,
)
from bot.jira.transport import Connection, build_jira, to_jira_error

__all__ = [
    "AllowedValue",
    "CreateMeta",
    "CreatedIssue",
    "FieldMeta",
    "IssueCard",
    "IssueTypeMeta",
    "JiraAccount",
    "JiraError",
    "JiraGateway",
    "JiraSession",
    "ProjectRef",
]

log = logging.getLogger(__name__)
T = TypeVar("T")

# Fields `issue()` asks for: what a card shows, nothing more.
CARD_FIELDS = "summary,status,issuetype,priority,assignee,reporter,description,project,security"
# Page sizes: Jira caps most pages at 50 or 100 anyway.
_PAGE = 100
_MAX_PAGES = 20


# -- gateway -----------------------------------------------------------------------------------


class JiraGateway:
    """Owns the thread pool Jira calls run in and the JIRA objects, cached per site and
    credentials (LRU). One per process."""

    def __init__(
        self,
        max_workers: int,
        timeout: float,
        *,
        retry_after_cap: float = 2.0,
        cache_size: int = 128,
        public_only: Callable[[str], bool] | None = None,
    ) -> None:
        """`public_only(rest_base)`: True when that site may only be reached at public
        addresses (an instance installed from chat); its connections are then checked on the
        socket, so a user's token never goes to a private address (see bot/security/http_guard)."""
        self.max_workers = max_workers
        self._public_only = public_only
        self.timeout = timeout
        self.retry_after_cap = retry_after_cap
        self._executor = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="jira")
        self._cache: OrderedDict[tuple[str, str, Credentials], Connection] = OrderedDict()
        self._cache_size = cache_size
        self._closed = False
        # The process's circuit breakers (bot.breakers), one per Jira site, set by the
        # composition root: while a site fails as a whole, calls to it fail at once.
        self.breakers: Breakers | None = None

    @classmethod
    def from_settings(
        cls, settings: JiraSettings, *, public_only: Callable[[str], bool] | None = None
    ) -> JiraGateway:
        return cls(
            settings.max_concurrent_requests, settings.request_timeout_seconds, public_only=public_only
        )

    def session(self, base_url: str, credentials: Credentials, *, is_cloud: bool) -> JiraSession:
        """A session acting as the owner of `credentials` on the Jira site `base_url`.
        Builds no connection and sends no request."""
        site_url = base_url.rstrip("/")
        rest_base = credentials.base_url if isinstance(credentials, OAuth2Token) else site_url
        cache_key = (rest_base, site_url, credentials)
        connection = self._cache.get(cache_key)
        if connection is None:
            guarded = self._public_only is not None and self._public_only(rest_base)
            jira = build_jira(
                rest_base, credentials, timeout=self.timeout, pool_size=self.max_workers, public_only=guarded
            )
            connection = Connection(jira, site_url, is_cloud)
            self._cache[cache_key] = connection
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(cache_key)
        return JiraSession(self, connection)

    async def run(self, fn: Callable[[], T], *, site_url: str = "") -> T:
        """Run one blocking Jira call in the pool, retrying once on a short Retry-After, through
        the circuit breaker of `site_url` when there is one."""
        if self.breakers is None or not site_url:
            return await self._run_retrying(fn)
        return await through_breaker(
            self.breakers.get(jira_target(site_url)),
            lambda: self._run_retrying(fn),
            stopping=lambda: self._closed,
        )

    async def _run_retrying(self, fn: Callable[[], T]) -> T:
        retried = False
        while True:
            try:
                return await self._run_once(fn)
            except JiraError as exc:
                wait = exc.retry_after
                if retried or exc.status not in (429, 503) or wait is None or wait > self.retry_after_cap:
                    raise
                retried = True
                log.info("Jira answered %s, retrying in %.1f s", exc.status, wait)
                await asyncio.sleep(wait)

    async def _run_once(self, fn: Callable[[], T]) -> T:
        if self._closed:
            raise JiraError("unavailable", detail="the bot is shutting down")

        def guarded() -> T:
            try:
                return fn()
            except Exception as exc:
                mapped = to_jira_error(exc)
                if mapped is None:
                    raise
                raise mapped from None

        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._executor, guarded)
        try:
            return await asyncio.wait_for(future, self.timeout)
        except TimeoutError:
            raise JiraError("timeout") from None

    async def close(self) -> None:
        """Stop the pool; calls still queued are cancelled, running ones end at their timeout."""
        self._closed = True
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._cache.clear()


# -- session -----------------------------------------------------------------------------------


def _adf_text(node: Any) -> str:
    """Plain text of an Atlassian Document Format node (API v3 descriptions)."""
    if isinstance(node, dict):
        if node.get("type") == "text":
            return str(node.get("text", ""))
        inner = "".join(_adf_text(child) for child in node.get("content") or [])
        return inner + ("\n" if node.get("type") in {"paragraph", "heading", "listItem"} else "")
    if isinstance(node, list):
        return "".join(_adf_text(child) for child in node)
    return ""


def _user_label(user: RestUser | None) -> tuple[str, str]:
    if user is None:
        return "", ""
    return user.display_name or user.name or "", user.account_id or user.name or ""


class JiraSession:
    """Jira as one person sees it. Each method is one call into the gateway's pool and
    raises `JiraError` on failure."""

    def __init__(self, gateway: JiraGateway, connection: Connection) -> None:
        self._gateway = gateway
        self._connection = connection

    @property
    def site_url(self) -> str:
        return self._connection.site_url

    @property
    def is_cloud(self) -> bool:
        return self._connection.is_cloud

    def browse_url(self, key: str) -> str:
        return f"{self.site_url}/browse/{key}"

    async def _call(self, fn: Callable[[Connection], T]) -> T:
        connection = self._connection
        return await self._gateway.run(lambda: fn(connection), site_url=connection.site_url)

    async def myself(self) -> JiraAccount:
        return await self._call(lambda c: JiraAccount.from_rest(RestUser.model_validate(c.jira.myself())))

    async def user_groups(self) -> list[str]:
        """Names of the current user's Jira groups."""

        def call(c: Connection) -> list[str]:
            user = RestUser.model_validate(c.request("GET", "myself", params={"expand": "groups"}))
            return [g.name for g in (user.groups.items if user.groups else []) if g.name]

        return await self._call(call)

    async def server_info(self) -> dict[str, Any]:
        return await self._call(lambda c: dict(c.jira.server_info()))

    async def watchers(self, key: str) -> list[str]:
        """Who watches the issue: accountIds on Cloud, usernames on Server."""

        def call(c: Connection) -> list[str]:
            data = c.request("GET", f"issue/{key}/watchers")
            users = [RestUser.model_validate(w) for w in (data or {}).get("watchers") or []]
            return [u.account_id or u.name or "" for u in users if u.account_id or u.name]

        return await self._call(call)

    async def issue(self, key: str) -> IssueCard:
        def call(c: Connection) -> IssueCard:
            raw = c.jira.issue(key, fields=CARD_FIELDS).raw
            issue = RestIssue.model_validate(raw)
            f = issue.fields
            description = f.description if isinstance(f.description, str) else _adf_text(f.description)
            assignee_name, assignee_id = _user_label(f.assignee)
            reporter_name, reporter_id = _user_label(f.reporter)
            issue_key = issue.key or key
            return IssueCard(
                key=issue_key,
                id=issue.id or "",
                summary=f.summary or "",
                status=f.status.label if f.status else "",
                issue_type=f.issuetype.label if f.issuetype else "",
                priority=f.priority.label if f.priority else "",
                assignee_name=assignee_name,
                assignee_id=assignee_id,
                reporter_name=reporter_name,
                reporter_id=reporter_id,
                description=description.strip(),
                browse_url=self.browse_url(issue_key),
                project_key=(f.project.key if f.project and f.project.key else issue_key.rsplit("-", 1)[0]),
                security_level=(f.security.label or None) if f.security else None,
            )

        return await self._call(call)

    async def issue_json(self, key: str, fields: str) -> dict[str, Any]:
        """The issue as GET /rest/api/2/issue/{key}?fields=… answers it: the shape of a
        webhook's `issue` (wiki markup descriptions), for completing thin webhooks."""

        def call(c: Connection) -> dict[str, Any]:
            data = c.request("GET", f"issue/{quote(key)}", params={"fields": fields})
            if not isinstance(data, dict):
                raise JiraError("unavailable", detail="Jira sent an answer the bot cannot read")
            return data

        return await self._call(call)

    async def user(self, user_id: str) -> JiraAccount:
        """One user by accountId (Cloud) or username (Server/DC)."""

        def call(c: Connection) -> JiraAccount:
            params = {"accountId": user_id} if c.is_cloud else {"username": user_id}
            return JiraAccount.from_rest(RestUser.model_validate(c.request("GET", "user", params=params)))

        return await self._call(call)

    async def transitions(self, key: str) -> list[Transition]:
        return await self._call(lambda c: [Transition.from_rest(t) for t in c.jira.transitions(key)])

    async def transition(self, key: str, transition_id: str) -> None:
        def call(c: Connection) -> None:
            c.request("POST", f"issue/{quote(key)}/transitions", body={"transition": {"id": transition_id}})

        await self._call(call)

    async def assignable_users(
        self, key: str, query: str, *, max_results: int = 50
    ) -> list[JiraUserCandidate]:
        """Users who can be assigned `key`, matching `query` (Cloud searches `query`, Server/DC
        `username`, which also matches names and emails)."""

        def call(c: Connection) -> list[JiraUserCandidate]:
            params: dict[str, Any] = {"issueKey": key, "maxResults": max_results}
            params["query" if c.is_cloud else "username"] = query
            users = c.request("GET", "user/assignable/search", params=params)
            return [JiraUserCandidate.from_rest(u) for u in users if isinstance(u, dict)]

        return await self._call(call)

    async def assign(self, key: str, user: JiraUserCandidate | None) -> None:
        """Assign `key` to `user`; None unassigns."""

        def call(c: Connection) -> None:
            if user is None:
                body: dict[str, Any] = {"accountId": None} if c.is_cloud else {"name": None}
            else:
                body = user.assignee_field()
            c.request("PUT", f"issue/{quote(key)}/assignee", body=body)

        await self._call(call)

    async def projects(self) -> list[ProjectRef]:
        def call(c: Connection) -> list[ProjectRef]:
            found = [RestProject.model_validate(p.raw) for p in c.jira.projects()]
            return [ProjectRef(id=p.id or "", key=p.key or "", name=p.name or "") for p in found]

        return await self._call(call)

    async def create_meta(self, project_key: str, issue_type_ids: Sequence[str] | None = None) -> CreateMeta:
        """The project's create screens: issue types (only `issue_type_ids` when given) with
        their fields. Uses the per-project endpoints, or the old createmeta on Jira 8.x."""

        def call(c: Connection) -> CreateMeta:
            if not c.legacy_createmeta:
                try:
                    return _paged_create_meta(c, project_key, issue_type_ids)
                except JiraError as exc:
                    # Cloud always has the per-project endpoints: there 404 means no such project.
                    if exc.kind != "not_found" or c.is_cloud:
                        raise
                    # Jira before 9 has no per-project endpoints; a missing project is told
                    # apart by the old endpoint below.
                    meta = _legacy_create_meta(c, project_key, issue_type_ids)
                    c.legacy_createmeta = True
                    return meta
            return _legacy_create_meta(c, project_key, issue_type_ids)

        return await self._call(call)

    async def create_issue(self, fields: dict[str, Any]) -> CreatedIssue:
        def call(c: Connection) -> CreatedIssue:
            created = RestCreated.model_validate(c.request("POST", "issue", body={"fields": fields}))
            key = created.key or ""
            return CreatedIssue(id=created.id or "", key=key, browse_url=self.browse_url(key))

        return await self._call(call)

    async def add_comment(self, key: str, body: str) -> str:
        """Comment on `key` as the user; returns the comment id."""
        return await self._call(lambda c: str(c.jira.add_comment(key, body).raw.get("id", "")))

    async def add_attachment(self, key: str, filename: str, content: bytes) -> str:
        """Upload `content` as an attachment of `key`, as the user; returns the attachment id."""

        def call(c: Connection) -> str:
            attachment = c.jira.add_attachment(key, io.BytesIO(content), filename)
            return str(attachment.raw.get("id", ""))

        return await self._call(call)

    async def search(
        self, jql: str, fields: Iterable[str] = ("summary",), max_results: int = 50
    ) -> list[dict[str, Any]]:
        """Issues matching `jql` as Jira returns them (`id`, `key`, `fields`), at most
        `max_results`. Cloud: POST /rest/api/3/search/jql, paged by nextPageToken (v3 sends
        descriptions as documents); Server/DC: POST /rest/api/2/search, paged by startAt."""
        wanted = list(fields)

        def call(c: Connection) -> list[dict[str, Any]]:
            found: list[dict[str, Any]] = []
            token: str | None = None
            for _ in range(_MAX_PAGES):
                page_size = min(_PAGE, max_results - len(found))
                if page_size <= 0:
                    break
                body: dict[str, Any] = {"jql": jql, "fields": wanted, "maxResults": page_size}
                if c.is_cloud:
                    if token:
                        body["nextPageToken"] = token
                    page = c.request("POST", "search/jql", body=body, api="3")
                else:
                    body["startAt"] = len(found)
                    page = c.request("POST", "search", body=body)
                issues = [i for i in page.get("issues") or [] if isinstance(i, dict)]
                found.extend(issues)
                if c.is_cloud:
                    token = page.get("nextPageToken")
                    if not token or page.get("isLast") or not issues:
                        break
                elif not issues or len(found) >= int(page.get("total") or 0):
                    break
            return found[:max_results]

        return await self._call(call)

    async def issue_matches_jql(self, jql: str, issue: str) -> bool:
        """Whether the issue (id or key) matches `jql`, as Jira's search says:
        `(<jql>) AND issue = <issue>`, one result at most."""
        found = await self.search(f"({jql}) AND issue = {issue}", fields=("id",), max_results=1)
        return bool(found)

    async def custom_field_names(self) -> dict[str, str]:
        """Custom field name -> id from GET /rest/api/2/field. A name several custom fields share
        is left out (JQL cannot tell them apart by name either)."""

        def call(c: Connection) -> dict[str, str]:
            data = c.request("GET", "field")
            seen: dict[str, str] = {}
            shared: set[str] = set()
            for field in data if isinstance(data, list) else []:
                if not isinstance(field, dict) or not field.get("custom"):
                    continue
                name, field_id = str(field.get("name") or ""), str(field.get("id") or "")
                if not name or not field_id:
                    continue
                folded = name.casefold()
                if folded in seen and seen[folded] != field_id:
                    shared.add(folded)
                seen.setdefault(folded, field_id)
            return {name: fid for name, fid in seen.items() if name not in shared}

        return await self._call(call)

    async def priority_names(self) -> list[str]:
        """The instance's priorities, from the highest to the lowest (GET /rest/api/2/priority
        lists them in that order)."""

        def call(c: Connection) -> list[str]:
            data = c.request("GET", "priority")
            items = data if isinstance(data, list) else []
            return [str(p["name"]) for p in items if isinstance(p, dict) and p.get("name")]

        return await self._call(call)


def _wanted(issue_type: RestIssueTypeMeta, issue_type_ids: Sequence[str] | None) -> bool:
    return issue_type_ids is None or (issue_type.id or "") in issue_type_ids


def _paged_create_meta(c: Connection, project_key: str, issue_type_ids: Sequence[str] | None) -> CreateMeta:
    project = quote(project_key)
    issue_types: list[RestIssueTypeMeta] = []
    start = 0
    for _ in range(_MAX_PAGES):
        page = RestIssueTypePage.model_validate(
            c.request(
                "GET",
                f"issue/createmeta/{project}/issuetypes",
                params={"startAt": start, "maxResults": _PAGE},
            )
        )
        issue_types.extend(page.items)
        start += len(page.items)
        if not page.items or not has_more(page, len(page.items)):
            break
    result: list[IssueTypeMeta] = []
    for issue_type in issue_types:
        if not _wanted(issue_type, issue_type_ids):
            continue
        fields: list[FieldMeta] = []
        start = 0
        for _ in range(_MAX_PAGES):
            field_page = RestFieldPage.model_validate(
                c.request(
                    "GET",
                    f"issue/createmeta/{project}/issuetypes/{quote(issue_type.id or '')}",
                    params={"startAt": start, "maxResults": _PAGE},
                )
            )
            fields.extend(_field_meta(f.field_id or f.key or "", f) for f in field_page.items)
            start += len(field_page.items)
            if not field_page.items or not has_more(field_page, len(field_page.items)):
                break
        result.append(_issue_type_meta(issue_type, fields))
    # The per-project endpoints do not name the project id; the issue type scope is not
    # reliable either, so it is left empty rather than guessed.
    return CreateMeta(project_key=project_key, project_id="", issue_types=tuple(result))


def _legacy_create_meta(c: Connection, project_key: str, issue_type_ids: Sequence[str] | None) -> CreateMeta:
    params: dict[str, Any] = {"projectKeys": project_key, "expand": "projects.issuetypes.fields"}
    if issue_type_ids:
        params["issuetypeIds"] = ",".join(issue_type_ids)
    meta = RestLegacyCreateMeta.model_validate(c.request("GET", "issue/createmeta", params=params))
    project = next((p for p in meta.projects if (p.key or "").upper() == project_key.upper()), None)
    if project is None:
        # Jira answers 200 with no project when the user cannot create issues there.
        raise JiraError("not_found", status=404, detail=f"no create screen for project {project_key}")
    issue_types = [
        _issue_type_meta(t, [_field_meta(fid, f) for fid, f in (t.fields or {}).items()])
        for t in project.issuetypes
        if _wanted(t, issue_type_ids)
    ]
    return CreateMeta(
        project_key=project.key or project_key, project_id=project.id or "", issue_types=tuple(issue_types)
    )


def _field_meta(field_id: str, meta: RestFieldMeta) -> FieldMeta:
    return FieldMeta.from_rest(field_id, meta)


def _issue_type_meta(issue_type: RestIssueTypeMeta, fields: list[FieldMeta]) -> IssueTypeMeta:
    return IssueTypeMeta(
        id=issue_type.id or "", name=issue_type.name or "", subtask=issue_type.subtask, fields=tuple(fields)
    )
