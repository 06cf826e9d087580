"""For system admins: instance list|install|uninstall|alias|unalias|default, webhook, stats, setup.

The service checks the system admin role with Mattermost before any of these runs.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote, urlencode

from prometheus_client import Counter

from bot.commands.context import CommandContext, CommandError
from bot.commands.registry import Arg, Choice
from bot.commands.table import COMMANDS
from bot.instances import Instance, InstanceError, InstanceType
from bot.jira.instances import encode_instance_id
from bot.mattermost.models import DeliveryError
from bot.mattermost.payloads import CommandResponse

FIREHOSE_PATH = "/plugins/jira/api/v2/webhook"
LEGACY_PATH = "/plugins/jira/webhook"
JIRA_EVENTS_TO_TICK = "*Issue: created, updated, deleted* and *Comment: created, updated, deleted*"
# The legacy URL names the team by its URL name, which the command request does not carry.
TEAM_PLACEHOLDER = "TEAM"
_ALIAS = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,31}")
_TYPES = (Choice("cloud", "Jira Cloud"), Choice("server", "Jira Server or Data Center"))

DONE = ":white_check_mark:"
TODO = ":large_orange_diamond:"


def _url_or_alias(inst: Instance) -> str:
    return inst.alias or inst.url


def _check_alias(alias: str) -> str:
    if not _ALIAS.fullmatch(alias) or alias.lower().startswith(("http:", "https:")):
        raise CommandError(
            f"`{alias}` cannot be an alias: use up to 32 letters, digits, dots, dashes or underscores."
        )
    return alias


# -- instances ------------------------------------------------------------------------------------


@COMMANDS.command("instance list", help="List the Jira instances and their connected users", admin=True)
async def instance_list(ctx: CommandContext) -> CommandResponse:
    directory = ctx.deps.instances
    instances = directory.all()
    if not instances:
        return CommandResponse.ephemeral(
            "No Jira instance is installed. Add one with `/jira instance install cloud|server URL [alias]`."
        )
    default = directory.default
    rows = [
        "###### Jira instances",
        "| URL | Type | Alias | Default | From | Connected users |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for inst in instances:
        users = await ctx.deps.accounts.connected_count(inst.url)
        kind = "Cloud" if inst.is_cloud else "Server/Data Center"
        is_default = "yes" if default is not None and default.url == inst.url else ""
        source = "config file" if inst.source == "config" else "installed from chat"
        rows.append(f"| {inst.url} | {kind} | {inst.alias or ''} | {is_default} | {source} | {users} |")
    return CommandResponse.ephemeral("\n".join(rows))


@COMMANDS.command(
    "instance install",
    help="Add a Jira instance (its webhooks are accepted from now on)",
    usage="cloud|server URL [alias]",
    admin=True,
    args=(
        Arg("Jira Cloud or Jira Server/Data Center", "[cloud|server]", choices=_TYPES),
        Arg("The Jira base URL", "https://your-site.atlassian.net"),
    ),
)
async def instance_install(ctx: CommandContext) -> CommandResponse:
    if len(ctx.args) not in (2, 3) or ctx.args[0].lower() not in ("cloud", "server"):
        raise CommandError("Use `/jira instance install cloud|server URL [alias]`.")
    kind: InstanceType = "cloud" if ctx.args[0].lower() == "cloud" else "server"
    alias = _check_alias(ctx.args[2]) if len(ctx.args) == 3 else ""
    try:
        inst = await ctx.deps.instances.install(ctx.args[1], kind, alias)
    except InstanceError as e:
        raise CommandError(str(e)) from None
    name = _url_or_alias(inst)
    if inst.is_cloud:
        accounts = (
            "Users connect their accounts through an OAuth 2.0 app, which is set in the configuration "
            "file (`jira.instances[].oauth`); until then, only webhooks are handled."
        )
    else:
        accounts = f"Users connect their accounts with a personal access token: `/jira connect {name}`."
    return CommandResponse.ephemeral(
        f"{inst.label} is installed. Webhooks from it are accepted now: `/jira webhook {name}` prints "
        f"the URL to enter in Jira. {accounts}"
    )


@COMMANDS.command(
    "instance uninstall",
    help="Remove a Jira instance installed from chat",
    usage="URL|alias",
    admin=True,
    args=(Arg("The Jira URL or alias", "URL|alias"),),
)
async def instance_uninstall(ctx: CommandContext) -> CommandResponse:
    if len(ctx.args) != 1:
        raise CommandError("Use `/jira instance uninstall URL|alias`.")
    try:
        inst = await ctx.deps.instances.uninstall(ctx.args[0])
    except InstanceError as e:
        raise CommandError(str(e)) from None
    left = [s for s in await ctx.deps.db.subscriptions.list_all() if s.instance_id.rstrip("/") == inst.url]
    note = ""
    if left:
        many = len(left) > 1
        note = (
            f" {len(left)} subscription{'s' if many else ''} still name{'' if many else 's'} it and "
            f"stay{'' if many else 's'} idle until it is installed again (`/jira subscribe list all`)."
        )
    return CommandResponse.ephemeral(
        f"{inst.label} is uninstalled: its webhooks are no longer accepted.{note}"
    )


@COMMANDS.command(
    "instance alias",
    help="Give a Jira instance a short name",
    usage="URL ALIAS",
    admin=True,
    args=(Arg("The Jira URL", "URL"), Arg("The alias", "ALIAS")),
)
async def instance_alias(ctx: CommandContext) -> CommandResponse:
    if len(ctx.args) != 2:
        raise CommandError("Use `/jira instance alias URL ALIAS`.")
    alias = _check_alias(ctx.args[1])
    try:
        inst = await ctx.deps.instances.set_alias(ctx.args[0], alias)
    except InstanceError as e:
        raise CommandError(str(e)) from None
    return CommandResponse.ephemeral(f"{inst.url} is now also called `{alias}`.")


@COMMANDS.command(
    "instance unalias",
    help="Remove the short name of a Jira instance",
    usage="ALIAS",
    admin=True,
    args=(Arg("The alias", "ALIAS"),),
)
async def instance_unalias(ctx: CommandContext) -> CommandResponse:
    if len(ctx.args) != 1:
        raise CommandError("Use `/jira instance unalias ALIAS`.")
    try:
        inst = await ctx.deps.instances.remove_alias(ctx.args[0])
    except InstanceError as e:
        raise CommandError(str(e)) from None
    return CommandResponse.ephemeral(f"`{inst.alias}` no longer names {inst.url}.")


@COMMANDS.command(
    "instance default",
    help="Set the default Jira instance",
    usage="URL|alias",
    admin=True,
    args=(Arg("The Jira URL or alias", "URL|alias"),),
)
async def instance_default(ctx: CommandContext) -> CommandResponse:
    if len(ctx.args) != 1:
        raise CommandError("Use `/jira instance default URL|alias`.")
    try:
        inst = await ctx.deps.instances.set_default(ctx.args[0])
    except InstanceError as e:
        raise CommandError(str(e)) from None
    assert inst is not None  # a name was given, so set_default found it or raised
    return CommandResponse.ephemeral(f"{inst.label} is now the default Jira instance.")


# -- webhook URLs ---------------------------------------------------------------------------------


def _webhook_secret(ctx: CommandContext) -> str:
    return ctx.deps.webhook_secret


async def _channel_name(ctx: CommandContext) -> str:
    if ctx.channel_name:
        return ctx.channel_name
    try:
        channel = await ctx.deps.mattermost.get_channel(ctx.channel_id)
    except DeliveryError:
        return "CHANNEL"
    return str(channel.get("name") or "CHANNEL")


@COMMANDS.command(
    "webhook",
    help="Show the webhook URLs to enter in Jira (firehose, per instance, and legacy for this channel)",
    usage="[instance]",
    admin=True,
    instance_option=True,
)
async def webhook(ctx: CommandContext) -> CommandResponse:
    requested = ctx.instance_arg or (ctx.args[0] if ctx.args else None)
    instances = [ctx.instance_named(requested)] if requested else ctx.deps.instances.all()
    base = ctx.deps.public_url
    secret = quote(_webhook_secret(ctx), safe="")
    legacy_query = urlencode(
        {"team": ctx.team_domain or TEAM_PLACEHOLDER, "channel": await _channel_name(ctx)}
    )
    lines = ["###### Jira webhook URLs"]
    if not requested:
        lines += [
            "Firehose (every instance; posts go to the channels with matching subscriptions):",
            f"```\n{base}{FIREHOSE_PATH}?secret={secret}\n```",
        ]
    for inst in instances:
        path = f"/plugins/jira/instance/{encode_instance_id(inst.url)}"
        lines += [
            f"Firehose for {inst.label} only:",
            f"```\n{base}{path}/api/v2/webhook?secret={secret}\n```",
        ]
    legacy_path = LEGACY_PATH
    if requested:
        legacy_path = f"/plugins/jira/instance/{encode_instance_id(instances[0].url)}/webhook"
    legacy = f"{base}{legacy_path}?secret={secret}&{legacy_query}"
    lines += [
        "Legacy, for this channel only (add `&updated_all=1` or other `updated_*` parameters for more "
        "events):",
        f"```\n{legacy}\n```",
        f"In Jira (System → WebHooks), tick {JIRA_EVENTS_TO_TICK}. "
        "Keep these URLs private: they hold the secret.",
    ]
    return CommandResponse.ephemeral("\n".join(lines))


# -- statistics -----------------------------------------------------------------------------------


def _by_label(counter: Counter) -> dict[str, int]:
    """The counter's values by its single label, as counted by this process."""
    values: dict[str, int] = {}
    for metric in counter.collect():
        for sample in metric.samples:
            if sample.name.endswith("_total") and sample.labels:
                values[next(iter(sample.labels.values()))] = int(sample.value)
    return values


