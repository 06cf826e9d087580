"""The handler package: every handler module is imported (so its commands register), in the order
users see the commands in help and autocomplete, and no handler imports another."""

from __future__ import annotations

import ast
import pkgutil
import sys
from pathlib import Path

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


def _imported_modules(path: Path) -> set[str]:
    """Every module `path` imports, at the top or inside a function (relative ones resolved)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = handlers.__name__.rsplit(".", node.level - 1)[0]
                base = f"{parent}.{base}" if base else parent
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def test_no_handler_imports_another() -> None:
    package = Path(handlers.__path__[0])
    siblings = {f"{handlers.__name__}.{m.name}" for m in pkgutil.iter_modules(handlers.__path__)}
    crossings = {
        path.stem: sorted(_imported_modules(path) & siblings)
        for path in sorted(package.glob("*.py"))
        if path.name != "__init__.py"
    }
    assert {name: found for name, found in crossings.items() if found} == {}
