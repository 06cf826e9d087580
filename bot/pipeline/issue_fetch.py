"""Read from Jira what a webhook leaves out: the issue behind Cloud's thin comment events, and
the names of people mentioned in text.

Jira Cloud sends `comment_created`, `comment_updated` and `comment_deleted` with a handful of
issue fields and no security level. Such an event is completed here by reading the issue
(GET /rest/api/2/issue/{id}) before routing, so that subscriptions' filters and security levels
judge the whole issue.

Whose credentials: the instance's `service_account` when one is configured; else (or when Jira
refuses it) the connected account of the person who wrote or edited the comment, who has just
seen the issue. Never the account of anyone else who happens to be connected: their access says
nothing about this issue, and reading with it could route a restricted issue by mistake.

Cheap: concurrent events of one issue share one read (single-flight), and a read serves the
issue's later events for `cache_seconds`. Reads happen while a stored webhook is processed,
never while Jira waits for the webhook's answer, and within the item's time budget.

Failures: 429, 5xx, timeouts and unreachable Jira raise `JiraUnavailable` (the processor gives
the webhook back for a later attempt, with backoff); 404 and 403 raise `IssueDropped` with a
reason (the processor drops the event, counted by reason).
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from datetime import datetime, timedelta
from typing import Generic, TypeVar

from bot.accounts.service import AccountError, AccountService
from bot.config import ServiceAccount
from bot.instances import Instance, InstanceDirectory
from bot.jira.client import JiraGateway, JiraSession
from bot.jira.credentials import ApiToken, Credentials, PersonalAccessToken
from bot.jira.errors import JiraError
from bot.jira.events import IssueEvent, JiraUser, with_issue
from bot.jira.models import Issue

log = logging.getLogger(__name__)
K = TypeVar("K")
V = TypeVar("V")

# Every navigable field (custom fields included: subscriptions may filter on any of them, and
# which ones can change with each new subscription), the security level named explicitly, and
# not the comments, which can be the largest part of an issue and are not needed.
ISSUE_FIELDS = "*navigable,security,-comment"

# Drop reasons, as the metric and `jira-chatops stats` name them.
ISSUE_NOT_FOUND = "issue_not_found"
NO_PERMISSION = "no_permission"
NO_CREDENTIALS = "no_credentials"
CREDENTIALS_REFUSED = "credentials_refused"
JIRA_REFUSED = "jira_refused"

# Name lookups of mentioned users: at most this many per event, all within this budget; what
# is not known by then is shown by the name in the text.
MAX_NAME_LOOKUPS = 20
NAME_LOOKUP_BUDGET_SECONDS = 5.0


class IssueDropped(Exception):
    """The issue cannot be read (deleted, not visible, no usable credentials): the event is
    dropped. `reason` is one of the constants above."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


class JiraUnavailable(Exception):
    """Jira is busy or unreachable (429, 5xx, timeout): try the event again later, waiting at
    least `retry_after` seconds when Jira said so."""

    def __init__(self, detail: str, retry_after: float | None = None) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


def service_credentials(account: ServiceAccount | None) -> Credentials | None:
    """The service account's credentials: a personal access token (Server/DC), else e-mail and
    API token (Cloud); None when not configured."""
    if account is None:
        return None
    if account.token is not None and account.token.get_secret_value():
        return PersonalAccessToken(account.token.get_secret_value())
    if account.email and account.api_token is not None and account.api_token.get_secret_value():
        return ApiToken(account.email, account.api_token.get_secret_value())
    return None


def comment_people(event: IssueEvent) -> list[str]:
    """Jira ids of who edited and who wrote the event's comment, in that order (without a
    comment, as some deletions come: who deleted it)."""
    users: list[JiraUser | None] = (
        [event.comment.update_author, event.comment.author] if event.comment else [event.actor]
    )
    ids: list[str] = []
    for user in users:
        ident = (user.account_id or user.name or user.key) if user is not None else ""
        if ident and ident not in ids:
            ids.append(ident)
    return ids


