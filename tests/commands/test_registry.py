"""The command registry: dispatch by longest prefix, quoting, --instance, help and autocomplete."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest

from bot.commands.registry import (
    Arg,
    Choice,
    CommandRegistry,
    Help,
    Match,
    UsageError,
    split_instance_option,
    tokenize,
)


@dataclass(frozen=True)
class Ctx:
    args: tuple[str, ...] = ()


def build_registry() -> CommandRegistry[Ctx, str]:
    """A registry shaped like the real `/jira` command set."""
    reg: CommandRegistry[Ctx, str] = CommandRegistry("jira")
    reg.group("issue", help="View and manage Jira issues")
    reg.group("instance", help="Manage Jira instances")

    @reg.command("help", help="Show this help")
    async def help_(ctx: Ctx) -> str:
        return "help"

    @reg.command("me", help="Display your connections", aliases=("info",))
    async def me(ctx: Ctx) -> str:
        return "me"

    @reg.command(
        "connect",
        help="Connect your Mattermost account to your Jira account",
        usage="[jira-url]",
        aliases=("instance connect",),
        args=(Arg("Jira URL or alias", required=False),),
    )
    async def connect(ctx: Ctx) -> str:
        return "connect"

    @reg.command(
        "view",
        help="View the details of a specific Jira issue",
        usage="KEY",
        aliases=("issue view",),
        args=(Arg("Jira issue key", hint="ABC-123"),),
        instance_option=True,
    )
    async def view(ctx: Ctx) -> str:
        return "view " + " ".join(ctx.args)

    @reg.command(
        "issue transition",
        help="Change the state of a Jira issue",
        usage="KEY STATE…",
        aliases=("transition",),
        args=(Arg("Jira issue key"), Arg("To state")),
        instance_option=True,
    )
    async def transition(ctx: Ctx) -> str:
        return "transition"

    @reg.command("create", help="Create a Jira issue", usage="[summary]")
    async def create(ctx: Ctx) -> str:
        return "create"

    @reg.command(
        "settings",
        help="View or update your settings",
        aliases=("settings list", "instance settings"),
        instance_option=True,
    )
    async def settings(ctx: Ctx) -> str:
        return "settings"

    @reg.command(
        "settings notifications",
        help="Turn notifications on or off",
        usage="assignee|mention|reporter|watching on|off",
        args=(
            Arg(
                "notification",
                choices=(Choice("assignee"), Choice("mention"), Choice("reporter"), Choice("watching")),
            ),
            Arg("value", choices=(Choice("on", "Turn notifications on"), Choice("off", "Turn them off"))),
        ),
        instance_option=True,
    )
    async def notifications(ctx: Ctx) -> str:
        return "notifications"

    @reg.command("instance list", help="List installed Jira instances", admin=True)
    async def instance_list(ctx: Ctx) -> str:
        return "instances"

    @reg.command("webhook", help="Show the webhook URLs", admin=True, instance_option=True)
    async def webhook(ctx: Ctx) -> str:
        return "webhook"

    @reg.command("debug", help="Internal diagnostics", admin=True, hidden=True)
    async def debug(ctx: Ctx) -> str:
        return "debug"

    return reg


@pytest.fixture(scope="module")
def registry() -> CommandRegistry[Ctx, str]:
    return build_registry()


# -- tokenizing -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("view ABC-1", ["view", "ABC-1"]),
        ("  view   ABC-1  ", ["view", "ABC-1"]),
        ('transition ABC-1 "In Progress"', ["transition", "ABC-1", "In Progress"]),
        ("transition ABC-1 'In Progress'", ["transition", "ABC-1", "In Progress"]),
        ("transition ABC-1 “In Progress”", ["transition", "ABC-1", "In Progress"]),
        ("assign ABC-1 O'Brien", ["assign", "ABC-1", "O'Brien"]),
        ("assign ABC-1 'Ann O'Brien'", ["assign", "ABC-1", "Ann O'Brien"]),
        ('view "ABC-1', ["view", '"ABC-1']),
        ("assign ABC-1 'tis me", ["assign", "ABC-1", "'tis", "me"]),
        ('create "half quoted"suffix', ["create", '"half', 'quoted"suffix']),
        ('create ""', ["create", ""]),
        ("", []),
    ],
)
def test_tokenize(text: str, words: list[str]) -> None:
    assert tokenize(text) == words


# -- dispatch ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "name", "args", "instance"),
    [
        ("view ABC-1", "view", ("ABC-1",), None),
        ("issue view ABC-1", "view", ("ABC-1",), None),
        ("ISSUE View abc-1", "view", ("abc-1",), None),
        ("/jira view ABC-1", "view", ("ABC-1",), None),
        ("info", "me", (), None),
        ("me", "me", (), None),
        ("instance connect https://acme.atlassian.net", "connect", ("https://acme.atlassian.net",), None),
        ("transition ABC-1 in progress", "issue transition", ("ABC-1", "in", "progress"), None),
        ('issue transition ABC-1 "In Progress"', "issue transition", ("ABC-1", "In Progress"), None),
        # The longest prefix wins over a shorter command that would take the rest as arguments.
        ("settings notifications mention on", "settings notifications", ("mention", "on"), None),
        ("settings list", "settings", (), None),
        ("settings", "settings", (), None),
        ("instance settings", "settings", (), None),
        ("settings other", "settings", ("other",), None),
        ("view --instance https://jira.corp ABC-1", "view", ("ABC-1",), "https://jira.corp"),
        ("view ABC-1 --instance=acme", "view", ("ABC-1",), "acme"),
        ("--instance acme view ABC-1", "view", ("ABC-1",), "acme"),
        ("transition ABC-1 --INSTANCE acme Done", "issue transition", ("ABC-1", "Done"), "acme"),
        # A command without the option keeps its words verbatim.
        ("create fix the --instance flag", "create", ("fix", "the", "--instance", "flag"), None),
        ("create support --instance", "create", ("support", "--instance"), None),
        ("instance list", "instance list", (), None),
        ("debug", "debug", (), None),
    ],
)
def test_dispatch(
    registry: CommandRegistry[Ctx, str], text: str, name: str, args: tuple[str, ...], instance: str | None
) -> None:
    match = registry.dispatch_target(text)
    assert match is not None
    assert (match.spec.name, match.args, match.instance) == (name, args, instance)


def test_dispatch_keeps_the_words_that_named_the_command(registry: CommandRegistry[Ctx, str]) -> None:
    match = registry.dispatch_target("Issue VIEW ABC-1")
    assert match is not None
    assert match.words == ("Issue", "VIEW")


@pytest.mark.parametrize("text", ["", "   ", "frobnicate", "issue", "instance", "views ABC-1", "/jira"])
def test_unknown_input_matches_nothing(registry: CommandRegistry[Ctx, str], text: str) -> None:
    assert registry.dispatch_target(text) is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("view ABC-1 --instance", "`--instance` needs a Jira URL or alias."),
        ("view ABC-1 --instance=", "`--instance` needs a Jira URL or alias."),
        ("view --instance a --instance b ABC-1", "`--instance` was given twice (a, b)."),
    ],
)
def test_malformed_instance_option(registry: CommandRegistry[Ctx, str], text: str, message: str) -> None:
    with pytest.raises(UsageError) as raised:
        registry.dispatch_target(text)
    assert raised.value.message == message


@pytest.mark.parametrize(
    ("args", "instance", "rest"),
    [
        ([], None, []),
        (["ABC-1", "Done"], None, ["ABC-1", "Done"]),
        (["--instance", "acme", "ABC-1"], "acme", ["ABC-1"]),
        (["ABC-1", "--instance", "acme"], "acme", ["ABC-1"]),
        (["ABC-1", "--instance=https://x.example", "Done"], "https://x.example", ["ABC-1", "Done"]),
        (["--instance=acme", "--instance", "acme"], "acme", []),
    ],
)
def test_split_instance_option(args: list[str], instance: str | None, rest: list[str]) -> None:
    assert split_instance_option(args) == (instance, rest)


def test_resolve_or_help(registry: CommandRegistry[Ctx, str]) -> None:
    match = registry.resolve_or_help("view ABC-1", is_admin=False)
    assert isinstance(match, Match)
    assert match.spec.name == "view"

    unknown = registry.resolve_or_help("frobnicate the widgets", is_admin=False)
    assert unknown == Help("Unknown command `/jira frobnicate` — `/jira help` lists the commands.\n")

    admin_unknown = registry.resolve_or_help("", is_admin=True, extra="Ask #jira-help")
    assert admin_unknown == Help(registry.help_text(True, "Ask #jira-help"))

    malformed = registry.resolve_or_help("view --instance", is_admin=False)
    assert isinstance(malformed, Help)
    assert malformed.text == "`--instance` needs a Jira URL or alias.\n\n" + registry.help_text(False)


@pytest.mark.parametrize(
    ("text", "is_admin", "expected"),
    [
        (
            "veiw ABC-1",
            False,
            "Unknown command `/jira veiw` — did you mean `/jira view`?\n"
            "* `/jira [issue] view KEY` - View the details of a specific Jira issue\n",
        ),
        (
            "issue vew ABC-1",
            False,
            "Unknown subcommand `vew` of `/jira issue` — did you mean `/jira issue view`?\n"
            "* `/jira [issue] view KEY` - View the details of a specific Jira issue\n",
        ),
        (
            "instance bogus",
            True,
            "Unknown subcommand `bogus` of `/jira instance`; it has these:\n"
            "* `/jira [instance] connect [jira-url]` - Connect your Mattermost account to your Jira account\n"
            "* `/jira [instance] settings` - View or update your settings (also `/jira settings list`)\n"
            "* `/jira instance list` - List installed Jira instances\n",
        ),
        (
            "issue",
            False,
            "`/jira issue` needs a subcommand:\n"
            "* `/jira [issue] view KEY` - View the details of a specific Jira issue\n"
            "* `/jira [issue] transition KEY STATE…` - Change the state of a Jira issue\n",
        ),
        # Admin commands are neither suggested nor listed to other users.
        ("webhok", False, "Unknown command `/jira webhok` — `/jira help` lists the commands.\n"),
        (
            "webhok",
            True,
            "Unknown command `/jira webhok` — did you mean `/jira webhook`?\n"
            "* `/jira webhook` - Show the webhook URLs\n",
        ),
    ],
)
def test_unknown_commands_name_the_closest_one_and_its_help_line(
    registry: CommandRegistry[Ctx, str], text: str, is_admin: bool, expected: str
) -> None:
    assert registry.resolve_or_help(text, is_admin=is_admin) == Help(expected)


def test_unavailable_groups_leave_help_and_suggestions() -> None:
    reg: CommandRegistry[Ctx, str] = CommandRegistry("jira")

    @reg.command("change list", help="List the change gate's gates")
    async def change_list(ctx: Ctx) -> str:
        return "change"

    @reg.command("view", help="View an issue")
    async def view(ctx: Ctx) -> str:
        return "view"

    assert "change list" in reg.help_text(False)
    assert "change" not in reg.help_text(False, unavailable=("change",))
    assert reg.resolve_or_help("chnage list", is_admin=False, unavailable=("change",)) == Help(
        "Unknown command `/jira chnage` — `/jira help` lists the commands.\n"
    )
    assert reg.resolve_or_help("change bogus", is_admin=False, unavailable=("change",)) == Help(
        "`/jira change` is not configured on this bot. `/jira help` lists the commands.\n"
    )


async def test_decorator_returns_the_handler_unchanged(registry: CommandRegistry[Ctx, str]) -> None:
    match = registry.dispatch_target("issue view ABC-1 ABC-2")
    assert match is not None
    assert await match.spec.handler(Ctx(args=match.args)) == "view ABC-1 ABC-2"

    reg: CommandRegistry[Ctx, str] = CommandRegistry()

    async def about(ctx: Ctx) -> str:
        return "about"

    assert reg.command("about", help="About")(about) is about


def test_a_name_or_alias_cannot_be_registered_twice() -> None:
    reg = build_registry()

    async def other(ctx: Ctx) -> str:
        return "other"

    with pytest.raises(ValueError, match="registered twice"):
        reg.command("Issue  View", help="again")(other)
    with pytest.raises(ValueError, match="registered twice"):
        reg.command("about", help="About", aliases=("info",))(other)
    # A refused registration leaves nothing behind.
    assert reg.dispatch_target("about") is None


# -- help -------------------------------------------------------------------------------------


def test_help_text_in_the_plugin_style() -> None:
    reg: CommandRegistry[Ctx, str] = CommandRegistry("jira")

    async def handler(ctx: Ctx) -> str:
        return ""

    reg.command(
        "view", help="View the details of a specific Jira issue", usage="KEY", aliases=("issue view",)
    )(handler)
    reg.command("me", help="Display your connections", aliases=("info",))(handler)
    reg.command("instance list", help="List installed Jira instances", admin=True)(handler)
    reg.command("debug", help="Diagnostics", hidden=True)(handler)

    assert reg.help_text(is_admin=False) == (
        "###### Jira slash commands\n"
        "* `/jira [issue] view KEY` - View the details of a specific Jira issue\n"
        "* `/jira me` - Display your connections (also `/jira info`)\n"
    )
    assert reg.help_text(is_admin=True, extra="Questions? Ask in ~jira-help.") == (
        "###### Jira slash commands\n"
        "Questions? Ask in ~jira-help.\n"
        "\n"
        "* `/jira [issue] view KEY` - View the details of a specific Jira issue\n"
        "* `/jira me` - Display your connections (also `/jira info`)\n"
        "\n"
        "###### For system administrators:\n"
        "* `/jira instance list` - List installed Jira instances\n"
    )


def test_help_text_admin_part_only_for_admins(registry: CommandRegistry[Ctx, str]) -> None:
    user_help = registry.help_text(is_admin=False)
    admin_help = registry.help_text(is_admin=True)
    assert "`/jira instance list`" not in user_help
    assert "`/jira webhook`" not in user_help
    assert "For system administrators" not in user_help
    assert "* `/jira instance list` - List installed Jira instances" in admin_help
    assert admin_help.startswith(user_help.rstrip("\n"))
    for text in (user_help, admin_help):
        assert "debug" not in text
        assert "* `/jira [issue] transition KEY STATE…` - Change the state of a Jira issue" in text
        assert "* `/jira [instance] connect [jira-url]` - Connect your Mattermost account" in text
        assert (
            "* `/jira [instance] settings` - View or update your settings (also `/jira settings list`)"
            in text
        )


def test_blank_extra_help_adds_nothing(registry: CommandRegistry[Ctx, str]) -> None:
    assert registry.help_text(False, "  \n") == registry.help_text(False)


# -- autocomplete -----------------------------------------------------------------------------


def assert_valid_autocomplete(data: dict[str, Any]) -> None:
    """The rules Mattermost's AutocompleteData.IsValid applies when a command is registered."""
    assert data["Trigger"] and data["Trigger"] == data["Trigger"].lower()
    assert data["RoleID"] in {"system_admin", "system_user", ""}
    assert not (data["Arguments"] and data["SubCommands"]), data["Trigger"]
    named_seen = False
    for arg in data["Arguments"]:
        if arg["Name"]:
            named_seen = True
        else:
            assert not named_seen, "a positional argument after a named one"
        assert arg["Type"] in {"TextInput", "StaticList", "DynamicList"}
        if arg["Type"] == "TextInput":
            assert set(arg["Data"]) == {"Hint", "Pattern"}
            assert arg["Name"] or arg["Required"], "an optional positional text argument"
        elif arg["Type"] == "StaticList":
            assert all(item["Item"] for item in arg["Data"]["PossibleArguments"])
        else:
            assert isinstance(arg["Data"]["FetchURL"], str)
    for sub in data["SubCommands"]:
        assert_valid_autocomplete(sub)


