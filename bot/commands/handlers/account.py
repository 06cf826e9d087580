"""help, me, about, connect, disconnect and settings: the user's own Jira connection."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from bot.accounts.models import NOTIFICATION_KINDS, AccountError
from bot.commands.context import CommandContext, CommandError, DialogContext
from bot.commands.registry import Arg, Choice
from bot.commands.table import COMMANDS, dialog
from bot.instances import Instance
from bot.mattermost.payloads import CommandResponse, Dialog, DialogElement, DialogResponse

TOKEN_DIALOG = "account.token"


def _project_version() -> str:
    try:
        return version("jira-chatops")
    except PackageNotFoundError:
        return "unknown"


async def _instance_from_args(ctx: CommandContext) -> Instance:
    requested = ctx.instance_arg or (ctx.args[0] if ctx.args else None)
    return await ctx.choose_instance(requested)


@COMMANDS.command("help", help="Show this help text")
async def help_command(ctx: CommandContext) -> CommandResponse:
    deps = ctx.deps
    text = COMMANDS.help_text(
        await ctx.is_admin(), deps.settings.commands.extra_help, deps.unconfigured_commands
    )
    return CommandResponse.ephemeral(text)


@COMMANDS.command("me", help="Display information about the current user", aliases=("info",))
async def me(ctx: CommandContext) -> CommandResponse:
    connections = await ctx.deps.accounts.connections_for(ctx.user_id)
    lines = [f"Mattermost user ID: `{ctx.user_id}`"]
    if not connections:
        lines.append("You are not connected to any Jira instance. Run `/jira connect` to connect.")
        return CommandResponse.ephemeral("\n".join(lines))
    default = await ctx.deps.accounts.default_instance(ctx.user_id)
    lines.append("Connected to Jira:")
    for c in connections:
        inst = ctx.deps.instances.find(c.instance_id)
        who = c.identity.display_name or c.identity.name or c.identity.account_id or "unknown"
        ident = c.identity.account_id or c.identity.name or ""
        marker = " (default)" if default == c.instance_id else ""
        label = inst.label if inst else c.instance_id
        lines.append(f"* {label} as **{who}** (`{ident}`, {c.auth_type.value}){marker}")
    return CommandResponse.ephemeral("\n".join(lines))


@COMMANDS.command("about", help="Display build information about the bot")
async def about(ctx: CommandContext) -> CommandResponse:
    instances = ", ".join(i.label for i in ctx.deps.instances.all()) or "none yet"
    return CommandResponse.ephemeral(
        f"**jira-chatops** {_project_version()}\nJira instances: {instances}\n"
        "Source and docs: see the README."
    )


@COMMANDS.command(
    "connect",
    help="Connect your Mattermost account to your Jira account",
    usage="[instance]",
    aliases=("instance connect",),
    instance_option=True,
)
async def connect(ctx: CommandContext) -> CommandResponse:
    inst = await _instance_from_args(ctx)
    accounts = ctx.deps.accounts
    existing = await accounts.connection(ctx.user_id, inst.url)
    if existing is not None:
        return CommandResponse.ephemeral(
            f"You already have a Jira account linked to your Mattermost account from {inst.label}. "
            f"Run `/jira disconnect --instance {inst.alias or inst.url}` first to link another one."
        )
    if accounts.needs_token_dialog(inst.url):
        await ctx.deps.mattermost.open_dialog(ctx.trigger_id, ctx.deps.dialog_url, token_dialog(ctx, inst))
        return CommandResponse.ephemeral(
            f"{inst.label} connects with a personal access token: paste yours in the form that opened."
        )
    try:
        url = await accounts.start_connect(ctx.user_id, inst.url, now=ctx.now())
    except AccountError as e:
        raise CommandError(str(e)) from None
    return CommandResponse.ephemeral(f"[Click here to link your Jira account on {inst.label}]({url})")


def token_dialog(ctx: CommandContext, inst: Instance) -> dict[str, object]:
    state = ctx.deps.signer.dumps(
        {"dialog": TOKEN_DIALOG, "instance": inst.url},
        ttl_seconds=1800,
        now=ctx.now(),
        user_id=ctx.user_id,
        once=True,
    )
    return Dialog(
        callback_id=TOKEN_DIALOG,
        title="Connect to Jira",
        introduction_text=(
            f"Create a personal access token in Jira ({inst.url}: your profile, *Personal Access "
            "Tokens*) and paste it here. It is stored encrypted and used only for your own requests."
        ),
        elements=[
            DialogElement(
                display_name="Personal access token",
                name="token",
                type="text",
                subtype="password",
                max_length=500,
            )
        ],
        submit_label="Connect",
        state=state,
    ).to_dict()


@dialog(TOKEN_DIALOG)
async def token_submitted(ctx: DialogContext) -> DialogResponse | None:
    if ctx.cancelled:
        return None
    token = str(ctx.submission.get("token") or "").strip()
    if not token:
        return DialogResponse(errors={"token": "Paste the token Jira showed you."})
    inst = ctx.instance_named(str(ctx.state.get("instance", "")))
    try:
        conn = await ctx.deps.accounts.connect_with_token(ctx.user_id, inst.url, token, now=ctx.now())
    except AccountError as e:  # a refused token included: the message says what to check
        return DialogResponse(errors={"token": str(e)})
    who = conn.identity.display_name or conn.identity.name or ""
    await ctx.deps.notify_user(ctx.user_id, f"Your Jira account **{who}** on {inst.label} is now connected.")
    return None


@COMMANDS.command(
    "disconnect",
    help="Disconnect your Mattermost account from your Jira account",
    usage="[instance]",
    aliases=("instance disconnect",),
    instance_option=True,
)
async def disconnect(ctx: CommandContext) -> CommandResponse:
    inst = await _instance_from_args(ctx)
    conn = await ctx.deps.accounts.connection(ctx.user_id, inst.url)
    if conn is None or not await ctx.deps.accounts.disconnect(ctx.user_id, inst.url, now=ctx.now()):
        return CommandResponse.ephemeral(f"You are not connected to {inst.label}.")
    who = conn.identity.display_name or conn.identity.name or ""
    return CommandResponse.ephemeral(f"You have successfully disconnected your Jira account (**{who}**).")


_ON_OFF = (Choice("on", "Turn it on"), Choice("off", "Turn it off"))


@COMMANDS.command(
    "settings",
    help="View your notification settings",
    aliases=("settings list", "instance settings"),
    instance_option=True,
)
async def settings_list(ctx: CommandContext) -> CommandResponse:
    inst = await ctx.choose_instance(ctx.instance_arg)
    conn = await ctx.deps.accounts.connection(ctx.user_id, inst.url)
    if conn is None:
        raise CommandError(f"You are not connected to {inst.label}. Run `/jira connect` first.")
    rows = [f"Notification settings on {inst.label}:"]
    for kind in NOTIFICATION_KINDS:
        rows.append(f"* {kind}: **{'on' if conn.notifications.enabled(kind) else 'off'}**")
    rows.append("Change one with `/jira settings notifications assignee|mention|reporter|watching on|off`.")
    return CommandResponse.ephemeral("\n".join(rows))


@COMMANDS.command(
    "settings notifications",
    help="Turn direct-message notifications on or off",
    usage="[assignee|mention|reporter|watching] [on|off]",
    args=(
        Arg(
            "What to be notified of",
            "[assignee|mention|reporter|watching]",
            choices=tuple(Choice(k) for k in NOTIFICATION_KINDS),
        ),
        Arg("on or off", "[on|off]", choices=_ON_OFF),
    ),
    instance_option=True,
)
async def settings_notifications(ctx: CommandContext) -> CommandResponse:
    kinds = ", ".join(NOTIFICATION_KINDS)
    if (
        len(ctx.args) != 2
        or ctx.args[0].lower() not in NOTIFICATION_KINDS
        or ctx.args[1].lower()
        not in (
            "on",
            "off",
        )
    ):
        raise CommandError(f"Use `/jira settings notifications KIND on|off`, where KIND is one of: {kinds}.")
    inst = await ctx.choose_instance(ctx.instance_arg)
    kind, value = ctx.args[0].lower(), ctx.args[1].lower() == "on"
    try:
        await ctx.deps.accounts.set_notification(ctx.user_id, inst.url, kind, value, now=ctx.now())
    except AccountError as e:
        raise CommandError(str(e)) from None
    return CommandResponse.ephemeral(
        f"Settings updated. {kind.capitalize()} notifications **{'on' if value else 'off'}**."
    )
