"""Turn an event into queued direct messages for the connected users it concerns."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from bot.accounts.service import AccountService
from bot.jira.events import IssueEvent
from bot.notify.messages import notice_message
from bot.notify.rules import WATCHED_KINDS, notices
from bot.pipeline.delivery import DIRECT_MESSAGE
from bot.store.interfaces import NewDelivery

# (instance id, issue key) -> ids of the issue's watchers ([] when they cannot be read).
WatchersLookup = Callable[[str, str], Awaitable[list[str]]]


async def no_watchers(_instance_id: str, _issue_key: str) -> list[str]:
    return []


class NotificationPlanner:
    def __init__(self, accounts: AccountService, watchers: WatchersLookup = no_watchers) -> None:
        self._accounts = accounts
        self._watchers = watchers

    async def plan(self, event: IssueEvent, instance_id: str) -> list[NewDelivery]:
        """One DM per connected user the event concerns, whose switch for the reason is on.
        Whether they may see the issue is checked when the DM is sent, with their credentials."""
        planned: dict[str, NewDelivery] = {}
        watchers: tuple[str, ...] = ()
        if event.kinds & WATCHED_KINDS:
            watchers = tuple(await self._watchers(instance_id, event.issue.key))
        for notice in notices(event, watchers):
            mm_user = await self._accounts.mattermost_user_for(instance_id, notice.recipient)
            if mm_user is None or mm_user in planned:
                continue
            conn = await self._accounts.connection(mm_user, instance_id)
            if conn is None or not conn.notifications.enabled(notice.why.value):
                continue

            planned[mm_user] = NewDelivery(
                channel_id=f"@{mm_user}",
                # DMs to one person about one issue keep their order.
                order_key=f"dm|{mm_user}|{instance_id}|{event.issue.key}",
                kind=DIRECT_MESSAGE,
                payload={
                    "mm_user_id": mm_user,
                    "message": notice_message(notice, event),
                    "instance_id": instance_id,
                    "issue_key": event.issue.key,
                    "why": notice.why.value,
                },
            )
        return list(planned.values())
