"""Who gets a direct message about an event, and why. Pure: no I/O, no clock.

The Mattermost Jira plugin's rules (the assignee of a new or reassigned issue; on a new comment
the users it mentions, the assignee and the reporter), plus what its users asked for: status
changes and resolutions for the reporter, assignee and watchers, edited comments that mention
someone, and an assignee change that arrives together with other changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from bot.jira import events as ev
from bot.jira.events import IssueEvent, JiraUser
from bot.render.markup import mentioned_jira_users


class Why(StrEnum):
    """The reason for a message; each is a notification switch of the user's."""

    ASSIGNEE = "assignee"
    MENTION = "mention"
    REPORTER = "reporter"
    WATCHING = "watching"


# When one person has several reasons, the message says the strongest.
_STRENGTH = {Why.MENTION: 0, Why.ASSIGNEE: 1, Why.REPORTER: 2, Why.WATCHING: 3}


class Topic(StrEnum):
    """What happened, for the wording of the message."""

    ASSIGNED = "assigned"
    COMMENTED = "commented"
    MENTIONED = "mentioned"
    MENTIONED_IN_EDIT = "mentioned_in_edit"
    STATUS = "status"
    RESOLVED = "resolved"
    REOPENED = "reopened"


# Events watchers hear about (so callers fetch the watchers only for these).
WATCHED_KINDS: frozenset[str] = frozenset(
    {ev.EVENT_CREATED_COMMENT, ev.EVENT_UPDATED_STATUS, ev.EVENT_UPDATED_RESOLVED, ev.EVENT_UPDATED_REOPENED}
)


@dataclass(frozen=True, slots=True)
class Notice:
    recipient: str  # Jira user id: accountId on Cloud, username on Server
    why: Why
    topic: Topic


def _ids(user: JiraUser | None) -> tuple[str, ...]:
    return user.ids if user is not None else ()


def _primary(user: JiraUser | None) -> str:
    if user is None:
        return ""
    return user.account_id or user.name or user.key


def notices(event: IssueEvent, watchers: tuple[str, ...] = ()) -> list[Notice]:
    """One notice per person at most, never to the person who made the change. `watchers` are
    the ids of the issue's watchers when known (the webhook does not carry them)."""
    issue = event.issue
    actor_ids = set(_ids(event.actor))
    if event.comment is not None:
        actor_ids |= set(_ids(event.comment.update_author)) | set(_ids(event.comment.author))
    candidates: list[Notice] = []

    def add(user_id: str, why: Why, topic: Topic) -> None:
        if user_id and user_id not in actor_ids:
            candidates.append(Notice(user_id, why, topic))

    kinds = event.kinds
    assignee = _primary(issue.assignee)
    reporter = _primary(issue.reporter)

    if ev.EVENT_CREATED in kinds:
        add(assignee, Why.ASSIGNEE, Topic.ASSIGNED)
    if ev.EVENT_UPDATED_ASSIGNEE in kinds:
        # Also when the assignment came with other changes in one webhook (the plugin drops it).
        # The changelog names the new assignee even where the payload's fields lag behind.
        new = next((c.to_id for c in event.changes if c.kind == ev.EVENT_UPDATED_ASSIGNEE and c.to_id), "")
        add(new or assignee, Why.ASSIGNEE, Topic.ASSIGNED)

    if ev.EVENT_CREATED_COMMENT in kinds and event.comment is not None:
        for user_id in mentioned_jira_users(event.comment.body):
            add(user_id, Why.MENTION, Topic.MENTIONED)
        add(assignee, Why.ASSIGNEE, Topic.COMMENTED)
        add(reporter, Why.REPORTER, Topic.COMMENTED)
        for user_id in watchers:
            add(user_id, Why.WATCHING, Topic.COMMENTED)

    if ev.EVENT_UPDATED_COMMENT in kinds and event.comment is not None:
        for user_id in mentioned_jira_users(event.comment.body):
            add(user_id, Why.MENTION, Topic.MENTIONED_IN_EDIT)

    change_topic = None
    if ev.EVENT_UPDATED_RESOLVED in kinds:
        change_topic = Topic.RESOLVED
    elif ev.EVENT_UPDATED_REOPENED in kinds:
        change_topic = Topic.REOPENED
    elif ev.EVENT_UPDATED_STATUS in kinds:
        change_topic = Topic.STATUS
    if change_topic is not None and ev.EVENT_CREATED not in kinds:
        add(reporter, Why.REPORTER, change_topic)
        add(assignee, Why.ASSIGNEE, change_topic)
        for user_id in watchers:
            add(user_id, Why.WATCHING, change_topic)

    best: dict[str, Notice] = {}
    for notice in candidates:
        kept = best.get(notice.recipient)
        if kept is None or _STRENGTH[notice.why] < _STRENGTH[kept.why]:
            best[notice.recipient] = notice
    return list(best.values())
