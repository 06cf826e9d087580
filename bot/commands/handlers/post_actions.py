"""Clicks on the buttons of the bot's channel posts about an issue (see bot.commands.post_buttons).

Anyone in the channel may click; each click acts in Jira with the clicker's own credentials, and
someone who has not connected a Jira account is told how to. What was done, and by whom, is
added to the post as a "✓" line, so the channel sees it.

Transition opens a form listing the transitions the clicker can make from the issue's current
status, loaded at click time: a menu fixed when the post was made would offer states that the
issue has since left, or that the clicker's permissions and workflow do not allow, and the bot
has no Jira account of its own to load them with. Comment opens a form too. Each form is bound
to the clicker, expires after `FORM_TTL`, and acts at most once: its state is single-use, claimed
in the store before Jira is called (bot.web.mm_interactive), so the same form sent again is
refused; an answer with an error gives the claim back, so the user can correct and send again.
"""

from __future__ import annotations

import logging

from bot.commands.assignees import known_assignee
from bot.commands.cards import code_text
from bot.commands.context import ActionContext, DialogContext
from bot.commands.issue_common import MAX_MENU_OPTIONS, TEXTAREA_MAX, actor_name, context_key, neutral
from bot.commands.post_buttons import (
    ACTION_POST_ASSIGN_ME,
    ACTION_POST_COMMENT,
    ACTION_POST_TRANSITION,
    with_activity,
)
from bot.commands.resolve import AssigneeQuery
from bot.commands.table import action, dialog
from bot.instances import Instance
from bot.mattermost.models import DeliveryError
from bot.mattermost.payloads import (
    ActionResponse,
    Dialog,
    DialogElement,
    DialogOption,
    DialogResponse,
    PostUpdate,
)
from bot.render.plain import plain_text

log = logging.getLogger(__name__)

TRANSITION_DIALOG = "post.transition"
COMMENT_DIALOG = "post.comment"
FORM_TTL = 3600


async def _current_message(ctx: ActionContext | DialogContext, post_id: str) -> str | None:
    """The post's message now (others may have added lines since it was made), or None when
    Mattermost cannot give it."""
    if not post_id:
        return None
    try:
        post = await ctx.deps.mattermost.get_post(post_id)
    except DeliveryError as e:
        log.warning("could not read post %s to note an action on it: %s", post_id, e)
        return None
    return str(post.get("message", ""))


async def _noted(ctx: ActionContext, line: str) -> ActionResponse:
    """The answer to a click that changed the issue: the clicked post gains `line`. Only the
    message is sent, so Mattermost keeps the post's attachments and their working buttons."""
    message = await _current_message(ctx, ctx.post_id)
    if message is None:
        return ActionResponse.ephemeral(line)
    return ActionResponse(update=PostUpdate(message=with_activity(message, line)))


async def _note_on_post(ctx: DialogContext, post_id: str, line: str) -> None:
    """Add `line` to the post a form was opened from. The change in Jira is made already, so a
    failure here is logged, not shown as a failure of the form."""
    message = await _current_message(ctx, post_id)
    if message is None:
        return
    try:
        # Patching the message only leaves the post's props, and so its buttons, as they are.
        await ctx.deps.mattermost.update_post(post_id, message=with_activity(message, line))
    except DeliveryError as e:
        log.warning("could not note an action on post %s: %s", post_id, e)


def _form_state(ctx: ActionContext, dialog_name: str, inst: Instance, key: str) -> str:
    form = {"dialog": dialog_name, "instance": inst.url, "issue": key, "post": ctx.post_id}
    return ctx.deps.signer.dumps(form, ttl_seconds=FORM_TTL, now=ctx.now(), user_id=ctx.user_id, once=True)


async def _open(ctx: ActionContext, form: Dialog, fallback: str) -> ActionResponse:
    try:
        await ctx.deps.mattermost.open_dialog(ctx.trigger_id, ctx.deps.dialog_url, form.to_dict())
    except DeliveryError as e:
        if e.status != 400:
            raise
        # The click's trigger id expired while Jira answered: another click brings a fresh one.
        return ActionResponse.ephemeral(fallback)
    return ActionResponse()


# -- Assign to me --------------------------------------------------------------------------------


