"""subscribe list, show, add, edit and remove: a channel's Jira subscriptions, managed from chat.

Changing a channel's subscriptions needs the configured Mattermost role, optionally membership of
configured Jira groups, and a connected Jira account, whose credentials check that the projects
are readable. Changes are announced in the channel and reload routing on every replica.
"""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Callable, Mapping
from typing import Any

from bot.commands.context import Caller, CommandContext, CommandError, DialogContext
from bot.commands.permissions import (
    ROLE_CHANNEL_ADMIN,
    ROLE_SYSTEM_ADMIN,
    ROLE_TEAM_ADMIN,
    ROLE_USERS,
    has_admin_role,
)
from bot.commands.subscription_text import (
    CUSTOM_FIELD_EVENT_HINT,
    EVENT_CHOICES,
    SubscriptionTextError,
    check_complete,
    check_jql,
    event_order,
    format_command,
    format_field_filters,
    parse_command,
    parse_events,
    parse_field_filters,
    parse_issue_types,
    parse_jql,
    parse_jql_check,
    parse_name,
    parse_projects,
)
from bot.commands.table import COMMANDS, dialog
from bot.instances import Instance
from bot.jira.client import JiraSession
from bot.jira.errors import JiraError
from bot.jira.events import EVENT_CREATED, IssueEvent, IssueSnapshot, with_issue
from bot.jira.models import Issue
from bot.mattermost.models import DeliveryError
from bot.mattermost.payloads import (
    DIALOG_TEXT_MAX,
    CommandResponse,
    Dialog,
    DialogElement,
    DialogOption,
    DialogResponse,
)
from bot.pipeline.jql_check import JqlChecker, ask_jira, issue_ref
from bot.routing.explain import explain
from bot.routing.jql import JiraNames, JqlError
from bot.routing.matcher import compile_subscription_jql, needs_names
from bot.routing.model import JQL_CHECK_JIRA, JQL_CHECK_LOCAL, Subscription, SubscriptionFilters
from bot.routing.vocabulary import canonical_subscription_name
from bot.store.interfaces import CHANNEL_ANNOUNCEMENT, NewDelivery, SubscriptionRecord, SubscriptionSource

log = logging.getLogger(__name__)

SAVE_DIALOG = "subscribe.save"
DIALOG_TTL_SECONDS = 1800
PROJECTS_SHOWN = 20

_ROLE_REFUSALS = {
    ROLE_CHANNEL_ADMIN: "Only channel admins (and team and system admins) can change this channel's "
    "Jira subscriptions.",
    ROLE_TEAM_ADMIN: "Only team admins (and system admins) can change this channel's Jira subscriptions.",
    ROLE_SYSTEM_ADMIN: "Only Mattermost system admins can change this channel's Jira subscriptions.",
}
NOT_HERE = (
    "Subscriptions cannot be made in direct or group messages: run the command in the public or "
    "private channel that should receive the posts."
)
CHANNEL_UNSEEN = (
    "The bot cannot see this channel. Subscriptions work in public and private channels; in a "
    "private channel, add the bot first. Direct and group messages cannot have subscriptions."
)
TEXT_FORM = (
    '`/jira subscribe add "Bugs in WEB" projects=WEB events=event_created,event_updated_status '
    'issue_types=Bug fields="priority include_any High,Highest"`'
)

COMMANDS.group("subscribe", help="Manage this channel's Jira subscriptions")


# -- permissions ---------------------------------------------------------------------------------


async def _channel(caller: Caller, channel_id: str) -> dict[str, Any]:
    """The channel, if subscriptions may live there (not a direct or group message)."""
    try:
        channel = await caller.deps.mattermost.get_channel(channel_id)
    except DeliveryError as e:
        if e.status in (403, 404):
            raise CommandError(CHANNEL_UNSEEN) from None
        raise
    if channel.get("type") in ("D", "G"):
        raise CommandError(NOT_HERE)
    return channel


async def _has_role(caller: Caller, channel: Mapping[str, Any], role: str) -> bool:
    """Whether Mattermost gives the caller `role` or a higher one (users < channel_admin <
    team_admin < system_admin) in the channel; asked of Mattermost every time."""
    if await caller.is_admin():
        return True
    if role == ROLE_SYSTEM_ADMIN:
        return False
    mm = caller.deps.mattermost
    member = await mm.get_channel_member(str(channel["id"]), caller.user_id)
    if member is None:
        raise CommandError("You are not a member of this channel, so you cannot change its subscriptions.")
    if role == ROLE_USERS:
        return True
    return await has_admin_role(caller, channel, member, role)


