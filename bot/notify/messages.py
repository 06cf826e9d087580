"""The wording of personal notifications, as the Mattermost Jira plugin words its DMs. Pure."""

from __future__ import annotations

from bot.jira.events import EVENT_UPDATED_STATUS, IssueEvent
from bot.notify.rules import Notice, Topic
from bot.render.markup import render_jira_text
from bot.render.plain import cut, link_text, markdown_text
from bot.render.posts import SUMMARY_LIMIT, MentionLookup, md_quoted, md_user, no_mentions

COMMENT_LIMIT = 3000


def issue_link(event: IssueEvent) -> str:
    issue = event.issue
    # The summary is cut before it is escaped, so no escape is halved.
    label = link_text(f"{issue.key}: {cut(issue.summary, SUMMARY_LIMIT)}")
    return f"[{label}]({issue.browse_url})" if issue.browse_url else label


def _status_change(event: IssueEvent) -> str:
    for change in event.changes:
        if change.kind == EVENT_UPDATED_STATUS:
            return f" from {md_quoted(change.from_string)} to {md_quoted(change.to_string)}"
    return ""


def notice_message(notice: Notice, event: IssueEvent, mentions: MentionLookup = no_mentions) -> str:
    link = issue_link(event)
    comment = event.comment
    if notice.topic in (Topic.COMMENTED, Topic.MENTIONED, Topic.MENTIONED_IN_EDIT) and comment is not None:
        author = markdown_text(md_user(comment.update_author or comment.author))
        body = render_jira_text(comment.body, COMMENT_LIMIT, mentions, quote=True)
        verb = {
            Topic.COMMENTED: "**commented** on",
            Topic.MENTIONED: "**mentioned** you in a new comment on",
            Topic.MENTIONED_IN_EDIT: "**mentioned** you in an edited comment on",
        }[notice.topic]
        return f"{author} {verb} {link}:\n{body}" if body else f"{author} {verb} {link}"
    actor = markdown_text(md_user(event.actor))
    if notice.topic == Topic.ASSIGNED:
        return f"{actor} **assigned** you to {link}"
    if notice.topic == Topic.RESOLVED:
        return f"{actor} **resolved** {link}"
    if notice.topic == Topic.REOPENED:
        return f"{actor} **reopened** {link}"
    return f"{actor} **changed the status** of {link}{_status_change(event)}"
