"""Jira Service Management as the change gate sees it, through the connection's service account.

Cloud authenticates with the account's email and API token (basic auth), Server/Data Center with a
personal access token (bearer). Calls go straight through aiohttp (they are few and the gate runs
on the event loop), and every failure becomes a `JiraError`, as in `bot.jira.client`, so that the
gate can tell "Jira is down, wait" (unavailable, timeout, rate_limited) from "the service account
is refused, fail" (auth, forbidden).

Endpoints (JSM Cloud and Data Center REST references):
- service desks `GET /rest/servicedeskapi/servicedesk` (paged `start`/`limit`, `values`, `isLastPage`),
- request types `GET /rest/servicedeskapi/servicedesk/{id}/requesttype`,
- create `POST /rest/servicedeskapi/request`,
- the issue `GET /rest/api/2/issue/{idOrKey}?fields=...`, fields `GET /rest/api/2/field`,
- search `POST /rest/api/3/search/jql` (Cloud) or `POST /rest/api/2/search` (Server/DC),
- comments `POST /rest/api/2/issue/{idOrKey}/comment`.

Every request goes through the Jira site's circuit breaker when one is set (`bot.breakers`, the
same one `bot.jira.client` uses for the site): while the site is down it fails at once, without a
request, so the poller and the queued CR comments wait out an outage together with the rest of the
process and the other replicas.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Any
from urllib.parse import quote

import aiohttp

from bot.breakers import Breaker, Breakers, jira_target
from bot.config import JiraInstanceSettings, JiraSettings
from bot.gate_rules.model import ChangeRequest, CrSource
from bot.jira.errors import JiraError, error_for_status, jira_error_detail, parse_retry_after
from bot.jira.guard import through_breaker

log = logging.getLogger(__name__)

DEFAULT_PLANNED_START = "Planned start"
DEFAULT_PLANNED_END = "Planned end"
# Several JSM endpoints were "experimental" on Data Center; the header is ignored where not needed.
_EXPERIMENTAL = {"X-ExperimentalApi": "opt-in"}
_PAGE = 50
_MAX_PAGES = 40
# Characters with a meaning in Jira's (Lucene) text search; a phrase query is made of words only.
_TEXT_SEARCH_SPECIAL = re.compile(r'[+\-&|!(){}\[\]^"“”‘’~*?\\:/]')


@dataclass(frozen=True, slots=True)
class JsmAuth:
    """The service account: email + API token (Cloud) or a personal access token (Server/DC)."""

    email: str | None = None
    api_token: str | None = None
    pat: str | None = None

    def header(self) -> str:
        if self.pat:
            return f"Bearer {self.pat}"
        if self.email and self.api_token:
            raw = f"{self.email}:{self.api_token}".encode()
            return "Basic " + base64.b64encode(raw).decode("ascii")
        raise ValueError("a service account needs email + api_token (Cloud) or token (Server/DC)")

    def __repr__(self) -> str:  # secrets stay out of logs
        return f"JsmAuth(email={self.email!r}, pat={'***' if self.pat else None})"


@dataclass(frozen=True, slots=True)
class ConnectionCheck:
    """What `/jira change test` reports: each step that worked, and the first problem found."""

    ok: bool
    steps: tuple[str, ...] = ()
    problem: str = ""
    service_desk_id: str = ""
    request_type_id: str = ""


@dataclass
class _Cache:
    service_desks: dict[str, str] = field(default_factory=dict)  # project key (upper) -> id
    request_types: dict[tuple[str, str], str] = field(default_factory=dict)  # (desk id, name) -> id
    fields: dict[str, str] | None = None  # configured name or id -> field id


class JsmClient:
    """One Jira site and service account. Implements the gate's `JsmClient` port."""

    def __init__(
        self,
        base_url: str,
        auth: JsmAuth,
        *,
        is_cloud: bool,
        http: aiohttp.ClientSession | None = None,
        planned_start_field: str = DEFAULT_PLANNED_START,
        planned_end_field: str = DEFAULT_PLANNED_END,
        time_zone: tzinfo = UTC,
        timeout: float = 10.0,
        breaker: Breaker | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.breaker = breaker
        self.is_cloud = is_cloud
        self.planned_start_field = planned_start_field
        self.planned_end_field = planned_end_field
        self.time_zone = time_zone
        self._auth_header = auth.header()
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._http = http
        self._own_http = http is None
        self._cache = _Cache()
        self._field_lock = asyncio.Lock()

    @classmethod
    def for_instance(
        cls, instance: JiraInstanceSettings, *, http: aiohttp.ClientSession | None = None, **options: Any
    ) -> JsmClient:
        """A client acting as the instance's configured service account; ValueError when it has none."""
        account = instance.service_account
        if account is None:
            raise ValueError(f"Jira instance {instance.alias or instance.url} has no service_account")
        if instance.type == "cloud":
            auth = JsmAuth(
                email=account.email,
                api_token=account.api_token.get_secret_value() if account.api_token else None,
            )
        else:
            auth = JsmAuth(pat=account.token.get_secret_value() if account.token else None)
        return cls(instance.url, auth, is_cloud=instance.type == "cloud", http=http, **options)

    def browse_url(self, key: str) -> str:
        return f"{self.base_url}/browse/{key}"

    async def close(self) -> None:
        if self._own_http and self._http is not None:
            await self._http.close()
            self._http = None

    # -- the JsmClient port ----------------------------------------------------------------------

    async def get_issue(self, key_or_id: str) -> ChangeRequest | None:
        """The CR with its status and planned window, None when Jira says it does not exist (or
        the service account cannot see it, which Jira does not tell apart)."""
        start_id, end_id = await self._planned_field_ids()
        wanted = ",".join(f for f in ("summary", "status", start_id, end_id) if f)
        try:
            raw = await self._request(
                "GET", f"/rest/api/2/issue/{quote(key_or_id, safe='')}", params={"fields": wanted}
            )
        except JiraError as e:
            if e.kind == "not_found":
                return None
            raise
        return self._change_request(raw, start_id, end_id)

    async def search_open_by_summary(self, project: str, summary: str) -> list[ChangeRequest]:
        """Open issues of `project` whose summary contains the words of `summary`. Jira's text
        search is fuzzy (stemming, punctuation dropped), so the caller compares exactly."""
        words = _phrase(summary)
        if not words:
            return []
        jql = (
            f"project = {_jql_string(project)} AND summary ~ {_jql_string(chr(34) + words + chr(34))} "
            "AND statusCategory != Done ORDER BY created ASC"
        )
        start_id, end_id = await self._planned_field_ids()
        wanted = [f for f in ("summary", "status", start_id, end_id) if f]
        found: list[ChangeRequest] = []
        token: str | None = None
        for _ in range(_MAX_PAGES):
            body: dict[str, Any] = {"jql": jql, "fields": wanted, "maxResults": _PAGE}
            if self.is_cloud:
                if token:
                    body["nextPageToken"] = token
                page = await self._request("POST", "/rest/api/3/search/jql", body=body)
            else:
                body["startAt"] = len(found)
                page = await self._request("POST", "/rest/api/2/search", body=body)
            issues = [i for i in _mapping(page).get("issues") or [] if isinstance(i, dict)]
            found.extend(self._change_request(i, start_id, end_id) for i in issues)
            if self.is_cloud:
                token = _mapping(page).get("nextPageToken")
                if not token or _mapping(page).get("isLast") or not issues:
                    break
            elif not issues or len(found) >= int(_mapping(page).get("total") or 0):
                break
        return found

    async def create_request(
        self, service_desk: str, request_type: str, summary: str, description: str
    ) -> ChangeRequest:
        """Raise a request of `request_type` (a name or id) in the service desk of project
        `service_desk` (a key or id), as the service account."""
        desk_id = await self.service_desk_id(service_desk)
        type_id = await self.request_type_id(desk_id, request_type)
        created = _mapping(
            await self._request(
                "POST",
                "/rest/servicedeskapi/request",
                body={
                    "serviceDeskId": desk_id,
                    "requestTypeId": type_id,
                    "requestFieldValues": {"summary": summary, "description": description},
                },
            )
        )
        key = str(created.get("issueKey") or "")
        issue_id = str(created.get("issueId") or "")
        if not key or not issue_id:
            raise JiraError("unavailable", detail="Jira created the request but did not name it")
        status = _mapping(created.get("currentStatus")).get("status")
        return ChangeRequest(
            id=issue_id,
            key=key,
            url=self.browse_url(key),
            status=str(status or ""),
            summary=summary,
            source=CrSource.CREATED,
        )

    async def add_comment(self, issue: str, text: str, *, public: bool = False) -> None:
        # The service desk's own comment resource: only it sets the visibility (`public: false`
        # is an internal comment, seen by agents, not by the customer who raised the request).
        await self._request(
            "POST",
            f"/rest/servicedeskapi/request/{quote(issue, safe='')}/comment",
            body={"body": text, "public": public},
        )

    # -- lookups -----------------------------------------------------------------------------------

    async def service_desk_id(self, project: str) -> str:
        """The id of the service desk of project `project` (key, or the desk id itself)."""
        wanted = project.strip().upper()
        cached = self._cache.service_desks.get(wanted)
        if cached:
            return cached
        for desk in await self._paged("/rest/servicedeskapi/servicedesk"):
            ids = {str(desk.get("projectKey") or "").upper(), str(desk.get("id") or "")}
            if wanted in ids:
                self._cache.service_desks[wanted] = str(desk["id"])
                return str(desk["id"])
        raise JiraError(
            "not_found",
            status=404,
            detail=f"no service desk for project {project} is visible to the service account",
        )

    async def request_type_id(self, desk_id: str, name: str) -> str:
        """The id of the request type called `name` (case-insensitive) or with that id."""
        cache_key = (desk_id, name.strip().casefold())
        cached = self._cache.request_types.get(cache_key)
        if cached:
            return cached
        types = await self._paged(f"/rest/servicedeskapi/servicedesk/{quote(desk_id, safe='')}/requesttype")
        for request_type in types:
            if cache_key[1] in (
                str(request_type.get("name") or "").casefold(),
                str(request_type.get("id") or ""),
            ):
                self._cache.request_types[cache_key] = str(request_type["id"])
                return str(request_type["id"])
        known = ", ".join(str(t.get("name")) for t in types[:10])
        raise JiraError(
            "not_found",
            status=404,
            detail=f"no request type {name!r} in service desk {desk_id} (has: {known})",
        )

    async def check(self, service_desk: str, request_type: str) -> ConnectionCheck:
        """Whether the service account reaches the service desk, its request type and the planned
        date fields; the first problem is worded for an admin."""
        steps: list[str] = []
        try:
            desk_id = await self.service_desk_id(service_desk)
        except JiraError as e:
            return ConnectionCheck(False, tuple(steps), _problem(e, f"service desk {service_desk}"))
        steps.append(f"service desk {service_desk} found (id {desk_id})")
        try:
            type_id = await self.request_type_id(desk_id, request_type)
        except JiraError as e:
            return ConnectionCheck(
                False, tuple(steps), _problem(e, f"request type {request_type!r}"), desk_id
            )
        steps.append(f"request type {request_type!r} found (id {type_id})")
        try:
            start_id, end_id = await self._planned_field_ids()
        except JiraError as e:
            return ConnectionCheck(False, tuple(steps), _problem(e, "the field list"), desk_id, type_id)
        missing = [
            name
            for name, found in ((self.planned_start_field, start_id), (self.planned_end_field, end_id))
            if not found
        ]
        if missing:
            names = " and ".join(f"`{m}`" for m in missing)
            return ConnectionCheck(
                False,
                tuple(steps),
                f"Jira has no field {names}: change windows cannot be read.",
                desk_id,
                type_id,
            )
        steps.append(f"planned dates read from {start_id} and {end_id}")
        return ConnectionCheck(True, tuple(steps), "", desk_id, type_id)

    async def _planned_field_ids(self) -> tuple[str, str]:
        """Field ids for the configured planned start and end (names resolved once through
        /rest/api/2/field; ids are used as they are). "" for a field Jira does not have."""
        async with self._field_lock:
            if self._cache.fields is None:
                configured = [self.planned_start_field, self.planned_end_field]
                if all(_looks_like_id(f) or not f for f in configured):
                    self._cache.fields = {f: f for f in configured if f}
                else:
                    fields = await self._request("GET", "/rest/api/2/field")
                    self._cache.fields = _resolve_fields(
                        configured, fields if isinstance(fields, list) else []
                    )
            resolved = self._cache.fields
        return resolved.get(self.planned_start_field, ""), resolved.get(self.planned_end_field, "")

    # -- parsing -----------------------------------------------------------------------------------

    def _change_request(self, raw: Any, start_id: str, end_id: str) -> ChangeRequest:
        issue = _mapping(raw)
        fields = _mapping(issue.get("fields"))
        key = str(issue.get("key") or "")
        status = _mapping(fields.get("status")).get("name")
        return ChangeRequest(
            id=str(issue.get("id") or ""),
            key=key,
            url=self.browse_url(key),
            status=str(status or ""),
            summary=str(fields.get("summary") or ""),
            planned_start=parse_jira_time(fields.get(start_id), self.time_zone) if start_id else None,
            planned_end=parse_jira_time(fields.get(end_id), self.time_zone, end_of_day=True)
            if end_id
            else None,
        )

    # -- HTTP ----------------------------------------------------------------------------------------

    async def _paged(self, path: str) -> list[dict[str, Any]]:
        values: list[dict[str, Any]] = []
        for _ in range(_MAX_PAGES):
            page = _mapping(await self._request("GET", path, params={"start": len(values), "limit": _PAGE}))
            batch = [v for v in page.get("values") or [] if isinstance(v, dict)]
            values.extend(batch)
            if not batch or page.get("isLastPage", True):
                break
        return values

    async def _request(
        self, method: str, path: str, *, params: Mapping[str, Any] | None = None, body: Any = None
    ) -> Any:
        if self.breaker is None:
            return await self._send(method, path, params, body)
        return await through_breaker(self.breaker, lambda: self._send(method, path, params, body))

    async def _send(self, method: str, path: str, params: Mapping[str, Any] | None, body: Any) -> Any:
        if self._http is None:
            self._http = aiohttp.ClientSession()
            self._own_http = True
        headers = {"Authorization": self._auth_header, "Accept": "application/json", **_EXPERIMENTAL}
        data: bytes | None = None
        if body is not None:
            headers["Content-Type"] = "application/json"
            data = json.dumps(body).encode()
        try:
            async with self._http.request(
                method, self.base_url + path, params=params, data=data, headers=headers, timeout=self._timeout
            ) as response:
                text = await response.text()
                if response.status >= 400:
                    raise error_for_status(
                        response.status,
                        detail=_detail(text),
                        retry_after=parse_retry_after(response.headers.get("Retry-After")),
                    )
                if response.status == 204 or not text:
                    return None
                try:
                    return json.loads(text)
                except ValueError:
                    raise JiraError("unavailable", detail="Jira sent an answer the bot cannot read") from None
        except TimeoutError:
            raise JiraError("timeout") from None
        except aiohttp.ClientError:
            raise JiraError("unavailable", detail="cannot connect to Jira") from None


class JsmClients:
    """The `JsmClientFactory` the gate service uses: one client per configured Jira instance
    (alias or URL; None: the only one), sharing one HTTP session, made on first use."""

    def __init__(
        self,
        jira: JiraSettings,
        *,
        planned_start_field: str = DEFAULT_PLANNED_START,
        planned_end_field: str = DEFAULT_PLANNED_END,
        time_zone: tzinfo = UTC,
        timeout: float | None = None,
        breakers: Breakers | None = None,
    ) -> None:
        self._jira = jira
        self._breakers = breakers
        self._options: dict[str, Any] = {
            "planned_start_field": planned_start_field,
            "planned_end_field": planned_end_field,
            "time_zone": time_zone,
            "timeout": timeout if timeout is not None else jira.request_timeout_seconds,
        }
        self._clients: dict[str, JsmClient] = {}
        self._http: aiohttp.ClientSession | None = None

    def breaker(self, name: str | None) -> Breaker | None:
        """The circuit breaker of instance `name`'s Jira site; None without breakers or when
        there is no such instance."""
        if self._breakers is None:
            return None
        try:
            inst = self.instance(name)
        except KeyError:
            return None
        return self._breakers.get(jira_target(inst.url))

    def instance(self, name: str | None) -> JiraInstanceSettings:
        """The configured instance called `name`; KeyError when there is none (or, for None,
        when there is not exactly one)."""
        if name:
            found = self._jira.find_instance(name)
            if found is None:
                raise KeyError(f"no Jira instance {name!r} is configured")
            return found
        if len(self._jira.instances) != 1:
            raise KeyError("change_gate.instance must name one of the configured Jira instances")
        return self._jira.instances[0]

    def __call__(self, name: str | None) -> JsmClient:
        inst = self.instance(name)
        client = self._clients.get(inst.url)
        if client is None:
            if self._http is None:
                self._http = aiohttp.ClientSession()
            breaker = self._breakers.get(jira_target(inst.url)) if self._breakers is not None else None
            client = JsmClient.for_instance(inst, http=self._http, breaker=breaker, **self._options)
            self._clients[inst.url] = client
        return client

    async def close(self) -> None:
        self._clients.clear()
        if self._http is not None:
            await self._http.close()
            self._http = None


# -- helpers -----------------------------------------------------------------------------------------


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _detail(text: str) -> str:
    try:
        return jira_error_detail(json.loads(text))
    except ValueError:
        return ""


def _problem(error: JiraError, what: str) -> str:
    if error.kind in ("auth", "forbidden"):
        return (
            f"Jira refused the service account while looking up {what} ({error.kind}): "
            "check its token and permissions."
        )
    if error.kind == "not_found":
        return error.detail or f"{what} was not found."
    return f"Jira could not be asked about {what}: {error}."


def _looks_like_id(name: str) -> bool:
    return bool(re.fullmatch(r"customfield_\d+", name)) or name in ("duedate", "created", "updated")


def _resolve_fields(configured: list[str], fields: list[Any]) -> dict[str, str]:
    """Configured field names or ids -> ids; a name matches case-insensitively, preferring a
    date or datetime field when several share it."""
    resolved: dict[str, str] = {}
    for wanted in configured:
        if not wanted:
            continue
        candidates = []
        for f in fields:
            if not isinstance(f, dict):
                continue
            if f.get("id") == wanted:
                candidates = [f]
                break
            if str(f.get("name") or "").casefold() == wanted.casefold():
                candidates.append(f)
        dated = [c for c in candidates if _mapping(c.get("schema")).get("type") in ("date", "datetime")]
        chosen = (dated or candidates)[:1]
        if chosen:
            resolved[wanted] = str(chosen[0]["id"])
    return resolved


def _phrase(summary: str) -> str:
    """The words of `summary` for a phrase query: Lucene operators and quotes become spaces."""
    return " ".join(_TEXT_SEARCH_SPECIAL.sub(" ", summary).split())


def _jql_string(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def parse_jira_time(value: Any, time_zone: tzinfo, *, end_of_day: bool = False) -> datetime | None:
    """A Jira date or datetime field value in UTC. Datetimes carry their offset
    (`2024-05-01T10:00:00.000+0200`); a date-only value is a day in `time_zone`, starting at its
    midnight, or for an end (`end_of_day`) lasting until its last microsecond. None when empty
    or unreadable."""
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            moment = datetime.combine(day, time.min, tzinfo=time_zone)
            if end_of_day:
                # The next local midnight, less one microsecond (a DST day is not 24 h long).
                next_midnight = datetime.combine(day + timedelta(days=1), time.min, tzinfo=time_zone)
                moment = next_midnight - timedelta(microseconds=1)
            return moment.astimezone(UTC)
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        log.warning("unreadable Jira date %r", text)
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=time_zone)
    return parsed.astimezone(UTC)