async def require_subscription_editor(caller: Caller, channel_id: str, instance: Instance) -> JiraSession:
    """Refuse (CommandError) unless the caller may change the channel's subscriptions for the
    instance; returns the caller's own Jira session, with which projects are then checked."""
    channel = await _channel(caller, channel_id)
    settings = caller.deps.settings.commands
    role = settings.subscription_role
    if not await _has_role(caller, channel, role):
        raise CommandError(_ROLE_REFUSALS[role])
    session = await caller.jira(instance)
    if settings.subscription_jira_groups:
        wanted = {g.strip().casefold() for g in settings.subscription_jira_groups if g.strip()}
        groups = {g.strip().casefold() for g in await session.user_groups()}
        if wanted and wanted.isdisjoint(groups):
            names = ", ".join(f"`{g}`" for g in settings.subscription_jira_groups)
            raise CommandError(
                f"Changing subscriptions needs membership of one of these Jira groups on "
                f"{instance.label}: {names}. Ask a Jira administrator to add you."
            )
    return session


async def check_projects(session: JiraSession, projects: tuple[str, ...] | frozenset[str]) -> None:
    """Every project must be readable with the user's own credentials."""
    visible = sorted({p.key.upper() for p in await session.projects() if p.key})
    missing = sorted(k for k in projects if k.upper() not in visible)
    if missing:
        shown = ", ".join(visible[:PROJECTS_SHOWN]) or "none"
        if len(visible) > PROJECTS_SHOWN:
            shown += f" and {len(visible) - PROJECTS_SHOWN} more"
        raise SubscriptionTextError(
            "projects",
            f"your Jira account cannot read {', '.join(missing)} (or it does not exist). "
            f"Projects you can read: {shown}.",
        )


async def jira_names(caller: Caller, inst: Instance, jql: str | None) -> JiraNames | None:
    """What the bot learnt of the instance from Jira (custom field names, priority order), read
    again when the JQL names something it does not know."""
    names_cache = caller.deps.subscriptions.names
    if names_cache is None:
        return None
    names = names_cache.get(inst.url)
    if jql and needs_names(jql, names):
        names = await names_cache.learn(inst.url, force=True)
    return names


async def check_subscription_jql(caller: Caller, inst: Instance, filters: SubscriptionFilters) -> None:
    """The JQL can be evaluated on the instance (raises SubscriptionTextError naming the clause)."""
    if not filters.jql and filters.jql_check == JQL_CHECK_LOCAL:
        return
    names = await jira_names(caller, inst, filters.jql)
    check_jql(filters, names=names, service_account=inst.service_account is not None)


# -- lookups and storage -------------------------------------------------------------------------


def _md(text: str) -> str:
    """Text shown in bold in Markdown, with the characters that would end the bold escaped."""
    return re.sub(r"([*_~`\\])", r"\\\1", text)


async def _channel_records(caller: Caller, channel_id: str) -> list[SubscriptionRecord]:
    records = await caller.deps.db.subscriptions.list_records()
    mine = [r for r in records if r.subscription.channel_id == channel_id]
    return sorted(mine, key=lambda r: r.subscription.name.casefold())


def _find(records: list[SubscriptionRecord], name: str) -> SubscriptionRecord | None:
    wanted = canonical_subscription_name(name).casefold()
    return next((r for r in records if r.subscription.name.casefold() == wanted), None)


async def _named(caller: Caller, channel_id: str, name: str, *, editable: bool) -> SubscriptionRecord:
    if not name.strip():
        raise CommandError('Name the subscription, e.g. `/jira subscribe show "Bugs in WEB"`.')
    records = await _channel_records(caller, channel_id)
    found = _find(records, name)
    if found is None:
        known = ", ".join(f"**{_md(r.subscription.name)}**" for r in records) or "none"
        raise CommandError(f"This channel has no subscription named **{_md(name)}** (it has: {known}).")
    if editable and found.source == SubscriptionSource.CONFIG.value:
        raise CommandError(
            f"**{_md(found.subscription.name)}** is declared in the bot's configuration file and is "
            "recreated at every start; change it there."
        )
    return found


