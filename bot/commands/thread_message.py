"""A thread's first message, read by the bot and written for Jira (create form description, attach comment).

Mattermost does not tell a slash command which thread it was typed in (the form of the server's
`DoCommandRequest` has no `root_id`), so the message is named by its link (`…/<team>/pl/<post id>`,
as "Copy Link" gives) or its bare post id, or, through the websocket, by mentioning the bot in the
thread. The bot reads the message with its own Mattermost account, and only for a caller who is a
member of the message's channel. `/jira create` pre-fills the description with it (`thread_ref`,
`thread_description`); `/jira attach` adds it to an issue as a comment (bot.commands.handlers.thread).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bot.commands.context import Caller, CommandContext, CommandError
from bot.commands.issue_common import TEXTAREA_MAX
from bot.mattermost.models import DeliveryError
from bot.mattermost.payloads import fit_bytes

log = logging.getLogger(__name__)

UNREADABLE = (
    "The bot cannot read the message `{post_id}`: it does not exist, or it is in a private channel "
    "the bot is not a member of. Check the link (hover the message, ⋯ > Copy Link), or add the bot "
    "to the channel, and try again."
)
NOT_A_MEMBER = (
    "You are not a member of the channel that message is in, so the bot does not read it for you. "
    "Join the channel, or ask one of its members."
)
# When Mattermost's team name is unknown, its web app finds the team itself from this path.
REDIRECT_TEAM = "_redirect"
_POST_ID = re.compile(r"[a-z0-9]{26}")
_PERMALINK = re.compile(r"https?://[^\s<>]+?/([^/\s<>]+)/pl/([a-z0-9]{26})/?")


@dataclass(frozen=True)
class MessageRef:
    """A message named in a command: its post id and, from a permalink, its team's name."""

    post_id: str
    team: str = ""


def parse_message_ref(word: str) -> MessageRef | None:
    """A permalink (`https://chat.example.com/acme/pl/<id>`, optionally in <>) or a bare
    26-character post id; None for anything else."""
    word = word.strip().removeprefix("<").removesuffix(">")
    if _POST_ID.fullmatch(word):
        return MessageRef(word)
    found = _PERMALINK.fullmatch(word)
    if found is None:
        return None
    team = found.group(1)
    return MessageRef(found.group(2), "" if team == REDIRECT_TEAM else team)


def split_message_ref(args: Sequence[str]) -> tuple[tuple[str, ...], MessageRef | None]:
    """The arguments without a message link given as the last one, and that link."""
    if args and (ref := parse_message_ref(args[-1])) is not None:
        return tuple(args[:-1]), ref
    return tuple(args), None


def how_to_name(ctx: Caller, command: str) -> str:
    """What to do to name the message a command is about."""
    bot = ctx.deps.mattermost.bot_username or "jira"
    verb = command.split()[0]
    return (
        f"Name the message: hover it, click ⋯ > Copy Link, then `/jira {command} <link>`. "
        f"Or reply to it in its thread with `@{bot} {verb} …` (the bot must be a member of the channel)."
    )


@dataclass(frozen=True)
class RootMessage:
    """The first message of a thread, as Jira is told about it."""

    post_id: str
    message: str
    author: str  # Mattermost username, empty when unknown
    permalink: str  # empty when the Mattermost URL or the team is unknown
    files: tuple[Mapping[str, Any], ...] = ()
    channel_id: str = ""
    team: str = ""  # the team name in the permalink


def permalink(mattermost_url: str, team: str, post_id: str) -> str:
    """Mattermost's permanent link to a post: {site}/{team name}/pl/{post id}."""
    if not (mattermost_url and team and post_id):
        return ""
    return f"{mattermost_url.rstrip('/')}/{team}/pl/{post_id}"


def thread_ref(ctx: CommandContext, root: RootMessage | None = None) -> dict[str, str]:
    """What the create flow carries (in its signed contexts) to find the message again: the
    message read from a link (`root`), else the thread of a mention; empty without either."""
    if root is not None:
        return {"thread": root.post_id, "team": root.team, "thread_channel": root.channel_id}
    return {"thread": ctx.root_id, "team": ctx.team_domain} if ctx.root_id else {}


def _wiki_quoted(text: str) -> str:
    # A "{quote}" in the message would end Jira's quote early.
    return text.replace("{quote}", "\\{quote}")


def _link_text(text: str) -> str:
    # The characters that end a Jira link's text.
    return text.replace("[", "(").replace("]", ")").replace("|", "/")


def _posted_by(root: RootMessage, verb: str) -> str:
    who = f" by @{root.author}" if root.author else ""
    where = f": {root.permalink}" if root.permalink else ""
    return f"{verb}{who} in Mattermost{where}"


