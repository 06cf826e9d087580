"""Which issue each notification DM was about, so that a reply in its thread can become a comment.

Written when a notification is posted (bot.notify.sender), read when a reply arrives
(bot.chat.replies); kept in the key-value store, with an expiry.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from bot.store.interfaces import KeyValueRepository

THREAD_KEY_PREFIX = "dm-thread:"
# How long a reply in a notification's thread still becomes a comment.
DEFAULT_THREAD_TTL = timedelta(days=30)


@dataclass(frozen=True, slots=True)
class NotificationThread:
    """What a notification DM was about: the Jira instance (its URL) and the issue key."""

    instance: str
    issue_key: str


async def remember_notification(
    kv: KeyValueRepository,
    post_id: str,
    instance: str,
    issue_key: str,
    now: datetime,
    *,
    ttl: timedelta = DEFAULT_THREAD_TTL,
) -> None:
    """Record that the DM `post_id` notified about `issue_key` of `instance` (its base URL), so
    that replies in its thread become comments on that issue for `ttl`."""
    await kv.put(
        THREAD_KEY_PREFIX + post_id, {"instance": instance, "issue_key": issue_key}, expires_at=now + ttl
    )


async def notification_thread(
    kv: KeyValueRepository, post_id: str, now: datetime
) -> NotificationThread | None:
    """The issue the DM `post_id` notified about, if it was a notification still remembered."""
    if not post_id:
        return None
    record = await kv.get(THREAD_KEY_PREFIX + post_id, now=now)
    if not isinstance(record, dict) or not record.get("instance") or not record.get("issue_key"):
        return None
    return NotificationThread(instance=str(record["instance"]), issue_key=str(record["issue_key"]))