def _name_taken(records: list[SubscriptionRecord], name: str, except_id: str = "") -> bool:
    found = _find(records, name)
    return found is not None and found.subscription.id != except_id


async def _store(caller: Caller, sub: Subscription) -> None:
    await caller.deps.db.subscriptions.upsert(sub, now=caller.now())
    await caller.deps.subscriptions.changed()


def _instance_of(caller: Caller, sub: Subscription) -> Instance:
    inst = caller.deps.instances.find(sub.instance_id)
    if inst is None:
        raise CommandError(
            f"**{_md(sub.name)}** is for {sub.instance_id}, which is no longer installed; "
            f"remove it with `/jira subscribe remove {sub.name}`."
        )
    return inst


# -- text -----------------------------------------------------------------------------------------


def _summary(sub: Subscription, caller: Caller, source: str) -> str:
    f = sub.filters
    parts = [f"projects {', '.join(sorted(f.projects)) or 'none'}"]
    parts.append(f"events {', '.join(event_order(f.events)) or 'none'}")
    if f.issue_types:
        parts.append(f"issue types {', '.join(sorted(f.issue_types))}")
    if f.fields:
        parts.append(f"{len(f.fields)} field filter{'s' if len(f.fields) > 1 else ''}")
    if f.jql:
        checked = " (checked by Jira where the bot cannot)" if f.jql_check == JQL_CHECK_JIRA else ""
        parts.append(f"JQL `{f.jql}`{checked}")
    if len(caller.deps.instances.all()) > 1:
        inst = caller.deps.instances.find(sub.instance_id)
        parts.append(f"on {inst.alias or inst.url if inst else sub.instance_id}")
    if source == SubscriptionSource.CONFIG.value:
        parts.append("from the configuration file")
    return f"* **{_md(sub.name)}**: " + "; ".join(parts)


async def _details(sub: Subscription, caller: Caller) -> str:
    f = sub.filters
    inst = caller.deps.instances.find(sub.instance_id)
    lines = [
        f"#### Subscription **{_md(sub.name)}**",
        f"* Jira: {inst.label if inst else sub.instance_id}",
        f"* Projects: {', '.join(sorted(f.projects)) or 'none'}",
        f"* Events: {', '.join(event_order(f.events)) or 'none'}",
        f"* Issue types: {', '.join(sorted(f.issue_types)) or 'all'}",
    ]
    if f.fields:
        lines.append("* Field filters:")
        lines += [f"  * `{line}`" for line in format_field_filters(f.fields, "\n").splitlines()]
    if f.jql:
        lines.append(f"* JQL: `{f.jql}`")
        if f.jql_check == JQL_CHECK_JIRA:
            lines.append("* JQL clauses the bot cannot answer: checked by Jira (service account)")
    if sub.created_by and sub.created_by != "config":
        lines.append(f"* Added by {await _user_label(caller, sub.created_by)}")
    lines += ["", "As one line:", "```", f"/jira subscribe edit {format_command(sub)}", "```"]
    return "\n".join(lines)


# -- commands -------------------------------------------------------------------------------------


@COMMANDS.command("subscribe", help="List this channel's Jira subscriptions", hidden=True)
async def subscribe_bare(ctx: CommandContext) -> CommandResponse:
    if ctx.args:
        raise CommandError(
            "Use `/jira subscribe list`, `show NAME`, `add`, `edit NAME` or `remove NAME`. "
            f"One-line form: {TEXT_FORM}"
        )
    return await subscribe_list(ctx)


@COMMANDS.command(
    "subscribe list",
    help="List this channel's subscriptions (`all`: every channel's, for system admins)",
    usage="[all]",
)
async def subscribe_list(ctx: CommandContext) -> CommandResponse:
    if ctx.args and ctx.args[0].lower() == "all":
        return await _list_all(ctx)
    if ctx.args:
        raise CommandError("Use `/jira subscribe list` or, for system admins, `/jira subscribe list all`.")
    records = await _channel_records(ctx, ctx.channel_id)
    if not records:
        text = (
            "This channel has no Jira subscriptions. Add one with `/jira subscribe add`, "
            f"or in one line: {TEXT_FORM}."
        )
    else:
        lines = ["###### Jira subscriptions of this channel"]
        lines += [_summary(r.subscription, ctx, r.source) for r in records]
        lines.append("Details: `/jira subscribe show NAME`.")
        text = "\n".join(lines)
    if await ctx.is_admin():
        others = await ctx.deps.db.subscriptions.count() - len(records)
        if others > 0:
            text += f"\n{others} more in other channels: `/jira subscribe list all`."
    return CommandResponse.ephemeral(text)