def _counts(values: dict[str, int]) -> str:
    return ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in sorted(values.items()) if v) or "none"


@COMMANDS.command("stats", help="Show webhook, post, subscription and user statistics", admin=True)
async def stats(ctx: CommandContext) -> CommandResponse:
    deps = ctx.deps
    webhooks = _by_label(deps.metrics.webhooks)
    posts = _by_label(deps.metrics.posts)
    inbox = await deps.db.inbox.counts()
    deliveries = await deps.db.deliveries.counts()
    backlog = await deps.db.deliveries.backlog()
    subs = await deps.db.subscriptions.list_all()
    users = await deps.accounts.connected_count()
    received = sum(webhooks.values())
    refused = sum(v for k, v in webhooks.items() if k not in ("accepted", "duplicate", "ignored"))
    lines = [
        "###### jira-chatops statistics",
        "Since this process started:",
        f"* Webhooks received: **{received}** (accepted {webhooks.get('accepted', 0)}, "
        f"duplicates {webhooks.get('duplicate', 0)}, ignored {webhooks.get('ignored', 0)}, "
        f"failed or refused {refused})",
        f"* Posts: delivered {posts.get('delivered', 0)}, retried {posts.get('retried', 0)}, "
        f"failed (dead letters) {posts.get('dead', 0)}",
        "In the database (every replica, until purged):",
        f"* Webhooks: {_counts(inbox)}",
        f"* Posts: {_counts(deliveries)}",
        f"* Backlog (webhooks and posts waiting): **{backlog}**",
        f"* Subscriptions: **{len(subs)}** in {len({s.channel_id for s in subs})} channels",
        f"* Connected users: **{users}**",
    ]
    for inst in deps.instances.all():
        lines.append(f"  * {inst.label}: {await deps.accounts.connected_count(inst.url)}")
    return CommandResponse.ephemeral("\n".join(lines))


