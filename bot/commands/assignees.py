"""Who an assignee argument names: a linked Jira account (`me`, `@user`) or Jira's ranked search.

Shared by `/jira assign`, the create form's assignee and the post buttons' "Assign to me".
"""

from __future__ import annotations

from collections.abc import Iterable

from bot.accounts.models import JiraIdentity
from bot.commands.cards import code_text
from bot.commands.context import Caller, CommandError
from bot.commands.issue_common import ACTION_ASSIGN, SOURCE_CHOICE
from bot.commands.resolve import AssigneeQuery, ResolveResult, rank_users
from bot.instances import Instance
from bot.jira.client import JiraSession
from bot.jira.rest_models import JiraUserCandidate
from bot.mattermost.payloads import PostAction


def jira_candidate(identity: JiraIdentity) -> JiraUserCandidate:
    return JiraUserCandidate(
        display_name=identity.display_name,
        account_id=identity.account_id or "",
        name=identity.name or "",
        email=identity.email or "",
    )


async def known_assignee(ctx: Caller, inst: Instance, query: AssigneeQuery) -> JiraUserCandidate:
    """The Jira account behind `me` or `@mattermost-user` on this instance."""
    accounts = ctx.deps.accounts
    if query.kind == "me":
        conn = await accounts.connection(ctx.user_id, inst.url)
        if conn is None:
            raise CommandError(f"You are not connected to {inst.label}. Run `/jira connect` first.")
        return jira_candidate(conn.identity)
    user = await ctx.deps.mattermost.get_user_by_username(query.text)
    if user is None:
        raise CommandError(f"There is no Mattermost user {code_text('@' + query.text)}.")
    conn = await accounts.connection(str(user.get("id", "")), inst.url)
    if conn is None:
        raise CommandError(
            f"{code_text('@' + query.text)} has not connected a Jira account on {inst.label}, so the bot "
            "cannot tell who they are in Jira. Assign them by their Jira name or email instead."
        )
    return jira_candidate(conn.identity)


async def search_assignee(session: JiraSession, key: str, text: str) -> ResolveResult[JiraUserCandidate]:
    """Jira's assignable users for `text`, ranked. Jira matches the start of a name, so "smi jo"
    finds nobody there: then the longest word is searched and the ranking does the rest."""
    users = await session.assignable_users(key, text)
    result = rank_users(text, users, issue_key=key)
    words = text.split()
    if result.kind == "none" and len(words) > 1:
        more = await session.assignable_users(key, max(words, key=len))
        result = rank_users(text, [*users, *more], issue_key=key)
    return result


def assignee_buttons(
    ctx: Caller, inst: Instance, key: str, users: Iterable[JiraUserCandidate]
) -> list[PostAction]:
    """One button per candidate, assigning `key` to them; for the caller only, and once."""
    return [
        ctx.deps.actions.button(
            u.label,
            {
                "action": ACTION_ASSIGN,
                "instance": inst.url,
                "issue": key,
                "account_id": u.account_id,
                "name": u.name,
                "display_name": u.display_name,
                "source": SOURCE_CHOICE,
            },
            user_id=ctx.user_id,
            once=True,
        )
        for u in users
        if u.identifier
    ]
