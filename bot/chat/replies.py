"""Reply to act: a reply in the thread of a notification DM becomes a comment on its issue.

The code that posts a notification DM records which issue the post is about
(bot.notify.threads); a reply in that thread is then written to Jira as a comment with the
replying user's own credentials, and confirmed with a reaction. What goes wrong is explained in
the thread: not connected (and how to connect), no permission, Jira unreachable.
"""

from __future__ import annotations

import logging

from bot.chat import ChatPost
from bot.commands.context import Caller, CommandError, Deps
from bot.jira.errors import JiraError
from bot.mattermost.models import DeliveryError, OutgoingPost
from bot.notify.threads import notification_thread

log = logging.getLogger(__name__)

CONFIRM_EMOJI = "white_check_mark"


class ReplyComments:
    """Turns replies in notification threads into Jira comments."""

    def __init__(self, deps: Deps, *, confirm_emoji: str = CONFIRM_EMOJI) -> None:
        self._deps = deps
        self._emoji = confirm_emoji

    async def handle(self, post: ChatPost) -> bool:
        """Comment with the reply when its thread is a notification's; False when it is not
        (the post is then someone else's business)."""
        thread = await notification_thread(self._deps.db.kv, post.root_id, self._deps.clock())
        if thread is None:
            return False
        caller = Caller(
            deps=self._deps, user_id=post.user_id, channel_id=post.channel_id, root_id=post.root_id
        )
        key = thread.issue_key
        try:
            instance = caller.instance_named(thread.instance)
            session = await caller.jira(instance)
            await session.add_comment(key, post.message.strip())
        except CommandError as e:
            await self._reply(post, f"Your reply was not added to {key}. {e.message}")
            return True
        except JiraError as e:
            await self._reply(post, f"Your reply was not added to {key}: {await caller.explain(e)}")
            return True
        log.info("reply %s became a comment on %s", post.id, key)
        await self._confirm(post, f"Added your comment to [{key}]({session.browse_url(key)}).")
        return True

    async def _confirm(self, post: ChatPost, fallback: str) -> None:
        try:
            await self._deps.mattermost.add_reaction(post.id, self._emoji)
        except DeliveryError as e:
            # Reactions can be switched off on a server; say it in words then.
            log.info("could not react to post %s (%s); confirming with a reply", post.id, e)
            await self._reply(post, fallback)

    async def _reply(self, post: ChatPost, message: str) -> None:
        try:
            await self._deps.mattermost.create_post(
                OutgoingPost(channel_id=post.channel_id, message=message, root_id=post.thread_id)
            )
        except DeliveryError as e:
            log.warning("could not answer post %s: %s", post.id, e)
