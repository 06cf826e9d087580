"""What the gate needs from Jira Service Management, as a protocol: the service codes against it,
`bot.gate.jsm.JsmClient` implements it over HTTP and tests use an in-memory fake.

Every method raises `bot.jira.errors.JiraError` when Jira fails: kinds `unavailable`, `timeout`
and `rate_limited` (with `retry_after` when Jira said) make the gate wait; `auth` and `forbidden`
fail it; `not_found` from `get_issue` is answered with None instead.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from bot.gate_rules.model import ChangeRequest


class JsmClient(Protocol):
    async def get_issue(self, key_or_id: str) -> ChangeRequest | None:
        """The CR with its status and planned window (UTC); None when it does not exist or the
        service account cannot see it."""
        ...

    async def search_open_by_summary(self, project: str, summary: str) -> list[ChangeRequest]:
        """Candidates: open issues of service-desk project `project` whose summary resembles
        `summary`. Jira's text search is fuzzy; the caller keeps only exact matches."""
        ...

    async def create_request(
        self, service_desk: str, request_type: str, summary: str, description: str
    ) -> ChangeRequest:
        """Raise a request of `request_type` in the service desk of project `service_desk`."""
        ...

    async def add_comment(self, issue: str, text: str, *, public: bool = False) -> None:
        """Comment on the request (key or id) as the service account: internal (agents only)
        unless `public`."""
        ...


# The client acting for a configured Jira instance (alias or URL; None: the only instance).
# Raising KeyError/ValueError for an unknown or unusable instance fails the gate with jira_error.
JsmClientFactory = Callable[[str | None], JsmClient]
