"""Commands without `/jira`: in a direct message with the bot, `view ABC-1` or `assign ABC-1 me`
run as the slash command would, and the answer is posted in the same DM (in the thread when the
message was a reply).

In other channels, a message that starts by mentioning the bot runs the commands about a thread
(`MENTION_COMMANDS`): `@jira attach ABC-1` or `@jira create Summary` in the thread of a message.
Mattermost tells slash commands nothing of the thread they were typed in, but a post knows its
thread; the answer is posted in that thread. The bot sees only the channels it is a member of."""

from __future__ import annotations

import logging
import re
from typing import Any

from bot.chat import ChatPost
from bot.commands.registry import Help
from bot.commands.service import CommandService
from bot.commands.table import COMMANDS
from bot.mattermost.models import DeliveryError, OutgoingPost
from bot.mattermost.payloads import CommandResponse

log = logging.getLogger(__name__)

# People used to the slash command type it anyway; "/jira view X" or "jira view X" is "view X".
_PREFIX = re.compile(r"^\s*/?jira(?:\s+|$)", re.IGNORECASE)
DM_HINT = "Here the commands work without `/jira`, for example `view ABC-1` or `assign ABC-1 me`."
# The commands a mention runs in a channel's thread (registry names).
MENTION_COMMANDS = ("issue attach", "issue create")
MENTION_HINT = (
    "In a thread, mention me with `@{bot} attach ABC-1` (add the thread's first message to an issue) "
    "or `@{bot} create [summary]` (a new issue described by it). Other commands: `/jira help`."
)


def mention_text(message: str, bot_username: str) -> str | None:
    """The command in a message that starts by mentioning the bot (`@jira attach ABC-1` ->
    `attach ABC-1`); None when it does not start so."""
    if not bot_username:
        return None
    found = re.match(rf"\s*@{re.escape(bot_username)}(?![\w.-])(.*)", message, re.IGNORECASE | re.DOTALL)
    return found.group(1).strip() if found else None


def command_text(message: str) -> str:
    """The command in a DM message: the text without a leading `/jira` or `jira`."""
    return _PREFIX.sub("", message.strip(), count=1).strip()


def response_posts(response: CommandResponse) -> list[tuple[str, dict[str, Any]]]:
    """(message, props) of each post that shows `response` (and its extra responses) in a DM.
    A DM has no ephemeral posts: both kinds of answers are posted, for the one reader there is."""
    posts: list[tuple[str, dict[str, Any]]] = []
    for part in (response, *(response.extra_responses or ())):
        data = part.to_dict()
        message = str(data.get("text") or "")
        if data.get("goto_location"):
            message = (message + "\n" if message else "") + f"[Open]({data['goto_location']})"
        props: dict[str, Any] = dict(data.get("props") or {})
        if data.get("attachments"):
            props["attachments"] = data["attachments"]
        if message or props:
            posts.append((message, props))
    return posts


class DirectCommands:
    """Runs a DM message as a command through the same CommandService as the slash command."""

    def __init__(self, service: CommandService) -> None:
        self._service = service

    async def handle(self, post: ChatPost) -> None:
        text = command_text(post.message)
        response = await self._service.handle_message(
            user_id=post.user_id, channel_id=post.channel_id, text=text, root_id=post.root_id
        )
        if isinstance(COMMANDS.resolve_or_help(text, is_admin=False), Help):
            # The help lists `/jira …`; say that here the prefix is not needed.
            response = response.model_copy(update={"text": f"{DM_HINT}\n\n{response.text}"})
        await self._answer(post, response, root_id=post.root_id)

    def mentioned(self, post: ChatPost) -> bool:
        """Whether the post starts by mentioning the bot (a command for `handle_mention`)."""
        return mention_text(post.message, self._service.deps.mattermost.bot_username) is not None

    async def handle_mention(self, post: ChatPost) -> None:
        """A channel message that mentions the bot: a command about the thread it is in (its
        root, `post.root_id`), answered in that thread."""
        bot = self._service.deps.mattermost.bot_username
        text = mention_text(post.message, bot) or ""
        found = COMMANDS.resolve_or_help(text, is_admin=False)
        if isinstance(found, Help) or found.spec.name not in MENTION_COMMANDS:
            response = CommandResponse.ephemeral(MENTION_HINT.format(bot=bot))
        else:
            response = await self._service.handle_message(
                user_id=post.user_id, channel_id=post.channel_id, text=text, root_id=post.root_id
            )
        await self._answer(post, response, root_id=post.thread_id)

    async def _answer(self, post: ChatPost, response: CommandResponse, *, root_id: str) -> None:
        mattermost = self._service.deps.mattermost
        for message, props in response_posts(response):
            try:
                await mattermost.create_post(
                    OutgoingPost(channel_id=post.channel_id, message=message, props=props, root_id=root_id)
                )
            except DeliveryError as e:
                log.warning("could not answer the command in post %s: %s", post.id, e)
                return
