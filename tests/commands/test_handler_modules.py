"""The handler package: every handler module is imported (so its commands register), in the order
users see the commands in help and autocomplete."""

from __future__ import annotations

import pkgutil
import sys

from bot.commands import handlers
from bot.commands.table import COMMANDS


def test_every_handler_module_is_imported_by_the_package() -> None:
    modules = {m.name for m in pkgutil.iter_modules(handlers.__path__)}
    assert {"issue_view", "issue_transition", "issue_assign", "issue_create", "thread"} <= modules
    missing = sorted(m for m in modules if f"{handlers.__name__}.{m}" not in sys.modules)
    assert missing == []


def test_issue_commands_are_listed_in_the_order_they_are_used() -> None:
    help_text = COMMANDS.help_text(is_admin=False)
    names = ["view", "transition", "assign", "unassign", "create", "attach"]
    positions = [help_text.index(f"`/jira [issue] {name} ") for name in names]
    assert positions == sorted(positions)
    issue = next(c for c in COMMANDS.autocomplete()["SubCommands"] if c["Trigger"] == "issue")
    assert [c["Trigger"] for c in issue["SubCommands"]] == names
    assert issue["HelpText"] == "View, transition, assign and create Jira issues"