def child(data: dict[str, Any], trigger: str) -> dict[str, Any]:
    found = [s for s in data["SubCommands"] if s["Trigger"] == trigger]
    assert len(found) == 1, f"{trigger} in {[s['Trigger'] for s in data['SubCommands']]}"
    return found[0]


def test_autocomplete_is_valid_for_mattermost(registry: CommandRegistry[Ctx, str]) -> None:
    data = registry.autocomplete()
    assert_valid_autocomplete(data)
    assert json.loads(json.dumps(data)) == data
    assert (data["Trigger"], data["HelpText"], data["Hint"], data["RoleID"]) == (
        "jira",
        "Connect to and interact with Jira",
        "[command]",
        "system_user",
    )
    assert [s["Trigger"] for s in data["SubCommands"]] == [
        "help",
        "me",
        "info",
        "connect",
        "instance",
        "view",
        "issue",
        "transition",
        "create",
        "settings",
        "webhook",
    ]


def test_autocomplete_groups_and_roles(registry: CommandRegistry[Ctx, str]) -> None:
    data = registry.autocomplete()
    issue = child(data, "issue")
    assert issue["HelpText"] == "View and manage Jira issues"
    assert issue["Hint"] == "[view|transition]"
    assert issue["RoleID"] == "system_user"

    instance = child(data, "instance")
    assert instance["Hint"] == "[connect|settings|list]"
    assert instance["RoleID"] == "system_user"
    assert child(instance, "list")["RoleID"] == "system_admin"
    assert child(instance, "connect")["RoleID"] == "system_user"
    assert child(data, "webhook")["RoleID"] == "system_admin"

    # A command that also starts longer commands offers those as its subcommands.
    settings = child(data, "settings")
    assert settings["HelpText"] == "View or update your settings"
    assert [s["Trigger"] for s in settings["SubCommands"]] == ["list", "notifications"]
    assert settings["Arguments"] == []


