"""`/jira attach KEY <message link>`: a message (for a reply, its thread's first message), its
permalink and files, added to an issue as a comment.

The message is named by its link or post id, or is the thread in which the bot was mentioned
(`@jira attach KEY`, through the websocket listener). The bot reads it with its own Mattermost
account, only for a caller who is a member of its channel (bot.commands.thread_message);
everything done in Jira is done with the user's own credentials.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from bot.commands.cards import issue_link
from bot.commands.context import Caller, CommandContext, CommandError
from bot.commands.issue_common import actor_name, first_arg_key
from bot.commands.registry import Arg
from bot.commands.table import COMMANDS
from bot.commands.thread_message import (
    attach_comment,
    how_to_name,
    mattermost_site,
    read_root,
    split_message_ref,
)
from bot.jira.client import JiraSession
from bot.jira.errors import JiraError
from bot.mattermost.models import DeliveryError, OutgoingPost
from bot.mattermost.payloads import CommandResponse

log = logging.getLogger(__name__)

ATTACH_USAGE = "/jira attach KEY <message link>"
# Files larger than this are linked rather than copied into Jira (Jira Server's default limit).
MAX_FILE_BYTES = 10 * 1024 * 1024
MAX_FILES = 10  # Mattermost's own limit per post


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
        linked.append((name, f"{mattermost_site(ctx).rstrip('/')}/api/v4/files/{file_id}"))
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
    help=(
        "Add a message, with its files, to a Jira issue as a comment: "
        "`/jira attach ABC-1 https://chat.example.com/team/pl/…` (the message's ⋯ > Copy Link), "
        "or in the message's thread `@jira attach ABC-1` (the bot must be in the channel)"
    ),
    usage="[issue-key] [message link]",
    aliases=("attach",),
    args=(
        Arg("Jira issue key", "[issue-key]"),
        Arg("The message's link (⋯ > Copy Link) or post id", "[link]", required=False),
    ),
    instance_option=True,
)
async def attach(ctx: CommandContext) -> CommandResponse:
    ctx.args, ref = split_message_ref(ctx.args)
    key = first_arg_key(ctx, ATTACH_USAGE)
    if ref is None and not ctx.root_id:  # ctx.root_id: the thread the bot was mentioned in
        raise CommandError(how_to_name(ctx, f"attach {key}"))
    post_id, team = (ref.post_id, ref.team) if ref else (ctx.root_id, ctx.team_domain)
    root = await read_root(ctx, post_id, team)
    inst = await ctx.choose_instance(ctx.instance_arg)
    session = await ctx.jira(inst)
    card = await session.issue(key)  # the user can see it; and its summary for the link
    attached, linked = await _copy_files(ctx, session, card.key, root.files)
    await session.add_comment(card.key, attach_comment(root, attached, linked))

    # The thread is read by the whole channel: an issue with a security level is named by key only.
    link = issue_link(card.key, card.browse_url, "" if card.security_level else card.summary)
    told = f"Added the message{_files_told(attached, linked)} to {link} as a comment."
    reply = OutgoingPost(
        channel_id=root.channel_id or ctx.channel_id,
        message=f"{await actor_name(ctx)} added this message to Jira issue {link}",
        root_id=root.post_id,
    )
    try:
        await ctx.deps.mattermost.create_post(reply)
    except DeliveryError as e:
        log.warning("could not reply in thread %s: %s", root.post_id, e)
        told += " The bot could not reply in the thread; is it a member of that channel?"
    return CommandResponse.ephemeral(told)


__all__ = ["MAX_FILE_BYTES"]
