"""What the parts of the fake Jira share: the records it keeps (users, projects, requests), Jira's
defaults (issue types, priorities, workflow), and the JSON and error shapes of its answers."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from aiohttp import web

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
