"""Jira from a Mattermost thread: `/jira attach KEY` adds the thread's first message, with a
permalink and its files, to an issue as a comment; `/jira create` run in a thread pre-fills the
description with that message (see `thread_ref` and `thread_description`, used by the create flow).

The bot reads the message with its own Mattermost account, and only in the channel the command
came from; everything done in Jira is done with the user's own credentials.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bot.commands.cards import issue_link
from bot.commands.context import Caller, CommandContext, CommandError
from bot.commands.issue_common import TEXTAREA_MAX, actor_name, first_arg_key
from bot.commands.registry import Arg
from bot.commands.table import COMMANDS
from bot.jira.client import JiraSession
from bot.jira.errors import JiraError
from bot.mattermost.models import DeliveryError, OutgoingPost
from bot.mattermost.payloads import CommandResponse, fit_bytes

log = logging.getLogger(__name__)

ATTACH_USAGE = "/jira attach KEY"
# Files larger than this are linked rather than copied into Jira (Jira Server's default limit).
MAX_FILE_BYTES = 10 * 1024 * 1024
MAX_FILES = 10  # Mattermost's own limit per post
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


def _site(ctx: Caller) -> str:
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
        permalink=permalink(_site(ctx), team, post_id),
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
        link = permalink(_site(ctx), team, root_id)
        return f"From Mattermost: {link}" if link else ""


async def _copy_files(
    ctx: Caller, session: JiraSession, key: str, files: Sequence[Mapping[str, Any]]
) -> tuple[list[str], list[tuple[str, str]]]:
    """Upload the files to the issue; the ones that cannot be (too big, refused by Jira) are
    returned as (name, Mattermost URL) to link instead."""
    attached: list[str] = []
    linked: list[tuple[str, str]] = []
    for info in files[:MAX_FILES]:
        file_id = str(info.get("id", ""))
        name = str(info.get("name") or file_id)
        size = int(info.get("size") or 0)
        if 0 < size <= MAX_FILE_BYTES:
            try:
                content = await ctx.deps.mattermost.get_file(file_id, max_bytes=MAX_FILE_BYTES)
                await session.add_attachment(key, name, content)
                attached.append(name)
                continue
            except DeliveryError as e:
                log.warning("could not read file %s from Mattermost: %s", file_id, e)
            except JiraError as e:
                if e.kind == "auth":
                    raise
                log.info("Jira did not take file %s on %s: %s", file_id, key, e)
        linked.append((name, f"{_site(ctx).rstrip('/')}/api/v4/files/{file_id}"))
    return attached, linked


def _files_told(attached: Sequence[str], linked: Sequence[tuple[str, str]]) -> str:
    parts = []
    if attached:
        parts.append(f"{len(attached)} file{'s' if len(attached) > 1 else ''} attached")
    if linked:
        parts.append(f"{len(linked)} linked")
    return f" ({', '.join(parts)})" if parts else ""


@COMMANDS.command(
    "issue attach",
    help="Add the first message of this thread, with its files, to a Jira issue as a comment",
    usage="[issue-key]",
    aliases=("attach",),
    args=(Arg("Jira issue key", "[issue-key]"),),
    instance_option=True,
)
async def attach(ctx: CommandContext) -> CommandResponse:
    key = first_arg_key(ctx, ATTACH_USAGE)
    if not ctx.root_id:
        raise CommandError(
            f"Run `{ATTACH_USAGE}` in the thread of the message to add: reply to the message with it."
        )
    inst = await ctx.choose_instance(ctx.instance_arg)
    session = await ctx.jira(inst)
    root = await read_root(ctx, ctx.root_id, ctx.team_domain)
    card = await session.issue(key)  # the user can see it; and its summary for the link
    attached, linked = await _copy_files(ctx, session, card.key, root.files)
    await session.add_comment(card.key, attach_comment(root, attached, linked))

    # The thread is read by the whole channel: an issue with a security level is named by key only.
    link = issue_link(card.key, card.browse_url, "" if card.security_level else card.summary)
    told = f"Added the message{_files_told(attached, linked)} to {link} as a comment."
    reply = OutgoingPost(
        channel_id=ctx.channel_id,
        message=f"{await actor_name(ctx)} added this message to Jira issue {link}",
        root_id=root.post_id,
    )
    try:
        await ctx.deps.mattermost.create_post(reply)
    except DeliveryError as e:
        log.warning("could not reply in thread %s: %s", root.post_id, e)
        told += " The bot could not reply in the thread; is it a member of this channel?"
    return CommandResponse.ephemeral(told)


__all__ = [
    "MAX_FILE_BYTES",
    "RootMessage",
    "attach_comment",
    "create_description",
    "permalink",
    "read_root",
    "thread_description",
    "thread_ref",
]
