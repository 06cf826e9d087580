"""Render a normalised Jira event into a Mattermost post, worded as the Jira plugin words it.

Pure: no I/O, no clock. User lookups (Jira user -> Mattermost username) are passed in.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from bot.jira.events import IssueEvent, JiraUser

# Given a Jira user id (accountId on Cloud, name/key on Server), the connected Mattermost
# username, or None when that Jira user has not connected an account.
MentionLookup = Callable[[str], str | None]


def no_mentions(_jira_user_id: str) -> str | None:
    return None


@dataclass(frozen=True, slots=True)
class RenderOptions:
    hide_description: bool = False
    hide_comments: bool = False
    subscription_name: str | None = None  # shown in the post when set


@dataclass(frozen=True, slots=True)
class RenderedPost:
    message: str
    props: Mapping[str, Any] = field(default_factory=dict)


__all__ = ["JiraUser", "MentionLookup", "RenderOptions", "RenderedPost", "no_mentions"]
