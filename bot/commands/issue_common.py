"""What the issue handlers share: button names, limits, issue-key arguments, safe text, the actor's name.

Buttons and menus carry signed contexts naming the action, the instance and the issue
(`context_key` reads them back); the choices offered to one person only work for that person.
"""

from __future__ import annotations

import re

from bot.commands.cards import code_text, inline_text, user_mention
from bot.commands.context import ActionContext, Caller, CommandContext, CommandError
from bot.instances import Instance
from bot.mattermost.models import DeliveryError
from bot.render.plain import plain_text

ACTION_TRANSITION = "issue.transition"
ACTION_ASSIGN = "issue.assign"
ACTION_ASSIGN_ME = "issue.assign_me"
ACTION_SHARE = "issue.share"

# Where a clicked button sits, which decides what the answer to the click replaces:
# the user's own card (refreshed), a list of choices (replaced by the outcome), a shared card
# (left alone: the outcome is told to the clicker only).
SOURCE_CARD = "card"
SOURCE_CHOICE = "choice"
SOURCE_SHARED = "shared"

MAX_MENU_OPTIONS = 100
TEXTAREA_MAX = 3000

_ISSUE_KEY = re.compile(r"^[A-Z][A-Z0-9_]*-[0-9]+$")


def neutral(text: str) -> str:
    """Text from Jira or Mattermost made safe for one line of a post."""
    return inline_text(text, 120)


def neutral_block(text: str) -> str:
    """A sentence built from Jira names (states, users), defused; its own Markdown kept."""
    return plain_text(text, 2000)


def issue_key(text: str, usage: str) -> str:
    key = text.strip().upper()
    if not _ISSUE_KEY.match(key):
        raise CommandError(f"{code_text(text, 40)} is not a Jira issue key (like PROJ-123). Use `{usage}`.")
    return key


def first_arg_key(ctx: CommandContext, usage: str) -> str:
    """The issue key the command's first argument names; CommandError (showing `usage`) if none."""
    if not ctx.args:
        raise CommandError(f"Please give the issue key: `{usage}`.")
    return issue_key(ctx.args[0], usage)


def context_key(ctx: ActionContext) -> tuple[Instance, str]:
    """The instance and issue a verified button context names."""
    inst = ctx.instance_named(str(ctx.data.get("instance", "")))
    key = str(ctx.data.get("issue", ""))
    if not key:
        raise CommandError("This button names no issue; run the command again.")
    return inst, key


async def actor_name(ctx: Caller) -> str:
    """The acting user as text that does not notify them."""
    name = ctx.user_name
    if not name:
        try:
            name = str((await ctx.deps.mattermost.get_user(ctx.user_id)).get("username", ""))
        except DeliveryError:
            name = ""
    return user_mention(name)
