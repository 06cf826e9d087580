"""JQL subscription filters, evaluated locally against an event's issue (pure: no I/O, no clock)."""

from bot.routing.jql.compiled import ClauseResult, CompiledJql, RemoteClause
from bot.routing.jql.compiler import NamesUnknown, compile_jql
from bot.routing.jql.fields import IssueValues
from bot.routing.jql.names import JiraNames
from bot.routing.jql.syntax import MAX_DEPTH, MAX_LENGTH, JqlError

__all__ = [
    "MAX_DEPTH",
    "MAX_LENGTH",
    "ClauseResult",
    "CompiledJql",
    "IssueValues",
    "JiraNames",
    "JqlError",
    "NamesUnknown",
    "RemoteClause",
    "compile_jql",
]
