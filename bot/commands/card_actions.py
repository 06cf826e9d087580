"""The buttons of an issue card (transition menu, "Assign to me", "Share") and the answer to a click on them.

A shared card's buttons work for anyone in the channel, each acting with their own Jira account.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from bot.commands.cards import issue_card
from bot.commands.context import ActionContext, Caller
from bot.commands.issue_common import (
    ACTION_ASSIGN_ME,
    ACTION_SHARE,
    ACTION_TRANSITION,
    MAX_MENU_OPTIONS,
    SOURCE_CARD,
    SOURCE_CHOICE,
    SOURCE_SHARED,
)
from bot.instances import Instance
from bot.jira.client import JiraSession
from bot.jira.errors import JiraError
from bot.jira.rest_models import IssueCard, Transition
from bot.mattermost.payloads import ActionResponse, Attachment, PostAction, PostUpdate, attachments_props

log = logging.getLogger(__name__)


async def transitions_or_none(session: JiraSession, key: str) -> list[Transition]:
    """The issue's transitions; a card is still worth showing without its menu."""
    try:
        return await session.transitions(key)
    except JiraError as e:
        if e.kind == "auth":
            raise
        log.info("no transitions for the card of %s: %s", key, e)
        return []


def card_actions(
    ctx: Caller, inst: Instance, key: str, transitions: Sequence[Transition], *, shared: bool
) -> list[PostAction]:
    """The transition menu, "Assign to me" and, on the user's own card, "Share". A shared card's
    buttons work for anyone in the channel, each acting with their own Jira account."""
    factory = ctx.deps.actions
    base = {"instance": inst.url, "issue": key, "source": SOURCE_SHARED if shared else SOURCE_CARD}
    owner = None if shared else ctx.user_id
    found: list[PostAction] = []
    options = [(t.label, t.id) for t in transitions if t.id and t.label][:MAX_MENU_OPTIONS]
    if options:
        found.append(
            factory.menu("Transition", {"action": ACTION_TRANSITION, **base}, options, user_id=owner)
        )
    found.append(factory.button("Assign to me", {"action": ACTION_ASSIGN_ME, **base}, user_id=owner))
    if not shared:
        found.append(
            factory.button(
                "Share", {"action": ACTION_SHARE, **base}, user_id=ctx.user_id, once=True, style="primary"
            )
        )
    return found


async def card_with_actions(
    ctx: Caller, inst: Instance, session: JiraSession, key: str, *, shared: bool
) -> tuple[IssueCard, Attachment]:
    """The issue `key` and its card, with the buttons for the caller's card or a shared one."""
    card = await session.issue(key)
    transitions = await transitions_or_none(session, card.key)
    return card, issue_card(card, actions=card_actions(ctx, inst, card.key, transitions, shared=shared))


async def after_change(
    ctx: ActionContext, inst: Instance, session: JiraSession, key: str, text: str
) -> ActionResponse:
    """The answer to a click that changed the issue, depending on where the button was."""
    source = ctx.data.get("source")
    if source == SOURCE_CARD:
        try:
            _, attachment = await card_with_actions(ctx, inst, session, key, shared=False)
        except JiraError as e:
            if e.kind == "auth":
                raise
            return ActionResponse.ephemeral(text)
        return ActionResponse(update=PostUpdate(message=text, props=attachments_props([attachment])))
    if source == SOURCE_CHOICE:
        # The choices are spent: the post now says what was done.
        return ActionResponse(update=PostUpdate(message=text, props={"attachments": []}))
    return ActionResponse.ephemeral(text)
