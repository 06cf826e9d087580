"""One registry of `/jira` commands that drives dispatch, help text and autocomplete.

Commands are registered with a decorator naming their words ("issue transition") and aliases
("transition"). Input is dispatched to the command whose name or alias is the longest matching
prefix of its words, as the Mattermost Jira plugin does. This module is pure: no I/O.
"""

from __future__ import annotations

import difflib
from collections.abc import Awaitable, Callable, Collection, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

Ctx = TypeVar("Ctx")
R = TypeVar("R")

Handler = Callable[[Ctx], Awaitable[R]]

INSTANCE_OPTION = "--instance"
ROLE_SYSTEM_ADMIN = "system_admin"
ROLE_SYSTEM_USER = "system_user"

# Opening quote -> the closing quotes it accepts. Typographic quotes are included because
# phone keyboards replace straight quotes with them.
_QUOTES = {'"': '"', "'": "'", "“": '”"', "”": '”"', "‘": "’'", "’": "’'"}


class UsageError(ValueError):
    """Input that names a command but cannot be understood; `message` is shown to the user."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True, slots=True)
class Choice:
    """One value of a fixed-choice argument, offered by autocomplete."""

    item: str
    help: str = ""


@dataclass(frozen=True, slots=True)
class Arg:
    """A positional argument, described for autocomplete (help and dispatch use `usage`)."""

    help: str
    hint: str = ""
    required: bool = True
    choices: tuple[Choice, ...] = ()


@dataclass(frozen=True)
class CommandSpec(Generic[Ctx, R]):
    """A registered command. `admin` commands are for system admins (the caller checks the role
    with Mattermost); `hidden` ones dispatch but appear in neither help nor autocomplete."""

    name: str
    handler: Handler[Ctx, R]
    help: str
    usage: str = ""
    aliases: tuple[str, ...] = ()
    admin: bool = False
    hidden: bool = False
    args: tuple[Arg, ...] = ()
    instance_option: bool = False

    @property
    def paths(self) -> tuple[str, ...]:
        return (self.name, *self.aliases)


@dataclass(frozen=True)
class Match(Generic[Ctx, R]):
    """What input dispatched to: the command, the words that named it, and its arguments."""

    spec: CommandSpec[Ctx, R]
    words: tuple[str, ...]
    args: tuple[str, ...]
    instance: str | None = None


@dataclass(frozen=True, slots=True)
class Help:
    """Input that names no command (or misuses one): show this text instead."""

    text: str


def tokenize(text: str) -> list[str]:
    """Split command text into words; a quoted phrase ("In Progress", 'Ann Lee') is one word.

    Unlike shlex it never fails: a quote opens a phrase only at the start of a word and only if a
    matching quote closes it at the end of a word, so O'Brien and an unbalanced quote stay
    literal text.
    """
    words: list[str] = []
    i, n = 0, len(text)
    while i < n:
        if text[i].isspace():
            i += 1
            continue
        closers = _QUOTES.get(text[i])
        if closers is not None:
            end = _closing_quote(text, i + 1, closers)
            if end is not None:
                words.append(text[i + 1 : end])
                i = end + 1
                continue
        j = i
        while j < n and not text[j].isspace():
            j += 1
        words.append(text[i:j])
        i = j
    return words


def _closing_quote(text: str, start: int, closers: str) -> int | None:
    for k in range(start, len(text)):
        if text[k] in closers and (k + 1 == len(text) or text[k + 1].isspace()):
            return k
    return None


def split_instance_option(args: Sequence[str]) -> tuple[str | None, list[str]]:
    """Take `--instance VALUE` or `--instance=VALUE` out of the arguments, wherever it is."""
    instance: str | None = None
    rest: list[str] = []
    i = 0
    while i < len(args):
        word = args[i]
        flag, eq, value = word.partition("=")
        if flag.lower() != INSTANCE_OPTION:
            rest.append(word)
            i += 1
            continue
        if not eq:
            if i + 1 >= len(args):
                raise UsageError(f"`{INSTANCE_OPTION}` needs a Jira URL or alias.")
            value = args[i + 1]
            i += 2
        else:
            i += 1
        if not value.strip():
            raise UsageError(f"`{INSTANCE_OPTION}` needs a Jira URL or alias.")
        if instance is not None and instance != value:
            raise UsageError(f"`{INSTANCE_OPTION}` was given twice ({instance}, {value}).")
        instance = value
    return instance, rest


def _normalise_name(name: str) -> str:
    words = name.lower().split()
    if not words:
        raise ValueError("a command needs a name")
    return " ".join(words)


@dataclass
class _Node:
    """A word of the autocomplete tree; `spec` is set where a command ends."""

    word: str
    spec: CommandSpec[Any, Any] | None = None
    children: dict[str, _Node] = field(default_factory=dict)


class CommandRegistry(Generic[Ctx, R]):
    def __init__(self, trigger: str = "jira") -> None:
        self.trigger = trigger.lower().lstrip("/")
        self._specs: list[CommandSpec[Ctx, R]] = []
        self._index: dict[tuple[str, ...], CommandSpec[Ctx, R]] = {}
        self._longest = 0
        self._group_help: dict[str, str] = {}

    def command(
        self,
        name: str,
        *,
        help: str,
        usage: str = "",
        aliases: Sequence[str] = (),
        admin: bool = False,
        hidden: bool = False,
        args: Sequence[Arg] = (),
        instance_option: bool = False,
    ) -> Callable[[Handler[Ctx, R]], Handler[Ctx, R]]:
        """Register the decorated handler under `name` and `aliases`; the handler is returned
        unchanged. `instance_option` says the command accepts `--instance URL|alias`."""

        def register(handler: Handler[Ctx, R]) -> Handler[Ctx, R]:
            spec = CommandSpec(
                name=_normalise_name(name),
                handler=handler,
                help=help,
                usage=usage,
                aliases=tuple(_normalise_name(a) for a in aliases),
                admin=admin,
                hidden=hidden,
                args=tuple(args),
                instance_option=instance_option,
            )
            for path in spec.paths:
                key = tuple(path.split())
                if key in self._index:
                    raise ValueError(f"/{self.trigger} {path} is registered twice")
            for path in spec.paths:
                key = tuple(path.split())
                self._index[key] = spec
                self._longest = max(self._longest, len(key))
            self._specs.append(spec)
            return handler

        return register

    def group(self, word: str, *, help: str) -> None:
        """Describe a first word shared by several commands ("issue"), for autocomplete."""
        self._group_help[_normalise_name(word)] = help

    @property
    def specs(self) -> tuple[CommandSpec[Ctx, R], ...]:
        return tuple(self._specs)

    def dispatch_target(self, text: str) -> Match[Ctx, R] | None:
        """The command named by the longest matching prefix of the words of `text`
        (case-insensitive), or None. Raises UsageError for a malformed `--instance`."""
        tokens = tokenize(text)
        if tokens and tokens[0].lower() == "/" + self.trigger:
            tokens = tokens[1:]
        direct = self._longest_prefix(tokens)
        if direct is not None and not direct[0].instance_option:
            # The command takes no instance: its arguments stay verbatim (a summary may say
            # "--instance").
            spec, n = direct
            return Match(spec, tuple(tokens[:n]), tuple(tokens[n:]), None)
        # The option may also come before the command words.
        instance, stripped = split_instance_option(tokens)
        found = self._longest_prefix(stripped)
        if found is None:
            return None
        spec, n = found
        return Match(spec, tuple(stripped[:n]), tuple(stripped[n:]), instance)

    def _longest_prefix(self, words: Sequence[str]) -> tuple[CommandSpec[Ctx, R], int] | None:
        for n in range(min(self._longest, len(words)), 0, -1):
            spec = self._index.get(tuple(w.lower() for w in words[:n]))
            if spec is not None:
                return spec, n
        return None

    def resolve_or_help(
        self, text: str, *, is_admin: bool, extra: str = "", unavailable: Collection[str] = ()
    ) -> Match[Ctx, R] | Help:
        """The command to run, or the help to show for unknown or malformed input: the whole help
        for empty input, else "unknown command … — did you mean …" with the relevant help lines.
        Whether the user may run an admin command is the caller's check (`match.spec.admin`).
        `unavailable`: first words of commands this bot has not configured (left out of help)."""
        try:
            match = self.dispatch_target(text)
        except UsageError as e:
            return Help(e.message + "\n\n" + self.help_text(is_admin, extra, unavailable))
        if match is None:
            words = [w for w in tokenize(text) if w.lower() != "/" + self.trigger]
            if words:
                return Help(self.unknown_text(words, is_admin, unavailable))
            return Help(self.help_text(is_admin, extra, unavailable))
        return match

    def unknown_text(self, words: Sequence[str], is_admin: bool, unavailable: Collection[str] = ()) -> str:
        """What to answer input that names no command: the unknown word, the closest command
        when one is close, and the help lines of the commands meant."""
        t = self.trigger
        specs = self._visible(is_admin, unavailable)
        paths = {tuple(p.split()): spec for spec in specs for p in spec.paths}
        first = words[0].lower()
        group = {p[1]: spec for p, spec in paths.items() if len(p) > 1 and p[0] == first}
        if group and (first,) not in paths:
            sub = words[1].lower() if len(words) > 1 else ""
            near = difflib.get_close_matches(sub, list(group), n=1, cutoff=0.6) if sub else []
            if not sub:
                head = f"`/{t} {first}` needs a subcommand:"
                meant = list(dict.fromkeys(group.values()))
            elif near:
                head = (
                    f"Unknown subcommand `{sub}` of `/{t} {first}` — did you mean `/{t} {first} {near[0]}`?"
                )
                meant = [group[near[0]]]
            else:
                head = f"Unknown subcommand `{sub}` of `/{t} {first}`; it has these:"
                meant = list(dict.fromkeys(group.values()))
            return "\n".join([head, *(self._help_line(s) for s in meant)]) + "\n"
        firsts = {p[0]: spec for p, spec in paths.items()}
        near = difflib.get_close_matches(first, list(firsts), n=1, cutoff=0.6)
        if not near:
            if first in unavailable:
                return f"`/{t} {first}` is not configured on this bot. `/{t} help` lists the commands.\n"
            return f"Unknown command `/{t} {first}` — `/{t} help` lists the commands.\n"
        meant = list(dict.fromkeys(spec for p, spec in paths.items() if p[0] == near[0]))
        head = f"Unknown command `/{t} {first}` — did you mean `/{t} {near[0]}`?"
        return "\n".join([head, *(self._help_line(s) for s in meant)]) + "\n"

    def _visible(self, is_admin: bool, unavailable: Collection[str]) -> list[CommandSpec[Ctx, R]]:
        off = {w.lower() for w in unavailable}
        return [
            s
            for s in self._specs
            if not s.hidden and (is_admin or not s.admin) and not off & {p.split()[0] for p in s.paths}
        ]

    # -- help ---------------------------------------------------------------------------------

    def help_text(self, is_admin: bool, extra: str = "", unavailable: Collection[str] = ()) -> str:
        """Markdown help in the plugin's style; admin commands only for admins, hidden never,
        nor those whose first word is `unavailable` (a feature this bot has not configured)."""
        shown = self._visible(is_admin, unavailable)
        common = [self._help_line(s) for s in shown if not s.admin]
        lines = ["###### Jira slash commands"]
        if extra.strip():
            lines += [extra.strip(), ""]
        lines += common
        if is_admin:
            admin = [self._help_line(s) for s in shown if s.admin]
            if admin:
                lines += ["", "###### For system administrators:", *admin]
        return "\n".join(lines) + "\n"

    def _help_line(self, spec: CommandSpec[Ctx, R]) -> str:
        shown, others = self._display_name(spec)
        command = f"/{self.trigger} {shown}" + (f" {spec.usage}" if spec.usage else "")
        line = f"* `{command}` - {spec.help}"
        if others:
            line += " (also " + ", ".join(f"`/{self.trigger} {a}`" for a in others) + ")"
        return line

    @staticmethod
    def _display_name(spec: CommandSpec[Any, Any]) -> tuple[str, list[str]]:
        """`[issue] view` when one alias is the name with a group word before or without it,
        as the plugin writes it; the remaining aliases are listed after the help."""
        name = spec.name.split()
        others = list(spec.aliases)
        for alias in spec.aliases:
            words = alias.split()
            if words[1:] == name:
                others.remove(alias)
                return f"[{words[0]}] {spec.name}", others
            if name[1:] == words:
                others.remove(alias)
                return f"[{name[0]}] {alias}", others
        return spec.name, others

    # -- autocomplete -------------------------------------------------------------------------

    def autocomplete(
        self,
        *,
        help_text: str = "Connect to and interact with Jira",
        hint: str = "[command]",
        instance_fetch_url: str | None = None,
    ) -> dict[str, Any]:
        """Mattermost's `model.AutocompleteData` (as JSON) for every visible name and alias.

        Mattermost refuses a command with both arguments and subcommands and optional positional
        text arguments, so a command that also starts longer commands offers only those, and
        optional free-text arguments appear in the hint only. With `instance_fetch_url`, the
        `--instance` argument is a dynamic list fetched from it, else free text.
        """
        root = _Node(self.trigger)
        for spec in self._specs:
            if spec.hidden:
                continue
            for path in spec.paths:
                node = root
                for word in path.split():
                    node = node.children.setdefault(word, _Node(word))
                node.spec = spec
        data = self._autocomplete_node(root, instance_fetch_url)
        data["HelpText"] = help_text
        data["Hint"] = hint
        data["RoleID"] = ROLE_SYSTEM_USER
        return data

    def _autocomplete_node(self, node: _Node, fetch_url: str | None) -> dict[str, Any]:
        spec = node.spec
        if node.children:
            subcommands = [self._autocomplete_node(c, fetch_url) for c in node.children.values()]
            return {
                "Trigger": node.word,
                "Hint": "[" + "|".join(node.children) + "]",
                "HelpText": spec.help if spec is not None else self._group_help.get(node.word, ""),
                "RoleID": (
                    ROLE_SYSTEM_USER
                    if any(s["RoleID"] == ROLE_SYSTEM_USER for s in subcommands)
                    or (spec is not None and not spec.admin)
                    else ROLE_SYSTEM_ADMIN
                ),
                "Arguments": [],
                "SubCommands": subcommands,
            }
        assert spec is not None  # a leaf is always where a command ends
        return {
            "Trigger": node.word,
            "Hint": spec.usage,
            "HelpText": spec.help,
            "RoleID": ROLE_SYSTEM_ADMIN if spec.admin else ROLE_SYSTEM_USER,
            "Arguments": list(_autocomplete_args(spec, fetch_url)),
            "SubCommands": [],
        }


def _autocomplete_args(spec: CommandSpec[Any, Any], fetch_url: str | None) -> Iterator[dict[str, Any]]:
    for arg in spec.args:
        if arg.choices:
            yield {
                "Name": "",
                "HelpText": arg.help,
                "Type": "StaticList",
                "Required": arg.required,
                "Data": {
                    "PossibleArguments": [
                        {"Item": c.item, "Hint": "", "HelpText": c.help} for c in arg.choices
                    ]
                },
            }
        elif arg.required:
            yield {
                "Name": "",
                "HelpText": arg.help,
                "Type": "TextInput",
                "Required": True,
                "Data": {"Hint": arg.hint, "Pattern": ""},
            }
        else:
            # Positional text that may be left out cannot be described to Mattermost, and
            # nothing after it could be positional either.
            break
    if spec.instance_option:
        # Named arguments are typed as --instance VALUE, exactly what dispatch accepts.
        if fetch_url:
            yield {
                "Name": "instance",
                "HelpText": "Jira URL or alias",
                "Type": "DynamicList",
                "Required": False,
                "Data": {"FetchURL": fetch_url},
            }
        else:
            yield {
                "Name": "instance",
                "HelpText": "Jira URL or alias",
                "Type": "TextInput",
                "Required": False,
                "Data": {"Hint": "URL|alias", "Pattern": ""},
            }
