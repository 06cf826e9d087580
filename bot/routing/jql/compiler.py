"""JQL compiled into a predicate over one `IssueEvent`, with Jira's documented semantics.

`compile_jql` parses once and resolves every field, operator and value up front (unknown fields,
operators a field does not support, bad dates are JqlErrors then, never per event). Matching reads
the event's values through an `IssueValues` view that each value is computed into at most once,
however many subscriptions ask.

Semantics (Jira's "JQL fields", "JQL operators" and "JQL functions" pages):
- field names, keywords and function names are case-insensitive; so are the names and ids of
  projects, types, statuses, priorities, resolutions, components, versions, labels and users;
- `!=`, `NOT IN` and `!~` never match an issue whose field is empty (`IS EMPTY` does);
- `~` is a word search: case-insensitive, on the words of the text, every term must be there,
  `term*` matches words starting with it, `"\\"exact phrase\\""` matches the words in a row;
- `resolution = Unresolved` means no resolution, as in Jira;
- `NOT` negates its clause; `NOT f = x` therefore also matches issues with `f` empty.
What only Jira can answer (membersOf(), issueHistory(), WAS, CHANGED, watcher, openSprints(), fields
unknown here ...) compiles into a *remote clause*: `CompiledJql.remote_clauses` names them and the
local evaluation treats them as not matching.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from bot.jira.events import IssueEvent
from bot.routing.jql import dates
from bot.routing.jql.compiled import CompiledJql, RemoteClause, _AndN, _Leaf, _Node, _NotN, _OrN
from bot.routing.jql.fields import (
    _ALIASES,
    _CUSTOM_FIELD,
    _DATE_FIELDS,
    _REMOTE_FIELDS,
    _REMOTE_FUNCTIONS,
    _SOURCES,
    _TEXT_FIELDS,
    _WORD,
    IssueValues,
    _either,
    _field,
    _option,
    _Source,
    _text_of,
)
from bot.routing.jql.syntax import (
    HISTORY_OPERATORS,
    And,
    Clause,
    Function,
    JqlError,
    MatchAll,
    Node,
    Not,
    Or,
    Value,
    parse,
)


class NamesUnknown(JqlError):
    """A clause that needs what the bot learns from Jira (the instance's priority order):
    learning it again may make the clause work."""


# --- The compiler -------------------------------------------------------------------------------

_EMPTY = frozenset[str]()


class _Compiler:
    def __init__(
        self,
        source: str,
        custom_field_names: Mapping[str, str],
        channel: bool,
        priority_order: Sequence[str] | None,
    ) -> None:
        self.source = source
        self.custom = {name.casefold(): fid for name, fid in custom_field_names.items()}
        self.channel = channel
        self.priority_rank = (
            {name.casefold(): i for i, name in enumerate(priority_order)} if priority_order else None
        )
        self.remote: list[RemoteClause] = []
        self.security = False
        # Read only in part until the instance's field list names it (Server's Epic Link field).
        self.partly_known = False

    def node(self, tree: Node) -> _Node:
        if isinstance(tree, MatchAll):
            return None
        if isinstance(tree, Not):
            return _NotN(self.node(tree.child))
        if isinstance(tree, And):
            return _AndN(tuple(self.node(c) for c in tree.children))
        if isinstance(tree, Or):
            return _OrN(tuple(self.node(c) for c in tree.children))
        return self.clause(tree)

    # -- one clause --
    def clause(self, c: Clause) -> _Leaf:
        text = self.source[c.start : c.end]
        written = c.field.strip().casefold()
        name = _ALIASES.get(written, written)
        self._refuse_current_user(c)
        remote_fn = self._remote_function(c)
        if c.operator in HISTORY_OPERATORS:
            self._history_dates(c)
            word = c.operator.split()[0]
            return self._remote(c, text, f"{word} needs the issue's change history, which only Jira has")
        if remote_fn is not None:
            return self._remote(c, text, f"{remote_fn}() is answered by Jira")
        if written == "epic link":
            epic_link = self.custom.get(written)
            if epic_link is None:
                self.partly_known = True
            else:
                # Server/Data Center keep the epic in their Epic Link custom field; Cloud in parent.
                return self.option_clause(c, text, name, _either(_SOURCES["parent"], _option(epic_link)))
        if name in _SOURCES:
            if name == "level":
                self.security = True
            return self.option_clause(c, text, name, _SOURCES[name])
        if name in _TEXT_FIELDS:
            return self.text_clause(c, text, name)
        if name in _DATE_FIELDS:
            return self.date_clause(c, text, name)
        custom = _CUSTOM_FIELD.fullmatch(name)
        field_id = f"customfield_{custom[1]}" if custom else self.custom.get(name)
        if field_id is not None:
            return self.custom_clause(c, text, field_id)
        if name == "sprint":
            # Sprint is a custom field: its id comes with the names learnt from Jira's field list.
            return self._remote(
                c,
                text,
                "the Sprint field's id is read from Jira's field list, not known here",
                c.field.strip(),
            )
        if name in _REMOTE_FIELDS:
            return self._remote(c, text, f"{c.field} is known only to Jira")
        return self._remote(
            c, text, f'"{c.field}" is not a field known here (a custom field name?)', c.field.strip()
        )

    def _remote(self, c: Clause, text: str, reason: str, unknown_field: str = "") -> _Leaf:
        remote = RemoteClause(text, c.column, reason, unknown_field)
        self.remote.append(remote)
        return _Leaf(text, lambda v, now: False, lambda v: "answered by Jira", remote)

    def _operand_items(self, c: Clause) -> tuple[Value | Function, ...]:
        op = c.operand
        if op is None:
            return ()
        return op if isinstance(op, tuple) else (op,)

    def _all_items(self, c: Clause) -> tuple[Value | Function, ...]:
        """The operand's items and those of the history predicates (`BY currentUser()` ...)."""
        items = self._operand_items(c)
        for _, op in c.history:
            if op is not None:
                items += op if isinstance(op, tuple) else (op,)
        return items

    def _history_dates(self, c: Clause) -> None:
        """The dates of AFTER, BEFORE, ON and DURING are checked here, not first by Jira."""
        for word, op in c.history:
            if word not in ("AFTER", "BEFORE", "ON", "DURING"):
                continue
            if op is None:
                raise JqlError(f"expected a date after {word}", c.column)
            for item in op if isinstance(op, tuple) else (op,):
                self._date(item)

    def _refuse_current_user(self, c: Clause) -> None:
        for item in self._all_items(c):
            if isinstance(item, Function) and item.name.casefold() == "currentuser" and self.channel:
                raise JqlError(
                    "currentUser() means the person running a search; a channel subscription has "
                    "no such person: name the user instead (account id, username, e-mail or name)",
                    item.column,
                )

    def _remote_function(self, c: Clause) -> str | None:
        for item in self._all_items(c):
            if isinstance(item, Function):
                lowered = item.name.casefold()
                if lowered in _REMOTE_FUNCTIONS:
                    return item.name
                if lowered not in dates.DATE_FUNCTIONS and lowered != "currentuser":
                    raise JqlError(f"unknown function {item.name}()", item.column)
        return None

    def _unsupported(self, c: Clause, hint: str) -> JqlError:
        return JqlError(f'the operator "{c.operator}" cannot be used with {c.field}{hint}', c.column)

    def _strings(self, c: Clause) -> frozenset[str]:
        out = set()
        for item in self._operand_items(c):
            if isinstance(item, Function):
                raise JqlError(f"{item.name}() is not a value of {c.field}", item.column)
            out.add(item.text.casefold())
        return frozenset(out)

    def _emptiness(self, c: Clause) -> bool | None:
        """For IS / IS NOT / = EMPTY / != EMPTY: whether the clause asks for an empty field."""
        if c.operator in ("IS", "IS NOT"):
            return c.operator == "IS"
        if c.operand is None and c.operator in ("=", "!="):
            return c.operator == "="
        if c.operand is None:
            raise JqlError(f'EMPTY goes with IS, IS NOT, = or != (not "{c.operator}")', c.column)
        return None

    def option_clause(self, c: Clause, text: str, name: str, src: _Source) -> _Leaf:
        key, read = src.key, src.read

        def show(v: IssueValues) -> str:
            return v.get("show:" + key, src.show)

        empty = self._emptiness(c)
        if empty is not None:
            return _Leaf(text, lambda v, now: (not v.get(key, read)) is empty, show)
        op = c.operator
        if op in ("~", "!~"):
            raise self._unsupported(c, ": ~ is for text fields; use = or IN")
        if op in ("<", "<=", ">", ">="):
            return self.ordered_clause(c, text, name, src, show)
        wanted = self._strings(c)
        if name == "resolution" and "unresolved" in wanted:
            # Jira: `resolution = Unresolved` is an issue without a resolution.
            others = wanted - {"unresolved"}

            def has(found: frozenset[str]) -> bool:
                return not found or not others.isdisjoint(found)

            if op in ("=", "IN"):
                return _Leaf(text, lambda v, now: has(v.get(key, read)), show)
            return _Leaf(text, lambda v, now: not has(v.get(key, read)), show)
        if op in ("=", "IN"):
            return _Leaf(text, lambda v, now: not wanted.isdisjoint(v.get(key, read)), show)

        def differs(v: IssueValues, now: datetime) -> bool:
            found = v.get(key, read)
            return bool(found) and wanted.isdisjoint(found)

        return _Leaf(text, differs, show)

    def ordered_clause(
        self, c: Clause, text: str, name: str, src: _Source, show: Callable[[IssueValues], str]
    ) -> _Leaf:
        op = c.operator
        (item,) = self._operand_items(c) or (None,)
        if not isinstance(item, Value):
            raise JqlError(f'expected one value after "{op}"', c.column)
        if name == "priority":
            ranks = self.priority_rank
            if ranks is None:
                raise NamesUnknown(
                    f'"{op}" on priority needs the instance\'s priority order, which is not known '
                    "here; list the priorities with IN instead",
                    c.column,
                )
            target = ranks.get(item.text.casefold())
            if target is None:
                raise NamesUnknown(f'"{item.text}" is not a priority of this instance', item.column)
            # Higher priority = earlier in the order = smaller rank.
            cmp = _ORDER[op]

            def test(v: IssueValues, now: datetime) -> bool:
                found = [ranks[s] for s in v.get("priority", src.read) if s in ranks]
                return any(cmp(target, r) for r in found)

            return _Leaf(text, test, show)
        if name == "key":
            project, _, number = item.text.casefold().rpartition("-")
            if not number.isdigit():
                raise JqlError(f'"{item.text}" is not an issue key such as ABC-123', item.column)
            bound, cmp_ = int(number), _ORDER[op]

            def key_test(v: IssueValues, now: datetime) -> bool:
                p, _, n = v.event.issue.key.casefold().rpartition("-")
                return p == project and n.isdigit() and cmp_(int(n), bound)

            return _Leaf(text, key_test, show)
        raise self._unsupported(c, "")

    def text_clause(self, c: Clause, text: str, name: str) -> _Leaf:
        read = _text_of(name)
        key = "text:" + name

        def words(v: IssueValues) -> tuple[str, ...]:
            return v.get("words:" + name, lambda e: tuple(_WORD.findall(read(e).casefold())))

        def show(v: IssueValues) -> str:
            value = v.get(key, read).strip()
            return _short(value) if value else "EMPTY"

        empty = self._emptiness(c)
        if empty is not None:
            return _Leaf(text, lambda v, now: (not v.get(key, read).strip()) is empty, show)
        if c.operator not in ("~", "!~"):
            raise self._unsupported(c, ": text fields are searched with ~ (contains) or !~")
        items = self._operand_items(c)
        if len(items) != 1 or not isinstance(items[0], Value):
            raise JqlError(f'expected one text after "{c.operator}"', c.column)
        search = _text_search(items[0])
        if c.operator == "~":
            return _Leaf(text, lambda v, now: search(words(v)), show)
        return _Leaf(text, lambda v, now: bool(words(v)) and not search(words(v)), show)

    def date_clause(self, c: Clause, text: str, name: str) -> _Leaf:
        def read(e: IssueEvent) -> datetime | None:
            raw = _field(e, name)
            return dates.parse_field_date(raw[0].name) if raw and raw[0].name else None

        key = "date:" + name

        def show(v: IssueValues) -> str:
            found = v.get(key, read)
            return found.isoformat(timespec="minutes") if found else "EMPTY"

        empty = self._emptiness(c)
        if empty is not None:
            return _Leaf(text, lambda v, now: (v.get(key, read) is None) is empty, show)
        if c.operator in ("~", "!~"):
            raise self._unsupported(c, ": compare dates with =, <, >, <=, >=")
        moments = [self._date(item) for item in self._operand_items(c)]
        op = c.operator
        if op in ("=", "IN", "!=", "NOT IN"):
            positive = op in ("=", "IN")

            def eq(v: IssueValues, now: datetime) -> bool:
                found = v.get(key, read)
                if found is None:
                    return False
                hit = any(found == m(now) for m in moments)
                return hit if positive else not hit

            return _Leaf(text, eq, show)
        if len(moments) != 1:
            raise JqlError(f'expected one date after "{op}"', c.column)
        moment, cmp = moments[0], _ORDER[op]

        def compare(v: IssueValues, now: datetime) -> bool:
            found = v.get(key, read)
            return found is not None and cmp(found, moment(now))

        return _Leaf(text, compare, show)

    def _date(self, item: Value | Function) -> dates.DateFn:
        if isinstance(item, Function):
            lowered = item.name.casefold()
            if lowered not in dates.DATE_FUNCTIONS:
                raise JqlError(f"{item.name}() is not a date", item.column)
            return dates.function(lowered, item.args, item.column)
        return dates.literal(item.text, item.column)

    def custom_clause(self, c: Clause, text: str, field_id: str) -> _Leaf:
        src = _option(field_id)

        def show(v: IssueValues) -> str:
            return v.get("show:" + field_id, src.show)

        empty = self._emptiness(c)
        if empty is not None:
            return _Leaf(text, lambda v, now: (not v.get(field_id, src.read)) is empty, show)
        op = c.operator
        if op in ("~", "!~"):
            items = self._operand_items(c)
            if len(items) != 1 or not isinstance(items[0], Value):
                raise JqlError(f'expected one text after "{op}"', c.column)
            search = _text_search(items[0])

            def words(v: IssueValues) -> tuple[str, ...]:
                return v.get(
                    "words:" + field_id,
                    lambda e: tuple(
                        w for val in _field(e, field_id) for w in _WORD.findall(val.name.casefold())
                    ),
                )

            if op == "~":
                return _Leaf(text, lambda v, now: search(words(v)), show)
            return _Leaf(text, lambda v, now: bool(words(v)) and not search(words(v)), show)
        if op in ("<", "<=", ">", ">="):
            (item,) = self._operand_items(c) or (None,)
            if not isinstance(item, Value):
                raise JqlError(f'expected one value after "{op}"', c.column)
            bound = _number(item.text)
            when = None if bound is not None else dates.parse_absolute(item.text)
            if bound is None and when is None:
                raise JqlError(f'"{item.text}" is neither a number nor a date', item.column)
            cmp = _ORDER[op]

            def numeric(v: IssueValues, now: datetime) -> bool:
                for val in _field(v.event, field_id):
                    if bound is not None:
                        n = _number(val.name or val.id)
                        if n is not None and cmp(n, bound):
                            return True
                    elif when is not None:
                        d = dates.parse_field_date(val.name or val.id)
                        if d is not None and cmp(d, when):
                            return True
                return False

            return _Leaf(text, numeric, show)
        wanted = self._strings(c)
        if op in ("=", "IN"):
            return _Leaf(text, lambda v, now: not wanted.isdisjoint(v.get(field_id, src.read)), show)

        def differs(v: IssueValues, now: datetime) -> bool:
            found = v.get(field_id, src.read)
            return bool(found) and wanted.isdisjoint(found)

        return _Leaf(text, differs, show)


_ORDER: dict[str, Callable[[Any, Any], bool]] = {
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _short(text: str, limit: int = 60) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _text_search(value: Value) -> Callable[[tuple[str, ...]], bool]:
    """The word search of `~`: every term present (`term*` as a prefix), or an exact phrase when
    the text itself is in quotes (`summary ~ "\\"disk full\\""`)."""
    raw = value.text.strip()
    phrase = len(raw) >= 2 and raw[0] == '"' and raw[-1] == '"'
    terms: list[tuple[str, bool]] = []
    for part in raw.strip('"').split():
        prefix = part.endswith("*")
        core = part.rstrip("*")
        if "*" in core or "?" in core:
            raise JqlError(f'"{part}": only a trailing * is supported in a text search', value.column)
        found = _WORD.findall(core.casefold())
        if not found and not prefix:
            continue
        if not found:
            raise JqlError(f'"{part}": a search term cannot start with a wildcard', value.column)
        terms.extend((w, False) for w in found[:-1])
        terms.append((found[-1], prefix))
    if not terms:
        raise JqlError("the text search has no word to look for", value.column)
    needed = tuple(terms)

    def term_in(words: tuple[str, ...], term: str, prefix: bool) -> bool:
        return any(w.startswith(term) for w in words) if prefix else term in words

    if not phrase:
        return lambda words: all(term_in(words, t, p) for t, p in needed)

    size = len(needed)

    def in_a_row(words: tuple[str, ...]) -> bool:
        for i in range(len(words) - size + 1):
            if all(
                (words[i + j].startswith(t) if p else words[i + j] == t) for j, (t, p) in enumerate(needed)
            ):
                return True
        return False

    return in_a_row


def _top_projects(tree: Node) -> frozenset[str] | None:
    """Project keys from `project = X` / `project IN (...)` at the top-level AND."""
    conjuncts = tree.children if isinstance(tree, And) else (tree,)
    found: frozenset[str] | None = None
    for node in conjuncts:
        if not isinstance(node, Clause) or node.field.strip().casefold() != "project":
            continue
        if node.operator not in ("=", "IN") or node.operand is None:
            continue
        items = node.operand if isinstance(node.operand, tuple) else (node.operand,)
        keys = frozenset(i.text.upper() for i in items if isinstance(i, Value))
        if len(keys) != len(items) or not all(_PROJECT_KEY.fullmatch(k) for k in keys):
            continue  # a function, an id or a project name: not usable as an index key
        found = keys if found is None else found & keys
    return found


_PROJECT_KEY = re.compile(r"[A-Z][A-Z0-9_]*")


def compile_jql(
    text: str,
    *,
    custom_field_names: Mapping[str, str] | None = None,
    channel: bool = True,
    priority_order: Sequence[str] | None = None,
) -> CompiledJql:
    """Parse and compile JQL. Raises JqlError (with the column) for what cannot be evaluated.

    `custom_field_names` maps custom field names to ids ("Story Points" -> "customfield_10016");
    `priority_order` lists the instance's priorities from highest to lowest, for `priority > High`.
    """
    parsed = parse(text)
    compiler = _Compiler(text, custom_field_names or {}, channel, priority_order)
    root = compiler.node(parsed.tree)
    return CompiledJql(
        text,
        text[: parsed.order_at].strip() if parsed.order_at is not None else text.strip(),
        root,
        _top_projects(parsed.tree),
        tuple(compiler.remote),
        compiler.security,
        compiler.partly_known,
    )
