"""change list, show, recheck, cancel and test: the change gate, seen and steered from chat.

Gates are named by their id or an unambiguous prefix of it (as shown by `/jira change list`).
Cancelling needs the configured role (`change_gate.cancel_role`) in the gate channel; `test` is for
system admins and checks that a connection's service account reaches its service desk and request
type, as Octopus Deploy's TEST button does.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from bot.commands.context import Caller, CommandContext, CommandError
from bot.commands.permissions import has_admin_role
from bot.commands.registry import Arg
from bot.commands.table import COMMANDS
from bot.gate.jsm import JsmClient
from bot.gate.service import GateError, GateService
from bot.gate_rules.model import ChangeRequest, Decision, Gate, GateStatus, GateTarget
from bot.gate_rules.settings import ChangeGateSettings
from bot.mattermost.models import DeliveryError, is_valid_id
from bot.mattermost.payloads import CommandResponse
from bot.names import unknown_instance

log = logging.getLogger(__name__)

NOT_CONFIGURED = "The change gate is not configured on this bot (`change_gate` in the configuration file)."
LIST_LIMIT = 20
_ICONS = {
    Decision.PROCEED: ":white_check_mark:",
    Decision.WAIT: ":hourglass_flowing_sand:",
    Decision.FAIL: ":x:",
}
_ROLE_RANK = {"users": 0, "channel_admin": 1, "team_admin": 2, "system_admin": 3}
_ROLE_REFUSALS = {
    "channel_admin": "Only admins of the gate channel (and team and system admins) can cancel a gate.",
    "team_admin": "Only team admins (and system admins) can cancel a gate.",
    "system_admin": "Only Mattermost system admins can cancel a gate.",
}

COMMANDS.group("change", help="See and steer the change gate's deployments")


def _service(caller: Caller) -> GateService:
    # Deps.gate is None when the configuration has no change_gate section.
    service: GateService | None = getattr(caller.deps, "gate", None)
    if service is None:
        raise CommandError(NOT_CONFIGURED)
    return service


async def _find(service: GateService, word: str) -> Gate:
    matches = await service.store.find_by_prefix(word, limit=2)
    exact = [g for g in matches if g.id == word.strip().lower()]
    if exact:
        return exact[0]
    if not matches:
        raise CommandError(f"There is no gate `{word}`. `/jira change list` shows the gates.")
    if len(matches) > 1:
        raise CommandError(f"Several gates start with `{word}`: type more of the id.")
    return matches[0]


def _one_id(ctx: CommandContext, usage: str) -> str:
    if len(ctx.args) < 1:
        raise CommandError(f"Use `/jira change {usage}`.")
    return ctx.args[0]


def _cr_text(cr: ChangeRequest | None) -> str:
    if cr is None:
        return "none yet"
    return f"[{cr.key}]({cr.url}) ({cr.status or 'no status'})" if cr.url else f"{cr.key} ({cr.status})"


def _when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC") if moment is not None else "-"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _deployment(gate: Gate) -> str:
    return f"{gate.project} {gate.version} → {gate.environment}"


def _describe(gate: Gate) -> str:
    verdict = gate.verdict
    lines = [
        f"###### Gate `{gate.id}`: {_cell(_deployment(gate))}",
        f"{_ICONS[verdict.decision]} **{verdict.decision.value}** (`{verdict.reason.value}`): "
        + verdict.message,
        "",
        "| | |",
        "| --- | --- |",
        f"| Change request | {_cell(_cr_text(gate.change_request))} |",
    ]
    cr = gate.change_request
    if cr is not None and (cr.planned_start or cr.planned_end):
        lines.append(f"| Change window | {_when(cr.planned_start)} to {_when(cr.planned_end)} |")
    lines += [
        f"| Controlled | {'yes' if gate.controlled else 'no'} |",
        f"| State | {gate.status.value}{' (' + gate.deployment.value + ')' if gate.deployment else ''} |",
        f"| Opened | {_when(gate.created_at)} |",
        f"| Waits until | {_when(gate.deadline)} |",
        f"| Service desk | {_cell(gate.target.service_desk)} ({_cell(gate.target.request_type)}) |",
    ]
    return "\n".join(lines)


@COMMANDS.command(
    "change list",
    help="List the change gate's open gates (`all`: recent gates too)",
    usage="[all]",
    args=(Arg("Also show finished gates", "[all]", required=False),),
)
async def change_list(ctx: CommandContext) -> CommandResponse:
    service = _service(ctx)
    everything = bool(ctx.args) and ctx.args[0].lower() == "all"
    gates = await service.store.list_gates(status=None if everything else GateStatus.ACTIVE, limit=LIST_LIMIT)
    if not gates:
        which = "No gates yet." if everything else "No open gates. `/jira change list all` shows recent ones."
        return CommandResponse.ephemeral(which)
    rows = [
        f"###### {'Recent' if everything else 'Open'} gates",
        "| Gate | Deployment | Decision | Change request | Opened |",
        "| --- | --- | --- | --- | --- |",
    ]
    for gate in gates:
        decision = f"{_ICONS[gate.decision]} {gate.decision.value} (`{gate.reason.value}`)"
        rows.append(
            f"| `{gate.id[:8]}` | {_cell(_deployment(gate))} | {decision} | "
            f"{_cell(_cr_text(gate.change_request))} | {_when(gate.created_at)} |"
        )
    return CommandResponse.ephemeral("\n".join(rows))


@COMMANDS.command(
    "change show",
    help="Show a gate, its change request and deployment",
    usage="ID",
    args=(Arg("Gate id", "ID"),),
)
async def change_show(ctx: CommandContext) -> CommandResponse:
    service = _service(ctx)
    gate = await _find(service, _one_id(ctx, "show ID"))
    text = _describe(gate)
    events = await service.list_events(gate.id)
    if events:
        text += "\n\n" + "\n".join(
            f"- {_when(e.created_at)} {e.kind}{': ' + e.detail if e.detail else ''}" for e in events
        )
    return CommandResponse.ephemeral(text)


@COMMANDS.command(
    "change recheck",
    help="Read a gate's change request again now",
    usage="ID",
    args=(Arg("Gate id", "ID"),),
)
async def change_recheck(ctx: CommandContext) -> CommandResponse:
    service = _service(ctx)
    gate = await _find(service, _one_id(ctx, "recheck ID"))
    if gate.is_final or not gate.controlled:
        return CommandResponse.ephemeral(
            f"Gate `{gate.id}` is final ({gate.decision.value}, `{gate.reason.value}`): nothing to check."
        )
    try:
        checked = await service.recheck(gate.id, now=ctx.now())
    except GateError as e:
        raise CommandError(str(e)) from None
    return CommandResponse.ephemeral(_describe(checked))


@COMMANDS.command(
    "change cancel",
    help="Cancel a gate: its deployment fails",
    usage="ID",
    args=(Arg("Gate id", "ID"),),
)
async def change_cancel(ctx: CommandContext) -> CommandResponse:
    service = _service(ctx)
    gate = await _find(service, _one_id(ctx, "cancel ID"))
    await _require_cancel_role(ctx, service)
    who = f"@{ctx.user_name}" if ctx.user_name else ctx.user_id
    try:
        cancelled, changed = await service.cancel(gate.id, now=ctx.now(), by=who)
    except GateError as e:
        raise CommandError(str(e)) from None
    if not changed:
        return CommandResponse.ephemeral(
            f"Gate `{gate.id}` is already final ({cancelled.decision.value}, `{cancelled.reason.value}`)."
        )
    return CommandResponse.ephemeral(
        f"Gate `{gate.id}` is cancelled: the deployment of {_deployment(gate)} fails."
    )


async def _gate_channel(caller: Caller, service: GateService) -> dict[str, Any] | None:
    configured = service.settings.channel
    mm = caller.deps.mattermost
    team, slash, name = configured.partition("/")
    channel_id = await mm.resolve_channel(team, name) if slash else configured
    if not channel_id or not is_valid_id(channel_id):
        return None
    try:
        return await mm.get_channel(channel_id)
    except DeliveryError as e:
        if e.status in (403, 404):
            return None
        raise


async def _require_cancel_role(caller: Caller, service: GateService) -> None:
    """The caller's role in the gate channel, asked of Mattermost, must reach the configured one."""
    role = service.settings.cancel_role
    if role == "users" or await caller.is_admin():
        return
    if role != "system_admin":
        channel = await _gate_channel(caller, service)
        mm = caller.deps.mattermost
        if channel is not None:
            member = await mm.get_channel_member(str(channel["id"]), caller.user_id)
            if await has_admin_role(caller, {"team_id": "", **channel}, member, role):
                return
    raise CommandError(_ROLE_REFUSALS[role])


