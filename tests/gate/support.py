"""Helpers for the gate's core tests: settings, a fixed clock, and an in-memory Jira Service
Management implementing the `bot.gate.ports.JsmClient` protocol (the HTTP fake in
tests/fakes/jsm.py serves the API and end-to-end tests)."""

from __future__ import annotations

import asyncio
import itertools
import re
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from bot.gate_rules.model import ChangeRequest, GateRequest
from bot.gate_rules.settings import ChangeGateSettings
from bot.jira.errors import JiraError

T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
BASE_URL = "https://itsm.example.com"
SUMMARY = 'Octopus: Deploy "Web Site" version 1.2.3 to "Production"'
REQUEST = GateRequest(project="Web Site", environment="Production", version="1.2.3")


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def gate_settings(**overrides: Any) -> ChangeGateSettings:
    data: dict[str, Any] = {
        "instance": "itsm",
        "service_desk": "ITSM",
        "channel": "ops/deployments",
        "pipeline_tokens": [{"token": "pipeline-token-0123456789", "projects": ["Web Site"]}],
        "projects": {"Web Site": {"change_controlled": True}, "Billing": {"change_controlled": True}},
        "environments": {"Production": {"change_controlled": True}, "Dev": {"change_controlled": False}},
    }
    data.update(overrides)
    return ChangeGateSettings.model_validate(data)


# Statuses in the "Done" category of JSM's change workflow: excluded by `statusCategory != Done`.
_DONE = {"completed", "declined", "canceled", "cancelled", "closed", "done", "failed"}
_WORD = re.compile(r"[0-9a-z]+(?:\.[0-9a-z]+)*")


def _words(text: str) -> list[str]:
    return _WORD.findall(text.casefold())


@dataclass
class _Issue:
    id: str
    key: str
    project: str
    summary: str
    status: str
    planned_start: datetime | None = None
    planned_end: datetime | None = None

    def snapshot(self) -> ChangeRequest:
        return ChangeRequest(
            id=self.id,
            key=self.key,
            url=f"{BASE_URL}/browse/{self.key}",
            status=self.status,
            summary=self.summary,
            planned_start=self.planned_start,
            planned_end=self.planned_end,
        )


class MemoryJsm:
    """Issues by id; every call yields to the event loop first, so concurrent callers interleave.

    The summary search is fuzzy like Jira's (words, any case, punctuation ignored) and returns
    only open issues, as `statusCategory != Done` does.
    """

    def __init__(self, project: str = "ITSM") -> None:
        self.project = project
        self.issues: dict[str, _Issue] = {}
        self.calls: Counter[str] = Counter()
        self.comments: list[tuple[str, str]] = []  # (issue key, text)
        self._failures: dict[str, list[BaseException]] = defaultdict(list)
        self._ids = itertools.count(10001)
        self._numbers = itertools.count(1)

    # -- arranging ------------------------------------------------------------------------------

    def add(
        self,
        summary: str = SUMMARY,
        status: str = "Planning",
        *,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> ChangeRequest:
        issue = _Issue(
            id=str(next(self._ids)),
            key=f"{self.project}-{next(self._numbers)}",
            project=self.project,
            summary=summary,
            status=status,
            planned_start=start,
            planned_end=end,
        )
        self.issues[issue.id] = issue
        return issue.snapshot()

    def set_status(self, key: str, status: str) -> None:
        self._by_key(key).status = status

    def fail_next(self, method: str, error: BaseException, times: int = 1) -> None:
        self._failures[method].extend([error] * times)

    def comments_on(self, key: str) -> list[str]:
        return [text for k, text in self.comments if k == key]

    def _by_key(self, key: str) -> _Issue:
        return next(i for i in self.issues.values() if i.key == key)

    async def _enter(self, method: str) -> None:
        self.calls[method] += 1
        await asyncio.sleep(0)
        if self._failures[method]:
            raise self._failures[method].pop(0)

    # -- the JsmClient port ---------------------------------------------------------------------

    async def get_issue(self, key_or_id: str) -> ChangeRequest | None:
        await self._enter("get_issue")
        issue = self.issues.get(key_or_id) or next(
            (i for i in self.issues.values() if i.key.upper() == key_or_id.upper()), None
        )
        return issue.snapshot() if issue is not None else None

    async def search_open_by_summary(self, project: str, summary: str) -> list[ChangeRequest]:
        await self._enter("search_open_by_summary")
        wanted = set(_words(summary))
        return [
            i.snapshot()
            for i in self.issues.values()
            if i.project == project and wanted <= set(_words(i.summary)) and i.status.casefold() not in _DONE
        ]

    async def create_request(
        self, service_desk: str, request_type: str, summary: str, description: str
    ) -> ChangeRequest:
        await self._enter("create_request")
        if service_desk != self.project:
            raise JiraError("not_found", status=404, detail=f"no service desk {service_desk}")
        await asyncio.sleep(0)  # a slow create widens the window for a concurrent duplicate
        return self.add(summary, "Planning")

    async def add_comment(self, issue: str, text: str, *, public: bool = False) -> None:
        await self._enter("add_comment")
        found = self.issues.get(issue) or self._by_key(issue)
        self.comments.append((found.key, text))
