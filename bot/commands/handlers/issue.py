"""view, transition, assign, unassign and create: acting on Jira issues from Mattermost.

Every Jira call is made with the credentials of the person who typed the command, clicked the
button or submitted the form, never with someone else's. Buttons and menus carry signed
contexts naming the action, the instance and the issue; the choices offered to one person
(transition candidates, assignee candidates, issue types) only work for that person.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from bot.accounts.models import JiraIdentity
from bot.commands.cards import (
    code_text,
    create_screen_url,
    inline_text,
    issue_card,
    issue_link,
    user_mention,
)
from bot.commands.context import ActionContext, Caller, CommandContext, CommandError, DialogContext
from bot.commands.registry import Arg
from bot.commands.resolve import (
    AssigneeQuery,
    JiraUserCandidate,
    ResolveResult,
    Transition,
    match_transitions,
    parse_assignee_argument,
    rank_users,
)
from bot.commands.table import COMMANDS, action, dialog
from bot.instances import Instance
from bot.jira.client import JiraSession
from bot.jira.errors import JiraError
from bot.jira.rest_models import FieldMeta, IssueCard, IssueTypeMeta, ProjectRef
from bot.mattermost.models import DeliveryError, OutgoingPost
from bot.mattermost.payloads import (
    ActionResponse,
    Attachment,
    CommandResponse,
    Dialog,
    DialogElement,
    DialogOption,
    DialogResponse,
    PostAction,
    PostUpdate,
    attachments_props,
)
from bot.render.plain import plain_text

log = logging.getLogger(__name__)

ACTION_TRANSITION = "issue.transition"
ACTION_ASSIGN = "issue.assign"
ACTION_ASSIGN_ME = "issue.assign_me"
ACTION_SHARE = "issue.share"
ACTION_CREATE_TYPE = "issue.create.type"
ACTION_CREATE_PROJECT = "issue.create.project"
CREATE_DIALOG = "issue.create"

# Where a clicked button sits, which decides what the answer to the click replaces:
# the user's own card (refreshed), a list of choices (replaced by the outcome), a shared card
# (left alone: the outcome is told to the clicker only).
SOURCE_CARD = "card"
SOURCE_CHOICE = "choice"
SOURCE_SHARED = "shared"

MAX_TRANSITION_CHOICES = 10
MAX_MENU_OPTIONS = 100
MAX_TYPE_BUTTONS = 10
MAX_PROJECT_OPTIONS = 100
SUMMARY_MAX = 255
TEXT_FIELD_MAX = 255
TEXTAREA_MAX = 3000
CREATE_FORM_TTL = 3600

_ISSUE_KEY = re.compile(r"^[A-Z][A-Z0-9_]*-[0-9]+$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")

COMMANDS.group("issue", help="View, transition, assign and create Jira issues")


# -- shared helpers ----------------------------------------------------------------------------


def neutral(text: str) -> str:
    """Text from Jira or Mattermost made safe for one line of a post."""
    return inline_text(text, 120)


def neutral_block(text: str) -> str:
    """A sentence built from Jira names (states, users), defused; its own Markdown kept."""
    return plain_text(text, 2000)


def _issue_key(text: str, usage: str) -> str:
    key = text.strip().upper()
    if not _ISSUE_KEY.match(key):
        raise CommandError(f"{code_text(text, 40)} is not a Jira issue key (like PROJ-123). Use `{usage}`.")
    return key


def _first_arg_key(ctx: CommandContext, usage: str) -> str:
    if not ctx.args:
        raise CommandError(f"Please give the issue key: `{usage}`.")
    return _issue_key(ctx.args[0], usage)


def _context_key(ctx: ActionContext) -> tuple[Instance, str]:
    """The instance and issue a verified button context names."""
    inst = ctx.instance_named(str(ctx.data.get("instance", "")))
    key = str(ctx.data.get("issue", ""))
    if not key:
        raise CommandError("This button names no issue; run the command again.")
    return inst, key


async def _who(ctx: Caller) -> str:
    """The acting user as text that does not notify them."""
    name = ctx.user_name
    if not name:
        try:
            name = str((await ctx.deps.mattermost.get_user(ctx.user_id)).get("username", ""))
        except DeliveryError:
            name = ""
    return user_mention(name)


def _candidate(identity: JiraIdentity) -> JiraUserCandidate:
    return JiraUserCandidate(
        display_name=identity.display_name,
        account_id=identity.account_id or "",
        name=identity.name or "",
        email=identity.email or "",
    )


def _transitioned_text(key: str, url: str, transition: Transition) -> str:
    return f"{issue_link(key, url)} transitioned to {code_text(transition.to_status or transition.name)}"


def _assigned_text(user: JiraUserCandidate, key: str, url: str) -> str:
    shown = user.display_name or user.name or user.account_id
    return f"{code_text(shown)} assigned to Jira issue {issue_link(key, url)}"


async def _transitions_or_none(session: JiraSession, key: str) -> list[Transition]:
    """The issue's transitions; a card is still worth showing without its menu."""
    try:
        return await session.transitions(key)
    except JiraError as e:
        if e.kind == "auth":
            raise
        log.info("no transitions for the card of %s: %s", key, e)
        return []