def create_description(root: RootMessage, limit: int = TEXTAREA_MAX) -> str:
    """The create form's description (Jira wiki markup): the message quoted, then who posted it
    and its permalink, the message shortened so that the whole fits `limit` bytes."""
    footer = _posted_by(root, "Posted")
    message = _wiki_quoted(root.message.strip())
    if not message:
        return footer
    frame = "{quote}\n\n{quote}\n" + footer
    body = fit_bytes(message, max(limit - len(frame.encode()), 0))
    return "{quote}\n" + body + "\n{quote}\n" + footer


def attach_comment(root: RootMessage, attached: Sequence[str], linked: Sequence[tuple[str, str]]) -> str:
    """The comment `/jira attach` writes (Jira wiki markup): who posted the message, its
    permalink, the message quoted, and its files, uploaded ones shown as attachments and the
    others as links (name, URL)."""
    lines = [_posted_by(root, "Posted")]
    if root.message.strip():
        lines += ["{quote}", _wiki_quoted(root.message.strip()), "{quote}"]
    files = [f"[^{name}]" for name in attached] + [f"[{_link_text(name)}|{url}]" for name, url in linked]
    if files:
        lines.append("Files: " + ", ".join(files))
    return "\n".join(lines)


def mattermost_site(ctx: Caller) -> str:
    """Mattermost's own URL as configured; empty when unknown."""
    return ctx.deps.settings.mattermost.url or ""


async def _team_of(ctx: Caller, channel_id: str) -> str:
    """The team name for a permalink into `channel_id`: the caller's when the channel is in
    their team, else the web app's redirect."""
    if channel_id == ctx.channel_id and ctx.team_domain:
        return ctx.team_domain
    try:
        channel = await ctx.deps.mattermost.get_channel(channel_id)
    except DeliveryError:
        return REDIRECT_TEAM
    if ctx.team_domain and channel.get("team_id") == ctx.team_id:
        return ctx.team_domain
    return REDIRECT_TEAM


async def read_root(ctx: Caller, root_id: str, team: str = "") -> RootMessage:
    """The message `root_id` (for a reply, its thread's first message), read with the bot's
    own account. Raises CommandError when the bot cannot read it, or when the caller is not a
    member of its channel (GET /channels/{id}/members/{user})."""
    mattermost = ctx.deps.mattermost
    try:
        post = await mattermost.get_post(root_id)
        if post.get("root_id"):  # a reply: its thread's first message is meant
            post = await mattermost.get_post(str(post["root_id"]))
    except DeliveryError as e:
        if e.status in (400, 403, 404):
            raise CommandError(UNREADABLE.format(post_id=root_id)) from None
        raise
    if post.get("delete_at"):
        raise CommandError(UNREADABLE.format(post_id=root_id))
    channel_id = str(post.get("channel_id", ""))
    try:
        member = await mattermost.get_channel_member(channel_id, ctx.user_id)
    except DeliveryError as e:
        if e.status in (400, 403, 404):
            raise CommandError(NOT_A_MEMBER) from None
        raise
    if member is None:
        raise CommandError(NOT_A_MEMBER)
    post_id = str(post.get("id", root_id))
    team = team or await _team_of(ctx, channel_id)
    author = ""
    try:
        author = str((await mattermost.get_user(str(post.get("user_id", "")))).get("username", ""))
    except DeliveryError as e:
        log.info("could not name the author of post %s: %s", post_id, e)
    files = await mattermost.get_file_infos(post_id) if post.get("file_ids") else []
    return RootMessage(
        post_id=post_id,
        message=str(post.get("message", "")),
        author=author,
        permalink=permalink(mattermost_site(ctx), team, post_id),
        files=tuple(files),
        channel_id=channel_id,
        team=team,
    )


async def thread_description(ctx: Caller, ref: Mapping[str, Any]) -> str:
    """The create form's description for the thread `ref` (from `thread_ref`) names: the
    quoted message and its permalink, only the permalink when the bot cannot read it, and
    nothing outside a thread."""
    root_id, team = str(ref.get("thread") or ""), str(ref.get("team") or "")
    if not root_id:
        return ""
    try:
        return create_description(await read_root(ctx, root_id, team))
    except (CommandError, DeliveryError) as e:
        log.info("create form without the message of thread %s: %s", root_id, e)
        link = permalink(mattermost_site(ctx), team, root_id)
        return f"From Mattermost: {link}" if link else ""


__all__ = [
    "MessageRef",
    "RootMessage",
    "attach_comment",
    "create_description",
    "how_to_name",
    "mattermost_site",
    "parse_message_ref",
    "permalink",
    "read_root",
    "split_message_ref",
    "thread_description",
    "thread_ref",
]
