"""`/jira create`: project and type pickers, the create form planned from Jira's metadata, its submission.

The form's state is signed, bound to the user and single-use (bot.web.mm_interactive), so one form
creates at most one issue however often it is sent. Jira is called with the submitter's own
credentials.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from bot.commands.assignees import assignee_buttons, known_assignee, search_assignee
from bot.commands.cards import code_text, create_screen_url, issue_link
from bot.commands.context import ActionContext, Caller, CommandContext, CommandError, DialogContext
from bot.commands.create_form import SUMMARY_MAX, errors_by_field, field_value, plan_create_form
from bot.commands.issue_common import actor_name, neutral, neutral_block
from bot.commands.resolve import AssigneeQuery, parse_assignee_argument
from bot.commands.table import COMMANDS, action, dialog
from bot.commands.thread_message import read_root, split_message_ref, thread_description, thread_ref
from bot.instances import Instance
from bot.jira.client import JiraSession
from bot.jira.errors import JiraError
from bot.jira.rest_models import IssueTypeMeta, ProjectRef
from bot.mattermost.models import DeliveryError, OutgoingPost
from bot.mattermost.payloads import (
    ActionResponse,
    Attachment,
    CommandResponse,
    Dialog,
    DialogResponse,
    PostAction,
    PostUpdate,
    attachments_props,
)

log = logging.getLogger(__name__)

ACTION_CREATE_TYPE = "issue.create.type"
ACTION_CREATE_PROJECT = "issue.create.project"
CREATE_DIALOG = "issue.create"

MAX_TYPE_BUTTONS = 10
MAX_PROJECT_OPTIONS = 100
CREATE_FORM_TTL = 3600

# -- create: the command and the clicks that lead to the form ----------------------------------


def _create_options(args: Sequence[str]) -> tuple[str | None, str | None, str]:
    """`--project KEY` and `--type NAME` (or `--flag=value`) anywhere; the rest is the summary."""
    project: str | None = None
    issue_type: str | None = None
    words: list[str] = []
    i = 0
    while i < len(args):
        flag, eq, value = args[i].partition("=")
        name = flag.lower()
        if name not in ("--project", "--type"):
            words.append(args[i])
            i += 1
            continue
        if not eq:
            if i + 1 >= len(args):
                raise CommandError(
                    f"`{name}` needs a value: `/jira create --project KEY --type NAME summary`."
                )
            value = args[i + 1]
            i += 2
        else:
            i += 1
        if name == "--project":
            project = value.strip()
        else:
            issue_type = value.strip()
    return project, issue_type, " ".join(words)[:SUMMARY_MAX]


def _find_project(projects: Sequence[ProjectRef], wanted: str) -> ProjectRef | None:
    folded = wanted.casefold()
    return next(
        (p for p in projects if p.key.casefold() == folded or p.id == wanted),
        next((p for p in projects if p.name.casefold() == folded), None),
    )


def _creatable_types(meta_types: Iterable[IssueTypeMeta]) -> list[IssueTypeMeta]:
    # Sub-tasks need a parent issue, which the form does not ask for.
    return [t for t in meta_types if not t.subtask]


def _listing(names: Iterable[str], limit: int = 20) -> str:
    items = list(names)
    shown = ", ".join(code_text(n) for n in items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def _project_context(
    inst: Instance, project: ProjectRef, summary: str, thread: Mapping[str, str] | None = None
) -> dict[str, str]:
    return {
        "instance": inst.url,
        "project": project.key,
        "project_id": project.id,
        "project_name": project.name,
        "summary": summary,
        **(thread or {}),
    }


# `/jira create … <message link>` (or `@jira create` in a thread) carries the message's post id,
# the team's name (for the permalink) and the message's channel through its buttons and form: to
# pre-fill the description, and to answer in that thread.
_THREAD_KEYS = ("thread", "team", "thread_channel")


def _thread_of(data: Mapping[str, Any]) -> dict[str, str]:
    return {k: str(data[k]) for k in _THREAD_KEYS if data.get(k)}


def _type_picker(
    ctx: Caller,
    inst: Instance,
    projects: Sequence[ProjectRef],
    project: ProjectRef | None,
    types: Sequence[IssueTypeMeta],
    summary: str,
    thread: Mapping[str, str] | None = None,
) -> Attachment:
    """Buttons for the issue types of `project` (a click opens the form) and a menu to switch
    project. Without a project, the menu only."""
    factory = ctx.deps.actions
    found: list[PostAction] = []
    lines: list[str] = []
    if project is not None:
        lines.append(
            f"Create a Jira issue in **{neutral(project.name)}** (`{project.key}`) on {inst.label}. "
            "Pick its type:"
        )
        for t in types[:MAX_TYPE_BUTTONS]:
            context = {
                "action": ACTION_CREATE_TYPE,
                **_project_context(inst, project, summary, thread),
                "type": t.id,
            }
            found.append(factory.button(t.name or t.id, context, user_id=ctx.user_id))
        if len(types) > MAX_TYPE_BUTTONS:
            lines.append("For another type, use `/jira create --type NAME`.")
    else:
        lines.append(f"Create a Jira issue on {inst.label}. Pick the project first:")
    if summary:
        lines.append(f"Summary: {neutral(summary)}")
    options = [
        (f"{p.name} ({p.key})" if p.name else p.key, p.key) for p in projects[:MAX_PROJECT_OPTIONS] if p.key
    ]
    if options:
        found.append(
            factory.menu(
                "Another project" if project is not None else "Project",
                {"action": ACTION_CREATE_PROJECT, "instance": inst.url, "summary": summary, **(thread or {})},
                options,
                user_id=ctx.user_id,
            )
        )
    return Attachment(text="\n".join(lines), actions=found or None)


@dataclass
class _Offer:
    """What came of offering the create form: opened, or a text (and buttons) to show instead."""

    opened: bool
    text: str = ""
    attachments: list[Attachment] = field(default_factory=list)


async def _offer_form(
    ctx: Caller,
    inst: Instance,
    project: ProjectRef,
    issue_type: IssueTypeMeta,
    summary: str,
    thread: Mapping[str, str] | None = None,
) -> _Offer:
    description = ""
    if thread:
        description = await thread_description(ctx, thread)
    plan = plan_create_form(issue_type, summary, description)
    if plan.missing:
        url = create_screen_url(
            inst.url, project.id, issue_type.id, {"summary": summary, "description": description}
        )
        names = ", ".join(neutral(f.name) for f in plan.missing)
        return _Offer(
            False,
            f"[Please create your Jira issue in Jira]({url}): {neutral(issue_type.name)} issues in "
            f"`{project.key}` need fields this form cannot show ({names}).",
        )
    state = ctx.deps.signer.dumps(
        {
            "dialog": CREATE_DIALOG,
            **_project_context(inst, project, "", thread),
            "type": issue_type.id,
            "kinds": plan.kinds,
            "required": plan.required,
            "reporter_self": plan.reporter_self,
        },
        ttl_seconds=CREATE_FORM_TTL,
        now=ctx.now(),
        user_id=ctx.user_id,
        once=True,  # one issue per form, however often it is sent (bot.web.mm_interactive)
    )
    form = Dialog(
        callback_id=CREATE_DIALOG,
        title="Create Jira issue",
        introduction_text=(
            f"A new **{neutral(issue_type.name)}** in **{neutral(project.name or project.key)}** "
            f"(`{project.key}`) on {inst.label}."
        ),
        elements=plan.elements,
        submit_label="Create",
        state=state,
    )
    try:
        if not ctx.trigger_id:  # a command in a message (`@jira create`): only a click opens a form
            raise DeliveryError("no trigger id to open a dialog with", retryable=False, status=400)
        await ctx.deps.mattermost.open_dialog(ctx.trigger_id, ctx.deps.dialog_url, form.to_dict())
    except DeliveryError as e:
        if e.status != 400:
            raise
        # The trigger id had expired (Jira answered slowly), or there was none: a click brings one.
        context = {
            "action": ACTION_CREATE_TYPE,
            **_project_context(inst, project, summary, thread),
            "type": issue_type.id,
        }
        button = ctx.deps.actions.button("Open the form", context, user_id=ctx.user_id, style="primary")
        told = "Jira took a while to answer. Open the form now:" if ctx.trigger_id else "Open the form:"
        return _Offer(False, told, [Attachment(actions=[button])])
    return _Offer(True)


@COMMANDS.command(
    "issue create",
    help=(
        "Create a new Jira issue; the text becomes its summary, a message its description: "
        "`/jira create Login fails https://chat.example.com/team/pl/…` (the message's ⋯ > Copy Link), "
        "or in the message's thread `@jira create Login fails`"
    ),
    usage="[--project KEY] [--type NAME] [summary] [message link]",
    aliases=("create",),
    instance_option=True,
)
async def create(ctx: CommandContext) -> CommandResponse:
    args, ref = split_message_ref(ctx.args)
    wanted_project, wanted_type, summary = _create_options(args)
    # A linked message is read now, so that a caller who may not read it is told at once.
    thread = thread_ref(ctx, await read_root(ctx, ref.post_id, ref.team) if ref else None)
    inst = await ctx.choose_instance(ctx.instance_arg)
    session = await ctx.jira(inst)
    projects = await session.projects()
    if not projects:
        raise CommandError(f"Your Jira account cannot see any project on {inst.label}.")
    project: ProjectRef | None
    if wanted_project:
        project = _find_project(projects, wanted_project)
        if project is None:
            raise CommandError(
                f"There is no project {code_text(wanted_project)} you can see on {inst.label}. "
                f"Your projects: {_listing(p.key for p in projects)}."
            )
    else:
        last = await ctx.deps.accounts.last_project(ctx.user_id)
        project = _find_project(projects, last) if last else None
        if project is None and len(projects) == 1:
            project = projects[0]
    if project is None:
        return CommandResponse.ephemeral(
            "", attachments=[_type_picker(ctx, inst, projects, None, (), summary, thread)]
        )
    types = _creatable_types((await session.create_meta(project.key)).issue_types)
    if not types:
        raise CommandError(f"Your Jira account cannot create issues in `{project.key}`.")
    chosen: IssueTypeMeta | None = None
    if wanted_type:
        chosen = next(
            (t for t in types if t.id == wanted_type or t.name.casefold() == wanted_type.casefold()), None
        )
        if chosen is None:
            raise CommandError(
                f"`{project.key}` has no issue type {code_text(wanted_type)} you can create. "
                f"Types: {_listing(t.name for t in types)}."
            )
    elif len(types) == 1:
        chosen = types[0]
    if chosen is None:
        return CommandResponse.ephemeral(
            "", attachments=[_type_picker(ctx, inst, projects, project, types, summary, thread)]
        )
    offer = await _offer_form(ctx, inst, project, chosen, summary, thread)
    return CommandResponse.ephemeral(offer.text, attachments=offer.attachments or None)


@action(ACTION_CREATE_PROJECT)
async def create_project_chosen(ctx: ActionContext) -> ActionResponse:
    inst = ctx.instance_named(str(ctx.data.get("instance", "")))
    summary = str(ctx.data.get("summary", ""))
    if not ctx.selected:
        return ActionResponse.ephemeral("Choose a project first.")
    session = await ctx.jira(inst)
    projects = await session.projects()
    project = _find_project(projects, ctx.selected)
    if project is None:
        return ActionResponse.ephemeral(f"Your Jira account cannot see {code_text(ctx.selected)} any more.")
    types = _creatable_types((await session.create_meta(project.key)).issue_types)
    if not types:
        return ActionResponse.ephemeral(f"Your Jira account cannot create issues in `{project.key}`.")
    picker = _type_picker(ctx, inst, projects, project, types, summary, _thread_of(ctx.data))
    return ActionResponse(update=PostUpdate(message="", props=attachments_props([picker])))


@action(ACTION_CREATE_TYPE)
async def create_type_chosen(ctx: ActionContext) -> ActionResponse:
    inst = ctx.instance_named(str(ctx.data.get("instance", "")))
    data = ctx.data
    project = ProjectRef(
        id=str(data.get("project_id", "")),
        key=str(data.get("project", "")),
        name=str(data.get("project_name", "")),
    )
    type_id = str(data.get("type", ""))
    session = await ctx.jira(inst)
    issue_type = (await session.create_meta(project.key, [type_id])).issue_type(type_id)
    if issue_type is None:
        return ActionResponse.ephemeral(f"You can no longer create this type of issue in `{project.key}`.")
    offer = await _offer_form(ctx, inst, project, issue_type, str(data.get("summary", "")), _thread_of(data))
    if offer.opened:
        return ActionResponse()
    if offer.attachments:
        return ActionResponse(
            update=PostUpdate(message=offer.text, props=attachments_props(offer.attachments))
        )
    # The type buttons stay: another type may have a form.
    return ActionResponse(update=PostUpdate(message=offer.text))


# -- create: the submitted form ----------------------------------------------------------------


@dialog(CREATE_DIALOG)
async def create_submitted(ctx: DialogContext) -> DialogResponse | None:
    if ctx.cancelled:
        return None
    state = ctx.state
    inst = ctx.instance_named(str(state.get("instance", "")))
    kinds = {str(k): str(v) for k, v in dict(state.get("kinds") or {}).items()}
    required = set(state.get("required") or ())
    project_key, project_id, type_id = (
        str(state["project"]),
        str(state.get("project_id", "")),
        str(state["type"]),
    )

    fields: dict[str, Any] = {"project": {"key": project_key}, "issuetype": {"id": type_id}}
    errors: dict[str, str] = {}
    assignee_text = ""
    for name, kind in kinds.items():
        raw = ctx.submission.get(name)
        if kind == "assignee":
            assignee_text = str(raw or "").strip()
            continue
        value, error = field_value(kind, raw)
        if error:
            errors[name] = error
        elif value in (None, "", []) and name in required:
            errors[name] = "This field is required."
        elif value not in (None, "", []):
            fields[name] = value
    if errors:
        return DialogResponse(errors=errors)

    session = await ctx.jira(inst)
    search_later = ""
    if assignee_text:
        query = parse_assignee_argument(assignee_text.split())
        if query.kind in ("me", "mattermost_user"):
            try:
                fields["assignee"] = (await known_assignee(ctx, inst, query)).assignee_field()
            except CommandError as e:
                return DialogResponse(errors={"assignee": e.message})
        else:
            # Jira searches assignable users of an issue: the search waits for the issue.
            search_later = query.text
    if state.get("reporter_self"):
        fields["reporter"] = (await known_assignee(ctx, inst, AssigneeQuery("me"))).assignee_field()

    try:
        created = await session.create_issue(fields)
    except JiraError as e:
        if e.kind == "timeout":
            # The request may still reach Jira and create the issue. An error would keep the
            # form open and give its single-use claim back (bot.web.mm_interactive), so sending
            # it again could create a second issue: the form closes instead, keeping the claim.
            summary = neutral(str(fields.get("summary", "")))
            await ctx.deps.notify_user(
                ctx.user_id,
                f"Jira did not answer in time, so the issue **{summary}** may or may not have been "
                f"created in `{project_key}`. Look there before you create it again: {inst.url}/browse/"
                f"{project_key}",
            )
            return None
        if e.kind != "bad_request":
            raise
        field_errors, rest = errors_by_field(e.detail, kinds)
        if field_errors and not rest:
            return DialogResponse(errors=field_errors)
        entered = {
            "summary": str(fields.get("summary", "")),
            "description": str(fields.get("description", "")),
            "labels": [str(v) for v in fields.get("labels", [])],
        }
        link = create_screen_url(inst.url, project_id, type_id, entered)
        return DialogResponse(
            errors=field_errors or None,
            error=f"Jira refused the issue: {(rest or e.detail).rstrip('.')}. "
            f"You can create it in Jira instead: {link}",
        )

    # The issue exists: nothing below may answer with an error, which would reopen the form.
    await ctx.deps.accounts.set_last_project(ctx.user_id, project_key, now=ctx.now())
    summary = str(fields.get("summary", ""))
    link = issue_link(created.key, created.browse_url, summary)
    await _announce(
        ctx,
        f"{await actor_name(ctx)} created a Jira issue {link}",
        root_id=str(state.get("thread") or ""),
        channel_id=str(state.get("thread_channel") or ""),
    )
    if search_later:
        await _assign_created(ctx, inst, session, created.key, created.browse_url, search_later)
    return None


async def _announce(ctx: DialogContext, message: str, *, root_id: str = "", channel_id: str = "") -> None:
    """Tell the channel (in the thread `root_id` of `channel_id` when given); the issue exists
    already, so a failure here must not fail the form."""
    channel_id = channel_id or ctx.channel_id
    if channel_id:
        try:
            await ctx.deps.mattermost.create_post(
                OutgoingPost(channel_id=channel_id, message=message, root_id=root_id)
            )
            return
        except DeliveryError as e:
            log.warning("could not announce a created issue in channel %s: %s", channel_id, e)
    await ctx.deps.notify_user(ctx.user_id, message)


async def _assign_created(
    ctx: DialogContext, inst: Instance, session: JiraSession, key: str, url: str, text: str
) -> None:
    """Assign the new issue to the user named in the form; anything short of one clear match
    is told to its creator in a direct message, with buttons when there are candidates."""
    created = f"{issue_link(key, url)} was created"
    try:
        result = await search_assignee(session, key, text)
        if result.chosen is not None:
            await session.assign(key, result.chosen)
            return
        if result.kind == "none":
            await ctx.deps.notify_user(
                ctx.user_id, f"{created}, but not assigned: {neutral_block(result.message)}"
            )
            return
        buttons = assignee_buttons(ctx, inst, key, result.candidates)
        attachment = Attachment(text=f"{created}. {neutral_block(result.message)}", actions=buttons)
        await ctx.deps.mattermost.send_direct_message(ctx.user_id, "", attachments_props([attachment]))
    except JiraError as e:
        await ctx.deps.notify_user(ctx.user_id, f"{created}, but could not be assigned: {e.user_message()}")
    except DeliveryError as e:
        log.warning("could not tell %s how to assign %s: %s", ctx.user_id, key, e)


__all__ = ["ACTION_CREATE_PROJECT", "ACTION_CREATE_TYPE", "CREATE_DIALOG"]