# -- setup ----------------------------------------------------------------------------------------


def _is_local(url: str) -> bool:
    host = re.sub(r"^https?://", "", url).split("/")[0].split(":")[0].lower()
    return host in ("localhost", "127.0.0.1", "0.0.0.0", "::1", "[::1]")


@COMMANDS.command("setup", help="A checklist of what is configured and what to do next", admin=True)
async def setup(ctx: CommandContext) -> CommandResponse:
    deps = ctx.deps
    instances = deps.instances.all()
    base = deps.public_url
    lines = ["###### Setting up jira-chatops"]

    # 1. Jira instances
    if instances:
        names = ", ".join(f"{i.label} ({'Cloud' if i.is_cloud else 'Server/DC'})" for i in instances)
        lines.append(f"1. {DONE} Jira instances: {names}.")
    else:
        lines.append(
            f"1. {TODO} Install a Jira instance: "
            "`/jira instance install cloud https://your-site.atlassian.net [alias]` "
            "(or `server URL` for Jira Server/Data Center)."
        )

    # 2. The URL Jira calls
    if _is_local(base):
        lines.append(
            f"2. {TODO} The bot's public URL is `{base}`, which Jira cannot reach: set `BOT_PUBLIC_URL` "
            "(Jira Cloud calls HTTPS on port 443 only; see the README on running behind TLS)."
        )
    else:
        lines.append(f"2. {DONE} Public URL: `{base}`.")

    # 3. The webhook in Jira
    secret = quote(_webhook_secret(ctx), safe="")
    received = sum((await deps.db.inbox.counts()).values()) or sum(_by_label(deps.metrics.webhooks).values())
    status = (
        f"{DONE} {received} webhooks received so far." if received else f"{TODO} No webhook received yet."
    )
    lines.append(
        f"3. {status} In Jira, *System → WebHooks → Create a WebHook*: URL "
        f"`{base}{FIREHOSE_PATH}?secret={secret}`, and tick {JIRA_EVENTS_TO_TICK}. "
        "(`/jira webhook` shows the per-instance and legacy URLs.)"
    )

    # 4. The admin's own account
    connections = {c.instance_id for c in await deps.accounts.connections_for(ctx.user_id)}
    missing = [i for i in instances if i.url not in connections]
    # A Cloud instance without an OAuth app has no way to connect yet: advise that, not connect.
    no_auth = [i for i in missing if i.is_cloud and i.oauth is None]
    can = [i for i in missing if i not in no_auth]
    if instances and not missing:
        lines.append(f"4. {DONE} Your Jira account is connected.")
    else:
        todo = ", ".join(f"`/jira connect {_url_or_alias(i)}`" for i in can)
        if can or not no_auth:
            todo = todo or "`/jira connect`"
            lines.append(f"4. {TODO} Connect your Jira account: {todo}. Every user does this once.")
        for inst in no_auth:
            lines.append(
                f"4. {TODO} {inst.label} has no way for users to connect yet: set its OAuth 2.0 app "
                "(`jira.instances[].oauth`: client id and secret from developer.atlassian.com, "
                f"callback `{base}/oauth/jira/callback`)."
            )

    # 5. Subscriptions
    subs: list[Any] = await deps.db.subscriptions.list_all()
    here = sum(1 for s in subs if s.channel_id == ctx.channel_id)
    if subs:
        lines.append(
            f"5. {DONE} Subscriptions: {len(subs)} ({here} in this channel). "
            "Add more with `/jira subscribe add` in the channel that should receive the posts."
        )
    else:
        lines.append(
            f"5. {TODO} Subscribe a channel: run `/jira subscribe add` in the channel that should "
            "receive the posts."
        )
    return CommandResponse.ephemeral("\n".join(lines))