async def _list_all(ctx: CommandContext) -> CommandResponse:
    await ctx.require_admin()
    records = await ctx.deps.db.subscriptions.list_records()
    if not records:
        return CommandResponse.ephemeral("No channel has Jira subscriptions yet.")
    by_channel: dict[str, list[SubscriptionRecord]] = {}
    for r in records:
        by_channel.setdefault(r.subscription.channel_id, []).append(r)
    lines = [f"###### Jira subscriptions of all channels ({len(records)})"]
    for channel_id, group in by_channel.items():
        lines.append(f"**{await _channel_label(ctx, channel_id)}**")
        group.sort(key=lambda r: r.subscription.name.casefold())
        lines += [_summary(r.subscription, ctx, r.source) for r in group]
    return CommandResponse.ephemeral("\n".join(lines))


async def _user_label(caller: Caller, user_id: str) -> str:
    try:
        user = await caller.deps.mattermost.get_user(user_id)
    except DeliveryError:
        return f"user `{user_id}`"
    return f"@{user.get('username') or user_id}"


async def _channel_label(caller: Caller, channel_id: str) -> str:
    try:
        channel = await caller.deps.mattermost.get_channel(channel_id)
    except DeliveryError:
        return f"channel {channel_id}"
    return f"~{channel.get('name') or channel_id}"


@COMMANDS.command("subscribe show", help="Show one of this channel's subscriptions", usage="NAME")
async def subscribe_show(ctx: CommandContext) -> CommandResponse:
    found = await _named(ctx, ctx.channel_id, " ".join(ctx.args), editable=False)
    return CommandResponse.ephemeral(await _details(found.subscription, ctx))


@COMMANDS.command(
    "subscribe test",
    help="Whether an issue would reach one of this channel's subscriptions, filter by filter",
    usage="NAME ISSUE-KEY",
)
async def subscribe_test(ctx: CommandContext) -> CommandResponse:
    if len(ctx.args) < 2:
        raise CommandError("Name the subscription and an issue: `/jira subscribe test NAME WEB-42`.")
    *name_words, key = ctx.args
    found = await _named(ctx, ctx.channel_id, " ".join(name_words), editable=False)
    sub = found.subscription
    session = await ctx.jira(_instance_of(ctx, sub))
    inst = _instance_of(ctx, sub)
    data = await session.issue_json(key.upper(), "*all")
    base = IssueEvent("jira:issue_updated", "", frozenset(), IssueSnapshot(id="", key="", self_url=""))
    event = with_issue(base, Issue.model_validate(data))
    names = await jira_names(ctx, inst, sub.filters.jql)
    jira = await _jira_answer(ctx, inst, sub, event, names)
    result = explain(sub, event, ctx.now(), names=names, jira=jira)
    verdict = "would reach" if result.matched else "would not reach"
    lines = [f"**{_md(event.issue.key or key)}** {verdict} **{_md(sub.name)}**:", ""]
    lines += [f"* {line}" for line in result.lines]
    kinds = ", ".join(result.kinds) if result.kinds else "none"
    lines += ["", f"Events that would post: {kinds}."]
    return CommandResponse.ephemeral("\n".join(lines))


async def _jira_answer(
    caller: Caller, inst: Instance, sub: Subscription, event: IssueEvent, names: JiraNames | None
) -> bool | None:
    """Jira's answer for the subscription's JQL when it has clauses Jira checks, asked as the
    bot asks it for events (the service account); None when it has none or Jira cannot answer now."""
    f = sub.filters
    if f.jql_check != JQL_CHECK_JIRA:
        return None
    try:
        compiled = compile_subscription_jql(f.jql, jira_check=True, names=names)
    except JqlError:
        return None
    if compiled is None or not compiled.remote_clauses:
        return None
    checker = JqlChecker(gateway=caller.deps.jira, instances=caller.deps.instances, clock=caller.now)
    service = checker.session(inst.url)
    if service is None:
        return None
    try:
        return await ask_jira(service, compiled.question, issue_ref(event))
    except JiraError as e:
        log.info("subscribe test: Jira did not answer the JQL check (%s)", e.kind)
        return None