@COMMANDS.command(
    "change test",
    help="Check that a connection reaches its service desk and request type",
    usage="[connection]",
    admin=True,
    args=(Arg("Jira instance URL or alias (default: the change gate's)", "[connection]", required=False),),
)
async def change_test(ctx: CommandContext) -> CommandResponse:
    service = _service(ctx)
    settings = service.settings
    wanted = ctx.args[0] if ctx.args else settings.instance
    instance = ctx.deps.settings.jira.find_instance(wanted) if wanted else None
    if instance is None:
        if wanted:
            # The sentence and did-you-mean every entry point gives; the gate's connections are
            # the configured instances.
            known = ctx.deps.settings.jira.known_instances
            raise CommandError(unknown_instance(wanted, known) or f"There is no Jira instance `{wanted}`.")
        if len(ctx.deps.settings.jira.instances) != 1:
            raise CommandError("Name the connection to test: `/jira change test URL|alias`.")
        instance = ctx.deps.settings.jira.instances[0]
    label = instance.alias or instance.url
    if instance.service_account is None:
        raise CommandError(f"Connection `{label}` has no `service_account` in the configuration file.")
    targets = _targets_on(settings, instance.url, instance.alias or "")
    try:
        client = JsmClient.for_instance(
            instance,
            planned_start_field=settings.planned_start_field,
            planned_end_field=settings.planned_end_field,
            time_zone=settings.time_zone,
            timeout=ctx.deps.settings.jira.request_timeout_seconds,
        )
    except ValueError as e:
        raise CommandError(f"Connection `{label}` cannot be used: {e}") from None
    lines = [f"###### Change gate connection `{label}`"]
    all_ok = True
    try:
        for target in targets:
            result = await client.check(target.service_desk, target.request_type)
            all_ok = all_ok and result.ok
            icon = ":white_check_mark:" if result.ok else ":x:"
            lines.append(f"{icon} **{target.service_desk}** / {target.request_type}")
            lines += [f"  - {step}" for step in result.steps]
            if result.problem:
                lines.append(f"  - :warning: {result.problem}")
    finally:
        await client.close()
    lines.append("The connection works." if all_ok else "Fix the problem above, then test again.")
    return CommandResponse.ephemeral("\n".join(lines))


def _targets_on(settings: ChangeGateSettings, url: str, alias: str) -> list[GateTarget]:
    """The distinct service desks and request types that use the connection: the section's own
    (when it uses it) and each project's."""
    names = {url.casefold(), alias.casefold()} - {""}
    found: list[GateTarget] = []

    def uses(instance: str | None) -> bool:
        # None is the default connection: the section's, or the only configured one.
        chosen = instance or settings.instance
        return chosen is None or chosen.rstrip("/").casefold() in names

    candidates = [GateTarget(settings.instance, settings.service_desk, settings.request_type)]
    candidates += [settings.target_for(project) for project in settings.projects]
    for target in candidates:
        key = GateTarget(None, target.service_desk, target.request_type)
        if uses(target.instance) and key not in found:
            found.append(key)
    return found or [GateTarget(None, settings.service_desk, settings.request_type)]
