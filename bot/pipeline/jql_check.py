"""JQL checked by Jira: the answers subscriptions with `filters.jql_check: jira` need per event.

When a subscription's JQL has clauses only Jira can answer (membersOf(), watcher, sprint in
openSprints() ...) and its local clauses leave the answer open, the index names that JQL
(`SubscriptionIndex.jira_questions`, the JQL without its ORDER BY); this asks Jira
`(<JQL>) AND issue = <id>` through search with the instance's service account, while a stored
webhook is processed (never on the intake path).

Cheap: an answer is kept per (instance, JQL, issue, the issue's `updated`) for `cache_seconds`, and
concurrent events of one issue share one search (single-flight).

Failures: 429, 5xx, timeouts and unreachable Jira raise `JiraUnavailable`, so the processor gives
the webhook back for a later attempt with backoff, as it does for issue reads. 400 (JQL Jira
refuses), 401, 403 and 404, or no service account, are a logged no-match: they would fail again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta

from bot.instances import InstanceDirectory
from bot.jira.client import JiraGateway, JiraSession
from bot.jira.errors import JiraError
from bot.jira.events import IssueEvent
from bot.pipeline.issue_fetch import JiraUnavailable, _TimedCache, service_credentials

log = logging.getLogger(__name__)

# (instance URL, JQL, issue id or key, issue updated)
_Key = tuple[str, str, str, str]


def issue_ref(event: IssueEvent) -> str:
    """The issue as JQL's `issue =` names it: its id, else its key."""
    return event.issue.id or event.issue.key


def issue_updated(event: IssueEvent) -> str:
    updated = event.issue.field_values.get("updated")
    return updated[0].name if updated else ""


class JqlChecker:
    """Answers `SubscriptionIndex.jira_questions` for an event by asking Jira."""

    def __init__(
        self,
        *,
        gateway: JiraGateway,
        instances: InstanceDirectory,
        clock: Callable[[], datetime],
        cache_seconds: float = 60.0,
        cache_size: int = 4096,
    ) -> None:
        self._gateway = gateway
        self._instances = instances
        self._clock = clock
        self._ttl = timedelta(seconds=cache_seconds)
        self._answers: _TimedCache[_Key, bool] = _TimedCache(cache_size)
        self._in_flight: dict[_Key, asyncio.Task[bool]] = {}

    def session(self, instance_id: str) -> JiraSession | None:
        """The service account's session on the instance; None without one."""
        inst = self._instances.find(instance_id)
        creds = service_credentials(inst.service_account) if inst is not None else None
        if inst is None or creds is None:
            return None
        return self._gateway.session(inst.url, creds, is_cloud=inst.is_cloud)

    async def answers(self, questions: Iterable[str], event: IssueEvent, instance_id: str) -> dict[str, bool]:
        """Jira's answer per JQL text for the event's issue. Raises JiraUnavailable when Jira
        is busy or down (the event waits and is tried again)."""
        wanted = list(dict.fromkeys(questions))
        if not wanted:
            return {}
        session = self.session(instance_id)
        if session is None:
            log.warning(
                "%s: %d subscription JQL checked by Jira not asked: %s has no service account; no match",
                event.issue.key,
                len(wanted),
                instance_id,
            )
            return dict.fromkeys(wanted, False)
        issue, updated = issue_ref(event), issue_updated(event)
        found = await asyncio.gather(
            *(self._answer(session, (session.site_url, jql, issue, updated)) for jql in wanted)
        )
        return dict(zip(wanted, found, strict=True))

    async def _answer(self, session: JiraSession, key: _Key) -> bool:
        known, answer = self._answers.get(key, self._clock())
        if known and answer is not None:
            return answer
        task = self._in_flight.get(key)
        if task is None:
            task = asyncio.ensure_future(self._ask(session, key))
            self._in_flight[key] = task

            def done(t: asyncio.Task[bool]) -> None:
                self._in_flight.pop(key, None)
                if not t.cancelled():
                    t.exception()  # retrieved here too, in case every waiter gave up meanwhile

            task.add_done_callback(done)
        # Shielded: one waiter running out of its time budget must not cancel the others' search.
        return await asyncio.shield(task)

    async def _ask(self, session: JiraSession, key: _Key) -> bool:
        _, jql, issue, _ = key
        try:
            answer = await ask_jira(session, jql, issue)
        except JiraError as e:
            if e.kind in ("rate_limited", "unavailable", "timeout"):
                raise JiraUnavailable(str(e), e.retry_after) from None
            raise
        if self._ttl > timedelta(0):
            self._answers.put(key, answer, self._clock() + self._ttl)
        return answer


async def ask_jira(session: JiraSession, jql: str, issue: str) -> bool:
    """Whether Jira says the issue matches `jql`. A refusal that would come again (400: JQL
    Jira refuses, or an issue it does not know; 401, 403, 404) is logged and answers no; 429, 5xx
    and timeouts raise the JiraError for the caller to retry."""
    try:
        return await session.issue_matches_jql(jql, issue)
    except JiraError as e:
        if e.kind in ("rate_limited", "unavailable", "timeout"):
            raise
        log.warning("Jira refused the JQL check of issue %s (%s): %s; no match", issue, e.kind, jql)
        return False