@COMMANDS.command(
    "subscribe add",
    help=f"Subscribe this channel to Jira events: opens a dialog, or in one line: {TEXT_FORM}",
    usage='[NAME projects=KEYS events=EVENTS [issue_types=TYPES] [fields="KEY INCLUSION VALUES; …"] '
    "[jql='JQL' [jql_check=jira]]]",
    instance_option=True,
)
async def subscribe_add(ctx: CommandContext) -> CommandResponse:
    try:
        draft = parse_command(ctx.args) if ctx.args else None
    except SubscriptionTextError as e:
        raise CommandError(e.message) from None
    requested = ctx.instance_arg
    if draft is not None and draft.instance:
        if requested and requested.strip() != draft.instance:
            raise CommandError(f"`instance`: `{draft.instance}` and `--instance {requested}` disagree.")
        requested = draft.instance
    inst = await ctx.choose_instance(requested)
    session = await require_subscription_editor(ctx, ctx.channel_id, inst)
    if draft is None:
        await ctx.deps.mattermost.open_dialog(
            ctx.trigger_id, ctx.deps.dialog_url, subscription_dialog(ctx, inst, None)
        )
        return CommandResponse.ephemeral("")
    name = draft.rename or draft.name
    try:
        name = parse_name(name)
        filters = draft.apply()
        check_complete(filters)
        await check_subscription_jql(ctx, inst, filters)
        await check_projects(session, filters.projects)
    except SubscriptionTextError as e:
        raise CommandError(e.message) from None
    records = await _channel_records(ctx, ctx.channel_id)
    if _name_taken(records, name):
        raise CommandError(
            f"This channel already has a subscription named **{_md(name)}**: "
            "choose another name, or change it with `/jira subscribe edit`."
        )
    sub = Subscription(
        id=secrets.token_hex(13),
        name=name,
        channel_id=ctx.channel_id,
        instance_id=inst.url,
        filters=filters,
        created_by=ctx.user_id,
    )
    await _store(ctx, sub)
    return CommandResponse.in_channel(
        f"@{ctx.user_name} added the subscription **{_md(name)}** to this channel."
    )


@COMMANDS.command(
    "subscribe edit",
    help="Change a subscription: opens the dialog, or give the options to change in one line",
    usage="NAME [name=NEW] [projects=…] [events=…] [issue_types=…] [fields=…] [jql=…] [jql_check=…]",
)
async def subscribe_edit(ctx: CommandContext) -> CommandResponse:
    try:
        draft = parse_command(ctx.args)
    except SubscriptionTextError as e:
        raise CommandError(e.message) from None
    found = await _named(ctx, ctx.channel_id, draft.name, editable=True)
    old = found.subscription
    if draft.instance is not None:
        raise CommandError(
            "`instance`: a subscription stays on its Jira instance; remove it and add it again "
            "with `instance=` to move it."
        )
    inst = _instance_of(ctx, old)
    session = await require_subscription_editor(ctx, ctx.channel_id, inst)
    if not draft.has_options:
        await ctx.deps.mattermost.open_dialog(
            ctx.trigger_id, ctx.deps.dialog_url, subscription_dialog(ctx, inst, old)
        )
        return CommandResponse.ephemeral("")
    try:
        filters = draft.apply(old.filters)
        check_complete(filters)
        await check_subscription_jql(ctx, inst, filters)
        if draft.projects is not None:
            await check_projects(session, filters.projects)
    except SubscriptionTextError as e:
        raise CommandError(e.message) from None
    name = draft.rename or old.name
    if _name_taken(await _channel_records(ctx, ctx.channel_id), name, except_id=old.id):
        raise CommandError(f"This channel already has a subscription named **{_md(name)}**.")
    await _store(ctx, old.model_copy(update={"name": name, "filters": filters}))
    return CommandResponse.in_channel(_changed_text(ctx.user_name, old.name, name))