def payload_names(event: IssueEvent) -> dict[str, str]:
    """Display names of the users the event itself names, by each id they go by."""
    issue, comment = event.issue, event.comment
    users = [event.actor, issue.assignee, issue.reporter]
    if comment is not None:
        users += [comment.author, comment.update_author]
    names: dict[str, str] = {}
    for user in users:
        if user is not None and user.display_name:
            for ident in user.ids:
                names.setdefault(ident, user.display_name)
    return names


class _TimedCache(Generic[K, V]):
    """A small LRU whose entries expire at a time of the injected clock."""

    def __init__(self, size: int) -> None:
        self._entries: OrderedDict[K, tuple[datetime, V]] = OrderedDict()
        self._size = size

    def get(self, key: K, now: datetime) -> tuple[bool, V | None]:
        entry = self._entries.get(key)
        if entry is None:
            return False, None
        if entry[0] <= now:
            del self._entries[key]
            return False, None
        self._entries.move_to_end(key)
        return True, entry[1]

    def put(self, key: K, value: V, expires_at: datetime) -> None:
        self._entries[key] = (expires_at, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self._size:
            self._entries.popitem(last=False)


class IssueFetcher:
    """Completes thin events and names mentioned users, with the credentials described above."""

    def __init__(
        self,
        *,
        gateway: JiraGateway,
        instances: InstanceDirectory,
        accounts: AccountService | None,
        clock: Callable[[], datetime],
        cache_seconds: float = 60.0,
        user_cache_seconds: float = 3600.0,
        cache_size: int = 2048,
    ) -> None:
        self._gateway = gateway
        self._instances = instances
        self._accounts = accounts
        self._clock = clock
        self._ttl = timedelta(seconds=cache_seconds)
        self._user_ttl = timedelta(seconds=user_cache_seconds)
        self._issues: _TimedCache[tuple[str, str], Issue] = _TimedCache(cache_size)
        self._names: _TimedCache[tuple[str, str], str] = _TimedCache(cache_size)
        self._in_flight: dict[tuple[str, str], asyncio.Task[Issue]] = {}

    # -- issues ------------------------------------------------------------------------------

    async def complete(self, event: IssueEvent, instance_id: str) -> IssueEvent:
        """The event with its issue read from Jira (or from the short cache).

        Raises IssueDropped (with reason NO_CREDENTIALS when no credential may read it: the
        caller may fall back to what it remembers) or JiraUnavailable."""
        inst = self._instances.find(instance_id)
        if inst is None:
            raise IssueDropped(NO_CREDENTIALS, f"{instance_id} is not a configured instance")
        key = (inst.url, event.issue.id or event.issue.key)
        found, issue = self._issues.get(key, self._clock())
        if not found or issue is None:
            issue = await self._single_flight(key, lambda: self._read(inst, key[1], comment_people(event)))
        return with_issue(event, issue)

    async def _single_flight(self, key: tuple[str, str], read: Callable[[], Awaitable[Issue]]) -> Issue:
        task = self._in_flight.get(key)
        if task is None:

            async def run() -> Issue:
                issue = await read()
                if self._ttl > timedelta(0):
                    self._issues.put(key, issue, self._clock() + self._ttl)
                return issue

            task = asyncio.ensure_future(run())
            self._in_flight[key] = task

            def done(t: asyncio.Task[Issue]) -> None:
                self._in_flight.pop(key, None)
                if not t.cancelled():
                    t.exception()  # retrieved here too, in case every waiter gave up meanwhile

            task.add_done_callback(done)
        # Shielded: one waiter running out of its time budget must not cancel the others' read.
        return await asyncio.shield(task)

    async def _sessions(self, inst: Instance, people: list[str]) -> AsyncIterator[tuple[str, JiraSession]]:
        """Who may read the issue, in the order tried: the service account, then the people of
        the comment who connected their Jira account. Nobody else."""
        creds = service_credentials(inst.service_account)
        if creds is not None:
            yield "the service account", self._gateway.session(inst.url, creds, is_cloud=inst.is_cloud)
        if self._accounts is None:
            return
        for jira_user in people:
            mm_user = await self._accounts.mattermost_user_for(inst.url, jira_user)
            if mm_user is None:
                continue
            try:
                user_creds = await self._accounts.credentials_for(mm_user, inst.url, now=self._clock())
            except AccountError as e:
                log.info("the comment author's Jira account cannot be used now: %s", e)
                continue
            if user_creds is not None:
                session = self._gateway.session(inst.url, user_creds, is_cloud=inst.is_cloud)
                yield "the comment author's connected account", session

    async def _read(self, inst: Instance, issue_id: str, people: list[str]) -> Issue:
        refused = ""
        async for who, session in self._sessions(inst, people):
            try:
                raw = await session.issue_json(issue_id, ISSUE_FIELDS)
            except JiraError as e:
                if e.kind == "auth":
                    log.warning("issue %s: Jira refused %s (%s); trying the next", issue_id, who, e)
                    refused = who
                    continue
                if e.kind == "not_found":
                    raise IssueDropped(ISSUE_NOT_FOUND, f"deleted, or not visible to {who}") from None
                if e.kind == "forbidden":
                    raise IssueDropped(NO_PERMISSION, f"{who} may not read it") from None
                if e.kind in ("rate_limited", "unavailable", "timeout"):
                    raise JiraUnavailable(str(e), e.retry_after) from None
                raise IssueDropped(JIRA_REFUSED, str(e)) from None
            issue = Issue.model_validate(raw)
            if issue.fields is None:
                raise JiraUnavailable("Jira answered without the issue's fields")
            log.info("issue %s read from %s with %s", issue_id, inst.url, who)
            return issue
        if refused:
            raise IssueDropped(CREDENTIALS_REFUSED, "Jira refused every credential tried")
        raise IssueDropped(
            NO_CREDENTIALS, "no service account, and the comment's author has not connected to Jira"
        )

    # -- names -------------------------------------------------------------------------------

    async def display_names(self, instance_id: str, jira_ids: Iterable[str]) -> dict[str, str]:
        """Display names of these users (accountIds on Cloud, usernames on Server/DC), read with
        the service account and cached; users it cannot read are left out (shown by the name in
        the text). Never raises."""
        inst = self._instances.find(instance_id)
        creds = service_credentials(inst.service_account) if inst is not None else None
        if inst is None or creds is None:
            return {}
        session = self._gateway.session(inst.url, creds, is_cloud=inst.is_cloud)
        now = self._clock()
        names: dict[str, str] = {}
        wanted: list[str] = []
        for jira_id in list(dict.fromkeys(jira_ids))[:MAX_NAME_LOOKUPS]:
            found, name = self._names.get((inst.url, jira_id), now)
            if found:
                if name:
                    names[jira_id] = name
            else:
                wanted.append(jira_id)

        async def look_up(jira_id: str) -> None:
            try:
                account = await session.user(jira_id)
            except JiraError as e:
                if e.kind == "not_found":  # no such user: remembered, not asked again soon
                    self._names.put((inst.url, jira_id), "", self._clock() + self._user_ttl)
                log.info("display name of a mentioned Jira user not read: %s", e.kind)
                return
            self._names.put((inst.url, jira_id), account.display_name, self._clock() + self._user_ttl)
            if account.display_name:
                names[jira_id] = account.display_name

        if wanted:
            try:
                async with asyncio.timeout(NAME_LOOKUP_BUDGET_SECONDS):
                    await asyncio.gather(*(look_up(i) for i in wanted))
            except TimeoutError:
                log.info("display names of mentioned Jira users: not all read in time")
            except Exception:  # a name is a nicety: the text still reads with the bare one
                log.warning("display names of mentioned Jira users not read", exc_info=True)
        return names
