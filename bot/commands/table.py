"""The bot's commands, buttons and dialogs, registered once by the handler modules.

`COMMANDS` drives dispatch, help and autocomplete; `ACTIONS` and `DIALOGS` map the `action` and
`dialog` names carried in signed contexts to their handlers.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from bot.commands.context import ActionContext, CommandContext, DialogContext
from bot.commands.registry import CommandRegistry
from bot.mattermost.payloads import ActionResponse, CommandResponse, DialogResponse

COMMANDS: CommandRegistry[CommandContext, CommandResponse] = CommandRegistry("jira")

ActionHandler = Callable[[ActionContext], Awaitable[ActionResponse]]
DialogHandler = Callable[[DialogContext], Awaitable[DialogResponse | None]]

ACTIONS: dict[str, ActionHandler] = {}
DIALOGS: dict[str, DialogHandler] = {}


def action(name: str) -> Callable[[ActionHandler], ActionHandler]:
    """Register the handler of buttons and menus whose context says `action: name`."""

    def register(fn: ActionHandler) -> ActionHandler:
        if name in ACTIONS:
            raise ValueError(f"action {name!r} is registered twice")
        ACTIONS[name] = fn
        return fn

    return register


def dialog(name: str) -> Callable[[DialogHandler], DialogHandler]:
    """Register the handler of dialogs whose state says `dialog: name`."""

    def register(fn: DialogHandler) -> DialogHandler:
        if name in DIALOGS:
            raise ValueError(f"dialog {name!r} is registered twice")
        DIALOGS[name] = fn
        return fn

    return register
