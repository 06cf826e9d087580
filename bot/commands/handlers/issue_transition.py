"""`/jira transition`: move an issue to a state, from the command or from a card's or a choice's button.

A state that matches several transitions is offered as buttons, for the caller only and once.
"""

from __future__ import annotations

from bot.commands.card_actions import after_change
from bot.commands.cards import code_text, issue_link
from bot.commands.context import ActionContext, CommandContext, CommandError
from bot.commands.issue_common import (
    ACTION_TRANSITION,
    SOURCE_CHOICE,
    context_key,
    first_arg_key,
    neutral_block,
)
from bot.commands.registry import Arg
from bot.commands.resolve import match_transitions
from bot.commands.table import COMMANDS, action
from bot.jira.rest_models import Transition
from bot.mattermost.payloads import ActionResponse, Attachment, CommandResponse

MAX_TRANSITION_CHOICES = 10


def _transitioned_text(key: str, url: str, transition: Transition) -> str:
    return f"{issue_link(key, url)} transitioned to {code_text(transition.to_status or transition.name)}"


@COMMANDS.command(
    "issue transition",
    help="Change the state of a Jira issue",
    usage="[issue-key] [state]",
    aliases=("transition",),
    args=(Arg("Jira issue key", "[issue-key]"), Arg("The state to move the issue to", "[state]")),
    instance_option=True,
)
async def transition(ctx: CommandContext) -> CommandResponse:
    key = first_arg_key(ctx, "/jira transition KEY STATE")
    query = " ".join(ctx.args[1:])
    inst = await ctx.choose_instance(ctx.instance_arg)
    session = await ctx.jira(inst)
    result = match_transitions(query, await session.transitions(key), issue_key=key)
    if result.kind == "none":
        raise CommandError(neutral_block(result.message))
    chosen = result.chosen
    if chosen is not None:
        await session.transition(key, chosen.id)
        return CommandResponse.ephemeral(_transitioned_text(key, session.browse_url(key), chosen))
    buttons = [
        ctx.deps.actions.button(
            t.label,
            {
                "action": ACTION_TRANSITION,
                "instance": inst.url,
                "issue": key,
                "transition": t.id,
                "source": SOURCE_CHOICE,
            },
            user_id=ctx.user_id,
            once=True,
        )
        for t in result.candidates[:MAX_TRANSITION_CHOICES]
        if t.id and t.label
    ]
    return CommandResponse.ephemeral(
        "", attachments=[Attachment(text=neutral_block(result.message), actions=buttons)]
    )


@action(ACTION_TRANSITION)
async def transition_clicked(ctx: ActionContext) -> ActionResponse:
    inst, key = context_key(ctx)
    wanted = ctx.selected or str(ctx.data.get("transition", ""))
    if not wanted:
        return ActionResponse.ephemeral("Choose a state first.")
    session = await ctx.jira(inst)
    transitions = await session.transitions(key)
    chosen = next((t for t in transitions if t.id == wanted), None)
    if chosen is None:
        states = ", ".join(dict.fromkeys(t.to_status for t in transitions if t.to_status)) or "none"
        return ActionResponse.ephemeral(
            neutral_block(f"This transition is not available to you for {key} now. Valid states: {states}.")
        )
    await session.transition(key, chosen.id)
    return await after_change(
        ctx, inst, session, key, _transitioned_text(key, session.browse_url(key), chosen)
    )