def test_autocomplete_arguments(registry: CommandRegistry[Ctx, str]) -> None:
    data = registry.autocomplete()
    view = child(data, "view")
    assert (view["Hint"], view["HelpText"]) == ("KEY", "View the details of a specific Jira issue")
    assert view["Arguments"] == [
        {
            "Name": "",
            "HelpText": "Jira issue key",
            "Type": "TextInput",
            "Required": True,
            "Data": {"Hint": "ABC-123", "Pattern": ""},
        },
        {
            "Name": "instance",
            "HelpText": "Jira URL or alias",
            "Type": "TextInput",
            "Required": False,
            "Data": {"Hint": "URL|alias", "Pattern": ""},
        },
    ]
    assert child(child(data, "issue"), "view") == view

    notifications = child(child(data, "settings"), "notifications")
    value = notifications["Arguments"][1]
    assert value["Type"] == "StaticList"
    assert value["Data"]["PossibleArguments"] == [
        {"Item": "on", "Hint": "", "HelpText": "Turn notifications on"},
        {"Item": "off", "Hint": "", "HelpText": "Turn them off"},
    ]

    # An optional free-text argument cannot be described; the hint still shows it.
    connect = child(data, "connect")
    assert (connect["Hint"], connect["Arguments"]) == ("[jira-url]", [])


def test_autocomplete_instance_from_a_dynamic_list(registry: CommandRegistry[Ctx, str]) -> None:
    url = "https://bot.example/mattermost/autocomplete/instances"
    data = registry.autocomplete(instance_fetch_url=url, hint="[view|transition|help]")
    assert_valid_autocomplete(data)
    assert data["Hint"] == "[view|transition|help]"
    instance_arg = child(data, "transition")["Arguments"][-1]
    assert instance_arg == {
        "Name": "instance",
        "HelpText": "Jira URL or alias",
        "Type": "DynamicList",
        "Required": False,
        "Data": {"FetchURL": url},
    }


def test_autocomplete_never_shows_hidden_commands(registry: CommandRegistry[Ctx, str]) -> None:
    text = json.dumps(registry.autocomplete())
    assert '"debug"' not in text