def _changed_text(user_name: str, old_name: str, new_name: str) -> str:
    if old_name != new_name:
        return (
            f"@{user_name} changed the subscription **{_md(old_name)}** of this channel "
            f"(now named **{_md(new_name)}**)."
        )
    return f"@{user_name} changed the subscription **{_md(new_name)}** of this channel."


@COMMANDS.command("subscribe remove", help="Remove one of this channel's subscriptions", usage="NAME")
async def subscribe_remove(ctx: CommandContext) -> CommandResponse:
    found = await _named(ctx, ctx.channel_id, " ".join(ctx.args), editable=True)
    sub = found.subscription
    inst = ctx.deps.instances.find(sub.instance_id)
    if inst is not None:
        await require_subscription_editor(ctx, ctx.channel_id, inst)
    else:
        # The instance was uninstalled: no Jira account can be asked, so only an admin may clean up.
        await ctx.require_admin()
    await ctx.deps.db.subscriptions.delete(sub.id)
    await ctx.deps.subscriptions.changed()
    return CommandResponse.in_channel(
        f"@{ctx.user_name} removed the subscription **{_md(sub.name)}** from this channel."
    )


# -- the dialog -----------------------------------------------------------------------------------


def _text_element(name: str, label: str, default: str, **kw: Any) -> DialogElement:
    # A text field shows at most 150 bytes; a longer value would be cut silently, so it gets a textarea.
    kind = "text" if len(default.encode()) <= DIALOG_TEXT_MAX else "textarea"
    return DialogElement(display_name=label, name=name, type=kind, default=default, **kw)


def subscription_dialog(caller: Caller, inst: Instance, sub: Subscription | None) -> dict[str, object]:
    """The add (sub None) or edit dialog; its signed state names the channel, instance and
    subscription, so a submission cannot be redirected elsewhere."""
    state = caller.deps.signer.dumps(
        {
            "dialog": SAVE_DIALOG,
            "channel": caller.channel_id,
            "instance": inst.url,
            "id": sub.id if sub else "",
            "by": caller.user_name,
        },
        ttl_seconds=DIALOG_TTL_SECONDS,
        now=caller.now(),
        user_id=caller.user_id,
        once=True,
    )
    f = sub.filters if sub else SubscriptionFilters(events=frozenset({EVENT_CREATED}))
    intro = (
        f"Jira events from {inst.label} to post in this channel.\n\n"
        f"**Events**: {', '.join(f'`{e}`' for e in EVENT_CHOICES)}; `{CUSTOM_FIELD_EVENT_HINT}` "
        "for a custom field. `event_updated_any` is every update and comment.\n\n"
        "**Field filters**, one per line: `field inclusion values`, values comma-separated, e.g. "
        "`priority include_any High,Highest` or `fixVersions empty`. Inclusions: `include_any`, "
        "`include_all`, `exclude_any`, `empty`, `include_or_empty`."
    )
    return Dialog(
        callback_id=SAVE_DIALOG,
        title="Edit subscription" if sub else "Add subscription",
        introduction_text=intro,
        elements=[
            _text_element("name", "Name", sub.name if sub else "", placeholder="Bugs in WEB"),
            _text_element(
                "projects",
                "Projects",
                ", ".join(sorted(f.projects)),
                placeholder="WEB, API",
                help_text="Jira project keys, comma-separated (optional with JQL).",
                optional=True,
            ),
            _text_element(
                "issue_types",
                "Issue types",
                ", ".join(sorted(f.issue_types)),
                placeholder="Bug, Story",
                help_text="Names or ids, comma-separated. Empty: every type.",
                optional=True,
            ),
            DialogElement(
                display_name="Events",
                name="events",
                type="textarea",
                default=", ".join(event_order(f.events)),
                help_text="Event names (listed above), comma-separated.",
            ),
            DialogElement(
                display_name="Field filters",
                name="fields",
                type="textarea",
                default=format_field_filters(f.fields, "\n"),
                placeholder="priority include_any High,Highest",
                help_text="Optional. One per line: field inclusion values.",
                optional=True,
            ),
            DialogElement(
                display_name="JQL",
                name="jql",
                type="textarea",
                default=f.jql or "",
                placeholder="labels = customer AND priority in (High, Highest)",
                help_text="Optional. Evaluated by the bot on each event, ANDed with the filters "
                "above; with it, Projects may be left empty.",
                optional=True,
            ),
            DialogElement(
                display_name="JQL the bot cannot answer",
                name="jql_check",
                type="select",
                default=f.jql_check,
                help_text="membersOf(), watcher, WAS, CHANGED, openSprints() ...: refused, or checked by "
                "Jira for each event with the instance's service account.",
                options=[
                    DialogOption(text="Refuse it", value=JQL_CHECK_LOCAL),
                    DialogOption(text="Let Jira check it", value=JQL_CHECK_JIRA),
                ],
                optional=True,
            ),
        ],
        submit_label="Save",
        state=state,
    ).to_dict()