def _card_actions(
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


async def _card(
    ctx: Caller, inst: Instance, session: JiraSession, key: str, *, shared: bool
) -> tuple[IssueCard, Attachment]:
    card = await session.issue(key)
    transitions = await _transitions_or_none(session, card.key)
    return card, issue_card(card, actions=_card_actions(ctx, inst, card.key, transitions, shared=shared))


async def _after_change(
    ctx: ActionContext, inst: Instance, session: JiraSession, key: str, text: str
) -> ActionResponse:
    """The answer to a click that changed the issue, depending on where the button was."""
    source = ctx.data.get("source")
    if source == SOURCE_CARD:
        try:
            _, attachment = await _card(ctx, inst, session, key, shared=False)
        except JiraError as e:
            if e.kind == "auth":
                raise
            return ActionResponse.ephemeral(text)
        return ActionResponse(update=PostUpdate(message=text, props=attachments_props([attachment])))
    if source == SOURCE_CHOICE:
        # The choices are spent: the post now says what was done.
        return ActionResponse(update=PostUpdate(message=text, props={"attachments": []}))
    return ActionResponse.ephemeral(text)


# -- view --------------------------------------------------------------------------------------


@COMMANDS.command(
    "issue view",
    help="View the details of a specific Jira issue",
    usage="[issue-key]",
    aliases=("view",),
    args=(Arg("Jira issue key", "[issue-key]"),),
    instance_option=True,
)
async def view(ctx: CommandContext) -> CommandResponse:
    key = _first_arg_key(ctx, "/jira view KEY")
    inst = await ctx.choose_instance(ctx.instance_arg)
    session = await ctx.jira(inst)
    _, attachment = await _card(ctx, inst, session, key, shared=False)
    return CommandResponse.ephemeral("", attachments=[attachment])


@action(ACTION_SHARE)
async def share_clicked(ctx: ActionContext) -> ActionResponse:
    inst, key = _context_key(ctx)
    session = await ctx.jira(inst)
    card = await session.issue(key)
    if card.security_level:
        return ActionResponse.ephemeral(
            f"{card.key} has the security level {code_text(card.security_level)}, so it is not "
            "shared in the channel, where people who may not see it would read it."
        )
    transitions = await _transitions_or_none(session, card.key)
    attachment = issue_card(card, actions=_card_actions(ctx, inst, card.key, transitions, shared=True))
    post = OutgoingPost(
        channel_id=ctx.channel_id,
        message=f"{await _who(ctx)} shared a Jira issue",
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


# -- transition --------------------------------------------------------------------------------


@COMMANDS.command(
    "issue transition",
    help="Change the state of a Jira issue",
    usage="[issue-key] [state]",
    aliases=("transition",),
    args=(Arg("Jira issue key", "[issue-key]"), Arg("The state to move the issue to", "[state]")),
    instance_option=True,
)
async def transition(ctx: CommandContext) -> CommandResponse:
    key = _first_arg_key(ctx, "/jira transition KEY STATE")
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
    inst, key = _context_key(ctx)
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
    return await _after_change(
        ctx, inst, session, key, _transitioned_text(key, session.browse_url(key), chosen)
    )


# -- assign and unassign -----------------------------------------------------------------------


async def _known_assignee(ctx: Caller, inst: Instance, query: AssigneeQuery) -> JiraUserCandidate:
    """The Jira account behind `me` or `@mattermost-user` on this instance."""
    accounts = ctx.deps.accounts
    if query.kind == "me":
        conn = await accounts.connection(ctx.user_id, inst.url)
        if conn is None:
            raise CommandError(f"You are not connected to {inst.label}. Run `/jira connect` first.")
        return _candidate(conn.identity)
    user = await ctx.deps.mattermost.get_user_by_username(query.text)
    if user is None:
        raise CommandError(f"There is no Mattermost user {code_text('@' + query.text)}.")
    conn = await accounts.connection(str(user.get("id", "")), inst.url)
    if conn is None:
        raise CommandError(
            f"{code_text('@' + query.text)} has not connected a Jira account on {inst.label}, so the bot "
            "cannot tell who they are in Jira. Assign them by their Jira name or email instead."
        )
    return _candidate(conn.identity)


async def _search_assignee(session: JiraSession, key: str, text: str) -> ResolveResult[JiraUserCandidate]:
    """Jira's assignable users for `text`, ranked. Jira matches the start of a name, so "smi jo"
    finds nobody there: then the longest word is searched and the ranking does the rest."""
    users = await session.assignable_users(key, text)
    result = rank_users(text, users, issue_key=key)
    words = text.split()
    if result.kind == "none" and len(words) > 1:
        more = await session.assignable_users(key, max(words, key=len))
        result = rank_users(text, [*users, *more], issue_key=key)
    return result


def _assignee_buttons(
    ctx: Caller, inst: Instance, key: str, users: Iterable[JiraUserCandidate]
) -> list[PostAction]:
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
    key = _first_arg_key(ctx, usage)
    query = parse_assignee_argument(ctx.args[1:])
    if query.kind == "missing":
        raise CommandError(
            f"Please name the assignee: `{usage}`, where USER is `me`, `@mattermost-user` or a Jira name."
        )
    inst = await ctx.choose_instance(ctx.instance_arg)
    session = await ctx.jira(inst)
    if query.kind != "search":
        user = await _known_assignee(ctx, inst, query)
    else:
        result = await _search_assignee(session, key, query.text)
        if result.kind == "none":
            raise CommandError(neutral_block(result.message))
        if result.chosen is None:
            buttons = _assignee_buttons(ctx, inst, key, result.candidates)
            return CommandResponse.ephemeral(
                "", attachments=[Attachment(text=neutral_block(result.message), actions=buttons)]
            )
        user = result.chosen
    await session.assign(key, user)
    return CommandResponse.ephemeral(_assigned_text(user, key, session.browse_url(key)))


@action(ACTION_ASSIGN)
async def assign_clicked(ctx: ActionContext) -> ActionResponse:
    inst, key = _context_key(ctx)
    user = JiraUserCandidate(
        display_name=str(ctx.data.get("display_name", "")),
        account_id=str(ctx.data.get("account_id", "")),
        name=str(ctx.data.get("name", "")),
    )
    if not user.identifier:
        return ActionResponse.ephemeral("This button names no Jira user; run the command again.")
    session = await ctx.jira(inst)
    await session.assign(key, user)
    return await _after_change(ctx, inst, session, key, _assigned_text(user, key, session.browse_url(key)))


@action(ACTION_ASSIGN_ME)
async def assign_me_clicked(ctx: ActionContext) -> ActionResponse:
    inst, key = _context_key(ctx)
    session = await ctx.jira(inst)
    me = await _known_assignee(ctx, inst, AssigneeQuery("me"))
    await session.assign(key, me)
    return await _after_change(ctx, inst, session, key, _assigned_text(me, key, session.browse_url(key)))


@COMMANDS.command(
    "issue unassign",
    help="Unassign a Jira issue",
    usage="[issue-key]",
    aliases=("unassign",),
    args=(Arg("Jira issue key", "[issue-key]"),),
    instance_option=True,
)
async def unassign(ctx: CommandContext) -> CommandResponse:
    key = _first_arg_key(ctx, "/jira unassign KEY")
    inst = await ctx.choose_instance(ctx.instance_arg)
    session = await ctx.jira(inst)
    await session.assign(key, None)
    return CommandResponse.ephemeral(f"Unassigned Jira issue {issue_link(key, session.browse_url(key))}")


# -- create: what the form shows ---------------------------------------------------------------

# Fields the form handles itself (or Jira fills in), whatever their metadata says.
_SYSTEM_FIELDS = frozenset(
    {"project", "issuetype", "summary", "description", "priority", "labels", "assignee", "reporter"}
)
_TEXTAREA_CUSTOM = "com.atlassian.jira.plugin.system.customfieldtypes:textarea"


@dataclass
class CreatePlan:
    """The create form of one issue type: its elements, how each submitted value becomes a
    Jira field value (`kinds`: element name = Jira field id -> kind), and the required fields
    the form cannot show."""

    elements: list[DialogElement] = field(default_factory=list)
    kinds: dict[str, str] = field(default_factory=dict)
    required: list[str] = field(default_factory=list)
    missing: list[FieldMeta] = field(default_factory=list)
    reporter_self: bool = False

    def add(self, element: DialogElement, kind: str) -> None:
        self.elements.append(element)
        self.kinds[element.name] = kind
        if not element.optional:
            self.required.append(element.name)


def _options(meta: FieldMeta) -> list[DialogOption]:
    return [DialogOption(text=v.name or v.id, value=v.id) for v in meta.allowed_values or () if v.id]


def _custom_element(meta: FieldMeta) -> tuple[DialogElement, str] | None:
    """A form element for a field the form does not know by name, or None when a dialog
    cannot ask for it (users, cascading selects, sprints, date-times...)."""
    common: dict[str, Any] = {"display_name": meta.name, "name": meta.id, "optional": not meta.required}
    if meta.allowed_values is not None:
        options = _options(meta)
        if not options or meta.schema_type == "option-with-child":
            return None
        if meta.schema_type == "array":
            return DialogElement(type="select", options=options, multiselect=True, **common), "multi"
        return DialogElement(type="select", options=options, **common), "select"
    if meta.schema_type == "string":
        if meta.schema_custom == _TEXTAREA_CUSTOM:
            return DialogElement(type="textarea", max_length=TEXTAREA_MAX, **common), "string"
        return DialogElement(type="text", max_length=TEXT_FIELD_MAX, **common), "string"
    if meta.schema_type == "number":
        return DialogElement(type="text", subtype="number", **common), "number"
    if meta.schema_type == "date":
        return DialogElement(type="text", placeholder="YYYY-MM-DD", **common), "date"
    if meta.schema_type == "array" and meta.schema_items == "string":
        return DialogElement(type="text", help_text="Separate values with commas.", **common), "strings"
    return None


def plan_create_form(issue_type: IssueTypeMeta, summary: str = "", description: str = "") -> CreatePlan:
    """The form for `issue_type`: summary and description (pre-filled), priority, labels and
    assignee when its create screen has them, and every other required field without a default."""
    plan = CreatePlan()
    plan.add(
        DialogElement(
            display_name="Summary",
            name="summary",
            type="text",
            default=summary[:SUMMARY_MAX],
            max_length=SUMMARY_MAX,
        ),
        "summary",
    )
    on_screen = {f.id: f for f in issue_type.fields}
    if (meta := on_screen.get("description")) is not None:
        plan.add(
            DialogElement(
                display_name="Description",
                name="description",
                type="textarea",
                default=description,
                optional=not meta.required,
                max_length=TEXTAREA_MAX,
            ),
            "string",
        )
    if (meta := on_screen.get("priority")) is not None and _options(meta):
        plan.add(
            DialogElement(
                display_name="Priority",
                name="priority",
                type="select",
                options=_options(meta),
                optional=not meta.required or meta.has_default_value,
            ),
            "select",
        )
    if (meta := on_screen.get("labels")) is not None:
        plan.add(
            DialogElement(
                display_name="Labels",
                name="labels",
                type="text",
                optional=not meta.required,
                placeholder="frontend, regression",
                help_text="Separate labels with commas; a label has no spaces.",
            ),
            "labels",
        )
    if (meta := on_screen.get("assignee")) is not None:
        plan.add(
            DialogElement(
                display_name="Assignee",
                name="assignee",
                type="text",
                optional=not meta.required,
                placeholder="me",
                help_text="`me`, @mattermost-user, or a Jira name or email. Leave empty for Jira's default.",
            ),
            "assignee",
        )
    reporter = on_screen.get("reporter")
    plan.reporter_self = bool(reporter and reporter.required and not reporter.has_default_value)
    for meta in issue_type.fields:
        if meta.id in _SYSTEM_FIELDS or not meta.required or meta.has_default_value:
            continue
        made = _custom_element(meta)
        if made is None:
            plan.missing.append(meta)
        else:
            plan.add(*made)
    priority = on_screen.get("priority")
    if priority and "priority" not in plan.kinds and priority.required and not priority.has_default_value:
        plan.missing.append(priority)
    return plan


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


# `/jira create` run in a thread carries the thread's first post and the team's name (for the
# permalink) through its buttons and form: to pre-fill the description, and to answer in the thread.
_THREAD_KEYS = ("thread", "team")


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
        # Imported here: the thread module builds on this one.
        from bot.commands.handlers.thread import thread_description

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
        await ctx.deps.mattermost.open_dialog(ctx.trigger_id, ctx.deps.dialog_url, form.to_dict())
    except DeliveryError as e:
        if e.status != 400:
            raise
        # The trigger id had expired (Jira answered slowly): a click brings a fresh one.
        context = {
            "action": ACTION_CREATE_TYPE,
            **_project_context(inst, project, summary, thread),
            "type": issue_type.id,
        }
        button = ctx.deps.actions.button("Open the form", context, user_id=ctx.user_id, style="primary")
        return _Offer(
            False, "Jira took a while to answer. Open the form now:", [Attachment(actions=[button])]
        )
    return _Offer(True)


@COMMANDS.command(
    "issue create",
    help="Create a new Jira issue; the text becomes its summary",
    usage="[--project KEY] [--type NAME] [summary]",
    aliases=("create",),
    instance_option=True,
)
async def create(ctx: CommandContext) -> CommandResponse:
    wanted_project, wanted_type, summary = _create_options(ctx.args)
    thread = {"thread": ctx.root_id, "team": ctx.team_domain} if ctx.root_id else {}
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


def _split(value: Any, pattern: str) -> list[str]:
    if isinstance(value, list):
        return [str(v).strip() for v in value if str(v).strip()]
    return [v for v in re.split(pattern, str(value or "")) if v.strip()]


def _field_value(kind: str, raw: Any) -> tuple[Any, str]:
    """The Jira value of one submitted element, or an error to show under it. None: empty."""
    if kind == "multi":
        values = _split(raw, r"\s*,\s*")
        return ([{"id": v} for v in values] or None), ""
    text = "" if raw is None else str(raw).strip()
    if not text:
        return None, ""
    if kind == "select":
        return {"id": text}, ""
    if kind == "labels":
        return _split(text, r"[,\s]+"), ""
    if kind == "strings":
        return _split(text, r"\s*,\s*"), ""
    if kind == "number":
        try:
            number = float(text)
        except ValueError:
            return None, "Enter a number."
        return (int(number) if number.is_integer() else number), ""
    if kind == "date":
        try:
            if not _DATE.match(text):
                raise ValueError(text)
            date.fromisoformat(text)
        except ValueError:
            return None, "Enter a date as YYYY-MM-DD."
        return text, ""
    if kind == "summary":
        return " ".join(text.split()), ""
    return text, ""


def _field_errors(detail: str, names: Iterable[str]) -> tuple[dict[str, str], str]:
    """Jira's "field: message" errors (joined by "; " in the error's detail) for the form's
    elements, and what is left for a general error."""
    known = set(names)
    errors: dict[str, str] = {}
    rest: list[str] = []
    for part in detail.split("; "):
        name, sep, message = part.partition(": ")
        if sep and name in known:
            errors[name] = message
        elif part.strip():
            rest.append(part)
    return errors, "; ".join(rest)


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
        value, error = _field_value(kind, raw)
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
                fields["assignee"] = (await _known_assignee(ctx, inst, query)).assignee_field()
            except CommandError as e:
                return DialogResponse(errors={"assignee": e.message})
        else:
            # Jira searches assignable users of an issue: the search waits for the issue.
            search_later = query.text
    if state.get("reporter_self"):
        fields["reporter"] = (await _known_assignee(ctx, inst, AssigneeQuery("me"))).assignee_field()

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
        field_errors, rest = _field_errors(e.detail, kinds)
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
        ctx, f"{await _who(ctx)} created a Jira issue {link}", root_id=str(state.get("thread") or "")
    )
    if search_later:
        await _assign_created(ctx, inst, session, created.key, created.browse_url, search_later)
    return None


async def _announce(ctx: DialogContext, message: str, *, root_id: str = "") -> None:
    """Tell the channel (in the thread `root_id` when given); the issue exists already, so a
    failure here must not fail the form."""
    if ctx.channel_id:
        try:
            await ctx.deps.mattermost.create_post(
                OutgoingPost(channel_id=ctx.channel_id, message=message, root_id=root_id)
            )
            return
        except DeliveryError as e:
            log.warning("could not announce a created issue in channel %s: %s", ctx.channel_id, e)
    await ctx.deps.notify_user(ctx.user_id, message)


async def _assign_created(
    ctx: DialogContext, inst: Instance, session: JiraSession, key: str, url: str, text: str
) -> None:
    """Assign the new issue to the user named in the form; anything short of one clear match
    is told to its creator in a direct message, with buttons when there are candidates."""
    created = f"{issue_link(key, url)} was created"
    try:
        result = await _search_assignee(session, key, text)
        if result.chosen is not None:
            await session.assign(key, result.chosen)
            return
        if result.kind == "none":
            await ctx.deps.notify_user(
                ctx.user_id, f"{created}, but not assigned: {neutral_block(result.message)}"
            )
            return
        buttons = _assignee_buttons(ctx, inst, key, result.candidates)
        attachment = Attachment(text=f"{created}. {neutral_block(result.message)}", actions=buttons)
        await ctx.deps.mattermost.send_direct_message(ctx.user_id, "", attachments_props([attachment]))
    except JiraError as e:
        await ctx.deps.notify_user(ctx.user_id, f"{created}, but could not be assigned: {e.user_message()}")
    except DeliveryError as e:
        log.warning("could not tell %s how to assign %s: %s", ctx.user_id, key, e)


__all__ = [
    "ACTION_ASSIGN",
    "ACTION_ASSIGN_ME",
    "ACTION_CREATE_PROJECT",
    "ACTION_CREATE_TYPE",
    "ACTION_SHARE",
    "ACTION_TRANSITION",
    "CREATE_DIALOG",
    "CreatePlan",
    "plan_create_form",
]
