"""`/jira view`: an issue's card, shown to the caller, and its "Share" button that posts it in the channel.

Every Jira call is made with the credentials of the person who typed the command or clicked the
button, never with someone else's.
"""

from __future__ import annotations

from bot.commands.card_actions import card_actions, card_with_actions, transitions_or_none
from bot.commands.cards import code_text, issue_card, issue_link
from bot.commands.context import ActionContext, CommandContext
from bot.commands.issue_common import ACTION_SHARE, actor_name, context_key, first_arg_key
from bot.commands.registry import Arg
from bot.commands.table import COMMANDS, action
from bot.mattermost.models import DeliveryError, OutgoingPost
from bot.mattermost.payloads import ActionResponse, CommandResponse, attachments_props


@COMMANDS.command(
    "issue view",
    help="View the details of a specific Jira issue",
    usage="[issue-key]",
    aliases=("view",),
    args=(Arg("Jira issue key", "[issue-key]"),),
    instance_option=True,
)
async def view(ctx: CommandContext) -> CommandResponse:
    key = first_arg_key(ctx, "/jira view KEY")
    inst = await ctx.choose_instance(ctx.instance_arg)
    session = await ctx.jira(inst)
    _, attachment = await card_with_actions(ctx, inst, session, key, shared=False)
    return CommandResponse.ephemeral("", attachments=[attachment])


@action(ACTION_SHARE)
async def share_clicked(ctx: ActionContext) -> ActionResponse:
    inst, key = context_key(ctx)
    session = await ctx.jira(inst)
    card = await session.issue(key)
    if card.security_level:
        return ActionResponse.ephemeral(
            f"{card.key} has the security level {code_text(card.security_level)}, so it is not "
            "shared in the channel, where people who may not see it would read it."
        )
    transitions = await transitions_or_none(session, card.key)
    attachment = issue_card(card, actions=card_actions(ctx, inst, card.key, transitions, shared=True))
    post = OutgoingPost(
        channel_id=ctx.channel_id,
        message=f"{await actor_name(ctx)} shared a Jira issue",
        props=attachments_props([attachment]),
        root_id=ctx.root_id,
    )
    try:
        await ctx.deps.mattermost.create_post(post)
    except DeliveryError as e:
        if e.status != 403:
            raise
        return ActionResponse.ephemeral(
            "The bot may not post in this channel. Add it to the channel and try again."
        )
    return ActionResponse.ephemeral(f"Shared {issue_link(card.key, card.browse_url)} in this channel.")
