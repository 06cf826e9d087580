"""Command handlers, one module per command group; importing this package registers them."""

from bot.commands.table import COMMANDS

COMMANDS.group("issue", help="View, transition, assign and create Jira issues")

# Commands are listed in help and autocomplete in the order they register, so the order of these
# imports is the order users see (view, transition, assign, unassign, create), not the alphabet.
# isort: off
from bot.commands.handlers import (  # noqa: E402
    account,  # noqa: F401
    admin,  # noqa: F401
    change,  # noqa: F401
    issue_view,  # noqa: F401
    issue_transition,  # noqa: F401
    issue_assign,  # noqa: F401
    issue_create,  # noqa: F401
    post_actions,  # noqa: F401
    subscribe,  # noqa: F401
    thread,  # noqa: F401
)
# isort: on
