"""`/jira assign` and `/jira unassign`, and the buttons that assign: a candidate, or "Assign to me" on a card.

The assignee is `me`, a `@mattermost-user` who linked a Jira account, or a Jira name or email
searched among the issue's assignable users (bot.commands.assignees).
"""

from __future__ import annotations

from bot.commands.assignees import assignee_buttons, known_assignee, search_assignee
from bot.commands.card_actions import after_change
from bot.commands.cards import code_text, issue_link
from bot.commands.context import ActionContext, CommandContext, CommandError
from bot.commands.issue_common import (
    ACTION_ASSIGN,
    ACTION_ASSIGN_ME,
    context_key,
    first_arg_key,
    neutral_block,
)
from bot.commands.registry import Arg
from bot.commands.resolve import AssigneeQuery, parse_assignee_argument
from bot.commands.table import COMMANDS, action
from bot.jira.rest_models import JiraUserCandidate
from bot.mattermost.payloads import ActionResponse, Attachment, CommandResponse


def _assigned_text(user: JiraUserCandidate, key: str, url: str) -> str:
    shown = user.display_name or user.name or user.account_id
    return f"{code_text(shown)} assigned to Jira issue {issue_link(key, url)}"


@COMMANDS.command(
    "issue assign",
    help="Change the assignee of a Jira issue",
    usage="[issue-key] [assignee]",
    aliases=("assign",),
    args=(
        Arg("Jira issue key", "[issue-key]"),
        Arg("me, @mattermost-user or a Jira name or email", "[assignee]"),
    ),
    instance_option=True,
)
async def assign(ctx: CommandContext) -> CommandResponse:
    usage = "/jira assign KEY USER"
    key = first_arg_key(ctx, usage)
    query = parse_assignee_argument(ctx.args[1:])
    if query.kind == "missing":
        raise CommandError(
            f"Please name the assignee: `{usage}`, where USER is `me`, `@mattermost-user` or a Jira name."
        )
    inst = await ctx.choose_instance(ctx.instance_arg)
    session = await ctx.jira(inst)
    if query.kind != "search":
        user = await known_assignee(ctx, inst, query)
    else:
        result = await search_assignee(session, key, query.text)
        if result.kind == "none":
            raise CommandError(neutral_block(result.message))
        if result.chosen is None:
            buttons = assignee_buttons(ctx, inst, key, result.candidates)
            return CommandResponse.ephemeral(
                "", attachments=[Attachment(text=neutral_block(result.message), actions=buttons)]
            )
        user = result.chosen
    await session.assign(key, user)
    return CommandResponse.ephemeral(_assigned_text(user, key, session.browse_url(key)))


@action(ACTION_ASSIGN)
async def assign_clicked(ctx: ActionContext) -> ActionResponse:
    inst, key = context_key(ctx)
    user = JiraUserCandidate(
        display_name=str(ctx.data.get("display_name", "")),
        account_id=str(ctx.data.get("account_id", "")),
        name=str(ctx.data.get("name", "")),
    )
    if not user.identifier:
        return ActionResponse.ephemeral("This button names no Jira user; run the command again.")
    session = await ctx.jira(inst)
    await session.assign(key, user)
    return await after_change(ctx, inst, session, key, _assigned_text(user, key, session.browse_url(key)))


@action(ACTION_ASSIGN_ME)
async def assign_me_clicked(ctx: ActionContext) -> ActionResponse:
    inst, key = context_key(ctx)
    session = await ctx.jira(inst)
    me = await known_assignee(ctx, inst, AssigneeQuery("me"))
    await session.assign(key, me)
    return await after_change(ctx, inst, session, key, _assigned_text(me, key, session.browse_url(key)))


@COMMANDS.command(
    "issue unassign",
    help="Unassign a Jira issue",
    usage="[issue-key]",
    aliases=("unassign",),
    args=(Arg("Jira issue key", "[issue-key]"),),
    instance_option=True,
)
async def unassign(ctx: CommandContext) -> CommandResponse:
    key = first_arg_key(ctx, "/jira unassign KEY")
    inst = await ctx.choose_instance(ctx.instance_arg)
    session = await ctx.jira(inst)
    await session.assign(key, None)
    return CommandResponse.ephemeral(f"Unassigned Jira issue {issue_link(key, session.browse_url(key))}")
