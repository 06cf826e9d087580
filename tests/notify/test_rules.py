"""Who is told what, on the shared Jira payloads and on edge cases."""

from __future__ import annotations

import dataclasses

import pytest

from bot.jira.events import EVENT_UPDATED_ASSIGNEE, IssueEvent, JiraUser, normalise
from bot.jira.models import parse_webhook
from bot.notify.messages import notice_message
from bot.notify.rules import Notice, Topic, Why, notices
from tests.conftest import load_shared_webhook


def event_of(name: str) -> IssueEvent:
    event = normalise(parse_webhook(load_shared_webhook(name)))
    assert event is not None
    return event


def by_recipient(event: IssueEvent, watchers: tuple[str, ...] = ()) -> dict[str, tuple[Why, Topic]]:
    return {n.recipient: (n.why, n.topic) for n in notices(event, watchers)}


def test_created_issue_tells_its_assignee() -> None:
    event = event_of("webhook-cloud-issue-created-many-fields.json")
    assignee = event.issue.assignee
    assert assignee is not None
    got = by_recipient(event)
    if event.actor is not None and assignee.account_id == event.actor.account_id:
        assert assignee.account_id not in got  # never to the person who made the change
    else:
        assert got[assignee.account_id] == (Why.ASSIGNEE, Topic.ASSIGNED)


def test_assignment_tells_the_new_assignee_and_not_the_actor() -> None:
    event = event_of("webhook-issue-updated-assigned.json")
    assert event.issue.assignee is not None and event.actor is not None
    # In this payload the user assigned the issue to themselves: nobody is told.
    assert notices(event) == []
    by_someone_else = dataclasses.replace(event, actor=JiraUser(display_name="Boss", account_id="boss-1"))
    assert by_recipient(by_someone_else) == {"admin": (Why.ASSIGNEE, Topic.ASSIGNED)}


def test_assignment_among_other_changes_still_tells_the_assignee() -> None:
    event = event_of("webhook-issue-updated-multiple-values.json")
    assert EVENT_UPDATED_ASSIGNEE in event.kinds and len(event.kinds) > 1
    assert by_recipient(event) == {"5cedcb4355a88a0fc86388ba": (Why.ASSIGNEE, Topic.ASSIGNED)}


@pytest.mark.parametrize(
    "name",
    [
        "webhook-cloud-comment-created-mention-user.json",
        "webhook-server-issue-updated-commented-mention-user.json",
    ],
)
def test_comment_mentions_assignee_reporter(name: str) -> None:
    event = event_of(name)
    assert event.comment is not None
    got = by_recipient(event, watchers=("watcher-1",))
    mentioned = [r for r, (why, _) in got.items() if why == Why.MENTION]
    assert mentioned, got
    assert all(topic == Topic.MENTIONED for why, topic in got.values() if why == Why.MENTION)
    assert got["watcher-1"] == (Why.WATCHING, Topic.COMMENTED)
    author_ids = set(event.comment.update_author.ids) | set(event.comment.author.ids)
    assert not author_ids & set(got)


def test_resolution_tells_reporter_assignee_watchers() -> None:
    event = event_of("webhook-issue-updated-resolved.json")
    reporter = JiraUser(display_name="Rita", account_id="rep-1")
    assignee = JiraUser(display_name="Asa", account_id="asg-1")
    event = dataclasses.replace(
        event, issue=dataclasses.replace(event.issue, reporter=reporter, assignee=assignee)
    )
    got = by_recipient(event, watchers=("w-1", "rep-1"))
    assert got == {
        "rep-1": (Why.REPORTER, Topic.RESOLVED),
        "asg-1": (Why.ASSIGNEE, Topic.RESOLVED),
        "w-1": (Why.WATCHING, Topic.RESOLVED),
    }
    text = notice_message(Notice("rep-1", Why.REPORTER, Topic.RESOLVED), event)
    assert "**resolved**" in text and event.issue.key in text


def test_status_change_message_says_from_and_to() -> None:
    event = event_of("webhook-issue-updated-started-working.json")
    reporter = JiraUser(display_name="Rita", account_id="rep-1")
    event = dataclasses.replace(event, issue=dataclasses.replace(event.issue, reporter=reporter))
    [notice] = [n for n in notices(event) if n.recipient == "rep-1"]
    assert notice.topic == Topic.STATUS
    text = notice_message(notice, event)
    assert "**changed the status**" in text and " from " in text and " to " in text


def test_edited_comment_tells_only_mentioned_users() -> None:
    event = event_of("webhook-cloud-comment-updated.json")
    assert event.comment is not None
    body = event.comment.body + " [~accountid:someone-else]"
    event = dataclasses.replace(event, comment=dataclasses.replace(event.comment, body=body))
    got = by_recipient(event)
    assert got["someone-else"] == (Why.MENTION, Topic.MENTIONED_IN_EDIT)
    assert all(why == Why.MENTION for why, _ in got.values())


def test_messages_cannot_ping_a_channel() -> None:
    event = event_of("webhook-issue-updated-assigned.json")
    event = dataclasses.replace(event, issue=dataclasses.replace(event.issue, summary="@channel look"))
    assert event.issue.assignee is not None
    text = notice_message(Notice("x", Why.ASSIGNEE, Topic.ASSIGNED), event)
    assert "@channel" not in text and "**assigned** you to" in text
