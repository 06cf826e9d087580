"""Runs slash commands, button clicks and dialog submissions against the registered handlers.

Every failure a user can cause or meet ends as a one-line ephemeral explanation.
"""

from __future__ import annotations

import logging

from bot.commands import handlers  # noqa: F401  (registers the commands)
from bot.commands.context import ActionContext, CommandContext, CommandError, Deps, DialogContext
from bot.commands.registry import Help
from bot.commands.table import ACTIONS, COMMANDS, DIALOGS
from bot.jira.errors import JiraError
from bot.mattermost.models import DeliveryError, MattermostNotConfigured
from bot.mattermost.payloads import (
    ActionRequest,
    ActionResponse,
    CommandResponse,
    DialogResponse,
    DialogSubmission,
    SlashCommandRequest,
)

log = logging.getLogger(__name__)

MATTERMOST_DOWN = "Mattermost did not answer the bot; try again in a moment."
NEEDS_SLASH_COMMAND = "This command opens a form, which only the slash command can do: type `/jira {text}`."


class CommandService:
    def __init__(self, deps: Deps) -> None:
        self.deps = deps

    async def handle(self, request: SlashCommandRequest) -> CommandResponse:
        text = request.text.strip()
        ctx = CommandContext(
            deps=self.deps,
            user_id=request.user_id,
            channel_id=request.channel_id,
            team_id=request.team_id,
            team_domain=request.team_domain,
            channel_name=request.channel_name,
            user_name=request.user_name,
            trigger_id=request.trigger_id,
            response_url=request.response_url,
        )
        return await self._run(ctx, text)

    async def handle_message(
        self, *, user_id: str, channel_id: str, text: str, root_id: str = "", user_name: str = ""
    ) -> CommandResponse:
        """A command typed as a plain message (no `/jira`) in a direct channel with the bot. It
        comes without trigger id or response URL, so the caller posts the answer, and a command
        that would open a dialog says to use the slash command instead."""
        ctx = CommandContext(
            deps=self.deps, user_id=user_id, channel_id=channel_id, user_name=user_name, root_id=root_id
        )
        return await self._run(ctx, text.strip())

    async def _run(self, ctx: CommandContext, text: str) -> CommandResponse:
        extra = self.deps.settings.commands.extra_help
        off = self.deps.unconfigured_commands
        found = COMMANDS.resolve_or_help(text, is_admin=False, extra=extra, unavailable=off)
        if isinstance(found, Help):
            # Admins see the admin part of the help; asking Mattermost only when help is shown.
            if await ctx.is_admin():
                found = COMMANDS.resolve_or_help(text, is_admin=True, extra=extra, unavailable=off)
            if isinstance(found, Help):
                return CommandResponse.ephemeral(found.text)
        ctx.args = found.args
        ctx.instance_arg = found.instance
        ctx.command = found.spec.name
        try:
            if found.spec.admin:
                await ctx.require_admin()
            response = await found.spec.handler(ctx)
        except CommandError as e:
            return CommandResponse.ephemeral(e.message)
        except JiraError as e:
            return CommandResponse.ephemeral(await ctx.explain(e))
        except MattermostNotConfigured as e:
            return CommandResponse.ephemeral(str(e))
        except DeliveryError as e:
            if not ctx.trigger_id and e.status == 400:
                # Only a slash command carries the trigger id Mattermost needs to open a dialog.
                return CommandResponse.ephemeral(NEEDS_SLASH_COMMAND.format(text=text))
            return CommandResponse.ephemeral(MATTERMOST_DOWN)
        self.deps.metrics.commands.labels(found.spec.name).inc()
        return response

    async def handle_action(self, request: ActionRequest) -> ActionResponse:
        name = str(request.context.get("action", ""))
        handler = ACTIONS.get(name)
        if handler is None:
            return ActionResponse.ephemeral("This button is no longer supported.")
        ctx = ActionContext(
            deps=self.deps,
            user_id=request.user_id,
            channel_id=request.channel_id,
            team_id=request.team_id,
            user_name=request.user_name,
            trigger_id=request.trigger_id,
            post_id=request.post_id,
            data=request.context,
            selected=request.selected_option,
        )
        try:
            return await handler(ctx)
        except CommandError as e:
            return ActionResponse.ephemeral(e.message)
        except JiraError as e:
            return ActionResponse.ephemeral(await ctx.explain(e))
        except MattermostNotConfigured as e:
            return ActionResponse.ephemeral(str(e))
        except DeliveryError:
            return ActionResponse.ephemeral(MATTERMOST_DOWN)

    async def handle_dialog(self, submission: DialogSubmission) -> DialogResponse | None:
        name = str(submission.context.get("dialog", ""))
        handler = DIALOGS.get(name)
        if handler is None:
            return DialogResponse(error="This dialog is no longer supported; run the command again.")
        ctx = DialogContext(
            deps=self.deps,
            user_id=submission.user_id,
            channel_id=submission.channel_id,
            team_id=submission.team_id,
            state=submission.context,
            submission=submission.submission,
            cancelled=submission.cancelled,
        )
        try:
            return await handler(ctx)
        except CommandError as e:
            return DialogResponse(error=e.message)
        except JiraError as e:
            return DialogResponse(error=await ctx.explain(e))
        except MattermostNotConfigured as e:
            return DialogResponse(error=str(e))
        except DeliveryError:
            return DialogResponse(error=MATTERMOST_DOWN)
