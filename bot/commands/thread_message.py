"""A thread's first message, read by the bot and written for Jira (create form description, attach comment).

The bot reads the message with its own Mattermost account, and only in the channel the command
came from. `/jira create` run in a thread pre-fills the description with it (`thread_ref`,
`thread_description`); `/jira attach` adds it to an issue as a comment (bot.commands.handlers.thread).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bot.commands.context import Caller, CommandContext, CommandError
from bot.commands.issue_common import TEXTAREA_MAX
from bot.mattermost.models import DeliveryError
from bot.mattermost.payloads import fit_bytes

log = logging.getLogger(__name__)

UNREADABLE = "The bot cannot read the first message of this thread. Add the bot to the channel and try again."


@dataclass(frozen=True)
class RootMessage:
    """The first message of a thread, as Jira is told about it."""

    post_id: str
    message: str
    author: str  # Mattermost username, empty when unknown
    permalink: str  # empty when the Mattermost URL or the team is unknown
    files: tuple[Mapping[str, Any], ...] = ()


def permalink(mattermost_url: str, team: str, post_id: str) -> str:
    """Mattermost's permanent link to a post: {site}/{team name}/pl/{post id}."""
    if not (mattermost_url and team and post_id):
        return ""
    return f"{mattermost_url.rstrip('/')}/{team}/pl/{post_id}"


def thread_ref(ctx: CommandContext) -> dict[str, str]:
    """What the create flow carries (in its signed contexts) to find the thread again; empty
    outside a thread."""
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


async def read_root(ctx: Caller, root_id: str, team: str) -> RootMessage:
    """The first message of the thread `root_id` in the caller's channel. Raises CommandError
    when the bot cannot read it, or when it is in another channel."""
    mattermost = ctx.deps.mattermost
    try:
        post = await mattermost.get_post(root_id)
        if post.get("root_id"):  # a reply: its thread's first message is meant
            post = await mattermost.get_post(str(post["root_id"]))
    except DeliveryError as e:
        if e.status in (400, 403, 404):
            raise CommandError(UNREADABLE) from None
        raise
    if post.get("channel_id") != ctx.channel_id:
        raise CommandError(UNREADABLE)
    post_id = str(post.get("id", root_id))
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
    "RootMessage",
    "attach_comment",
    "create_description",
    "mattermost_site",
    "permalink",
    "read_root",
    "thread_description",
    "thread_ref",
]