@action(ACTION_POST_ASSIGN_ME)
async def assign_me_clicked(ctx: ActionContext) -> ActionResponse:
    inst, key = context_key(ctx)
    session = await ctx.jira(inst)
    me = await known_assignee(ctx, inst, AssigneeQuery("me"))
    await session.assign(key, me)
    return await _noted(ctx, f"{await actor_name(ctx)} assigned {key} to themselves")


# -- Transition ----------------------------------------------------------------------------------


@action(ACTION_POST_TRANSITION)
async def transition_clicked(ctx: ActionContext) -> ActionResponse:
    inst, key = context_key(ctx)
    session = await ctx.jira(inst)
    card = await session.issue(key)
    transitions = await session.transitions(card.key)
    options = [DialogOption(text=t.label, value=t.id) for t in transitions if t.id and t.label]
    if not options:
        return ActionResponse.ephemeral(
            f"There is no transition you can make on {card.key} from {code_text(card.status)}."
        )
    form = Dialog(
        callback_id=TRANSITION_DIALOG,
        title=f"Transition {card.key}",
        introduction_text=(
            f"**{card.key}**: {neutral(card.summary)}\n\nNow {code_text(card.status)}. "
            "The states offered are those you can move it to."
        ),
        elements=[
            DialogElement(
                display_name="New state",
                name="transition",
                type="select",
                options=options[:MAX_MENU_OPTIONS],
            )
        ],
        submit_label="Move",
        state=_form_state(ctx, TRANSITION_DIALOG, inst, card.key),
    )
    return await _open(ctx, form, f"Click Transition again, or use `/jira transition {card.key} STATE`.")


@dialog(TRANSITION_DIALOG)
async def transition_submitted(ctx: DialogContext) -> DialogResponse | None:
    if ctx.cancelled:
        return None
    inst = ctx.instance_named(str(ctx.state.get("instance", "")))
    key = str(ctx.state.get("issue", ""))
    wanted = str(ctx.submission.get("transition") or "")
    if not wanted:
        return DialogResponse(errors={"transition": "Choose a state."})
    session = await ctx.jira(inst)
    transitions = await session.transitions(key)
    chosen = next((t for t in transitions if t.id == wanted), None)
    if chosen is None:
        states = ", ".join(dict.fromkeys(t.to_status for t in transitions if t.to_status)) or "none"
        return DialogResponse(
            errors={"transition": f"Not available any more; you can move {key} to: {plain_text(states)}."}
        )
    await session.transition(key, chosen.id)
    # Done in Jira: nothing below may answer with an error, which would reopen the form.
    target = code_text(chosen.to_status or chosen.name)
    await _note_on_post(
        ctx, str(ctx.state.get("post", "")), f"{await actor_name(ctx)} moved {key} to {target}"
    )
    return None


# -- Comment -------------------------------------------------------------------------------------


@action(ACTION_POST_COMMENT)
async def comment_clicked(ctx: ActionContext) -> ActionResponse:
    inst, key = context_key(ctx)
    await ctx.jira(inst)  # tells someone not connected how to connect, before they write
    form = Dialog(
        callback_id=COMMENT_DIALOG,
        title=f"Comment on {key}",
        introduction_text=f"Your comment is added to **{key}** with your Jira account.",
        elements=[
            DialogElement(display_name="Comment", name="comment", type="textarea", max_length=TEXTAREA_MAX)
        ],
        submit_label="Comment",
        state=_form_state(ctx, COMMENT_DIALOG, inst, key),
    )
    return await _open(ctx, form, "Mattermost did not open the form in time; click Comment again.")


@dialog(COMMENT_DIALOG)
async def comment_submitted(ctx: DialogContext) -> DialogResponse | None:
    if ctx.cancelled:
        return None
    inst = ctx.instance_named(str(ctx.state.get("instance", "")))
    key = str(ctx.state.get("issue", ""))
    text = str(ctx.submission.get("comment") or "").strip()
    if not text:
        return DialogResponse(errors={"comment": "Write a comment first."})
    session = await ctx.jira(inst)
    await session.add_comment(key, text)
    # Done in Jira: nothing below may answer with an error, which would reopen the form.
    await _note_on_post(ctx, str(ctx.state.get("post", "")), f"{await actor_name(ctx)} commented on {key}")
    return None


__all__ = ["COMMENT_DIALOG", "FORM_TTL", "TRANSITION_DIALOG"]