def _parse_dialog(submission: Mapping[str, Any]) -> tuple[str, SubscriptionFilters, dict[str, str]]:
    """Name and filters from the dialog fields, with an error per field that is wrong."""
    errors: dict[str, str] = {}

    def field(name: str) -> str:
        return str(submission.get(name) or "")

    def read(name: str, parse: Callable[[str, str], Any], default: Any) -> Any:
        try:
            return parse(field(name), name)
        except SubscriptionTextError as e:
            errors[name] = e.problem
            return default

    name = read("name", parse_name, "")
    filters = SubscriptionFilters(
        projects=read("projects", parse_projects, ()),
        issue_types=read("issue_types", parse_issue_types, ()),
        events=read("events", parse_events, ()),
        fields=read("fields", parse_field_filters, ()),
        jql=read("jql", parse_jql, None),
        jql_check=read("jql_check", parse_jql_check, JQL_CHECK_LOCAL),
    )
    if not errors:
        try:
            check_complete(filters)
        except SubscriptionTextError as e:
            errors[e.field] = e.problem
    return name, filters, errors


@dialog(SAVE_DIALOG)
async def subscription_submitted(ctx: DialogContext) -> DialogResponse | None:
    if ctx.cancelled:
        return None
    channel_id = str(ctx.state.get("channel", ""))
    sub_id = str(ctx.state.get("id", ""))
    inst = ctx.instance_named(str(ctx.state.get("instance", "")))
    # Checked again: the role or the Jira account may have changed since the dialog opened.
    session = await require_subscription_editor(ctx, channel_id, inst)
    name, filters, errors = _parse_dialog(ctx.submission)
    if errors:
        return DialogResponse(errors=errors)
    try:
        await check_subscription_jql(ctx, inst, filters)
        await check_projects(session, filters.projects)
    except SubscriptionTextError as e:
        return DialogResponse(errors={e.field: e.problem})
    records = await _channel_records(ctx, channel_id)
    if _name_taken(records, name, except_id=sub_id):
        return DialogResponse(errors={"name": "This channel already has a subscription with this name."})
    user_name = str(ctx.state.get("by", "")) or ctx.user_id
    if sub_id:
        old = next((r for r in records if r.subscription.id == sub_id), None)
        if old is None:
            return DialogResponse(error="This subscription was removed meanwhile; add it again.")
        await _store(ctx, old.subscription.model_copy(update={"name": name, "filters": filters}))
        await _announce(ctx, channel_id, _changed_text(user_name, old.subscription.name, name))
        return None
    sub = Subscription(
        id=secrets.token_hex(13),
        name=name,
        channel_id=channel_id,
        instance_id=inst.url,
        filters=filters,
        created_by=ctx.user_id,
    )
    await _store(ctx, sub)
    await _announce(ctx, channel_id, f"@{user_name} added the subscription **{_md(name)}** to this channel.")
    return None


async def _announce(caller: Caller, channel_id: str, message: str) -> None:
    """Tell the channel, through the durable delivery queue (kind CHANNEL_ANNOUNCEMENT: retried
    with backoff, after a restart too, and dead-lettered); the change is saved already, so a
    failure to queue only loses the notice."""
    announcement = NewDelivery(
        channel_id=channel_id,
        order_key=f"announcements:{channel_id}",  # a channel's notices keep their order
        kind=CHANNEL_ANNOUNCEMENT,
        payload={"message": message},
    )
    try:
        await caller.deps.db.deliveries.enqueue([announcement], now=caller.deps.clock())
    except Exception:
        log.exception("could not queue the announcement of a subscription change in %s", channel_id)
