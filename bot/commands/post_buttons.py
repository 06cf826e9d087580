"""Buttons on the bot's channel posts about an issue: Transition, Assign to me and Comment.

A channel post is read by everyone in the channel, for weeks, so its buttons are signed for
`POST_ACTIONS_TTL` and bound to nobody: whoever clicks acts with their own Jira account (see
bot.commands.handlers.post_actions). Pure apart from the signing done by the ActionFactory.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

from bot.mattermost.payloads import ActionFactory, PostAction

ACTION_POST_TRANSITION = "post.transition"
ACTION_POST_ASSIGN_ME = "post.assign_me"
ACTION_POST_COMMENT = "post.comment"

# Long enough for a post that is still being read and acted on; an older button answers that
# it expired (the web layer's message), and `/jira view KEY` gives fresh ones.
POST_ACTIONS_TTL = 60 * 24 * 3600

# Fixed action ids: Mattermost keys clicks by them, and `with_issue_actions` recognises its own
# buttons by them to replace rather than repeat them.
ACTION_IDS = {
    ACTION_POST_TRANSITION: "jiraposttransition",
    ACTION_POST_ASSIGN_ME: "jirapostassignme",
    ACTION_POST_COMMENT: "jirapostcomment",
}

ACTIVITY_MARK = "✓"
MAX_ACTIVITY_LINES = 5


def issue_post_actions(factory: ActionFactory, instance_url: str, issue_key: str) -> list[PostAction]:
    """The buttons of a channel post about `issue_key` on the Jira instance `instance_url`."""
    base = {"instance": instance_url, "issue": issue_key}
    buttons = (
        ("Transition", ACTION_POST_TRANSITION),
        ("Assign to me", ACTION_POST_ASSIGN_ME),
        ("Comment", ACTION_POST_COMMENT),
    )
    return [
        factory.button(name, {"action": action, **base}, ttl_seconds=POST_ACTIONS_TTL, id=ACTION_IDS[action])
        for name, action in buttons
    ]


def with_issue_actions(props: Mapping[str, Any], actions: Sequence[PostAction]) -> dict[str, Any]:
    """A copy of a rendered post's props with `actions` appended to its first attachment, or
    in a new attachment when it has none. Buttons added earlier by this function are replaced,
    so applying it twice does not repeat them; `props` itself is left unchanged."""
    result: dict[str, Any] = copy.deepcopy(dict(props))
    new = [a.model_dump(mode="json", exclude_none=True) for a in actions]
    ours = set(ACTION_IDS.values()) | {a["id"] for a in new if a.get("id")}
    attachments = [dict(a) for a in result.get("attachments") or ()]
    if not attachments:
        attachments = [{"actions": new}]
    else:
        first = attachments[0]
        kept = [a for a in first.get("actions") or () if a.get("id") not in ours]
        first["actions"] = kept + new
    result["attachments"] = attachments
    return result


def with_activity(message: str, line: str) -> str:
    """`message` with "✓ line" added to the block of such lines at its end, which keeps the
    latest `MAX_ACTIVITY_LINES` (a busy issue must not grow its post without end)."""
    lines = message.split("\n") if message else []
    start = len(lines)
    while start > 0 and lines[start - 1].startswith(ACTIVITY_MARK + " "):
        start -= 1
    activity = [*lines[start:], f"{ACTIVITY_MARK} {line}"][-MAX_ACTIVITY_LINES:]
    return "\n".join([*lines[:start], *activity])
