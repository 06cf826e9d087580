"""subscribe list, show, add, edit, remove: permissions, the dialog, the one-line form, routing."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from bot.routing.model import Subscription, SubscriptionFilters
from tests.commands.conftest import COMMAND_TOKEN, Harness

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "issue-created.json"
ONE_LINE = (
    'subscribe add "Bugs in WEB" projects=WEB events=event_created,event_updated_status '
    'issue_types=Bug fields="priority include_any High,Highest"'
)


def allow(harness: Harness, role: str = "users", groups: tuple[str, ...] = ()) -> None:
    """Run the bot with these subscription permission settings from now on."""
    deps = harness.services.commands.deps  # type: ignore[union-attr]
    commands = deps.settings.commands.model_copy(
        update={"subscription_role": role, "subscription_jira_groups": groups}
    )
    deps.settings = deps.settings.model_copy(update={"commands": commands})


async def connect(harness: Harness, mm_user: str, *, groups: tuple[str, ...] = ()) -> None:
    jira_user = harness.cloud.add_user(mm_user.capitalize(), email=f"{mm_user}@example.com", groups=groups)
    await harness.connect_cloud(mm_user, jira_user)


@pytest.fixture
async def h(harness: Harness) -> Harness:
    """Alice, connected to Jira Cloud, where WEB is readable by everyone and SECRET by nobody she knows."""
    harness.cloud.add_project("WEB", "Web Site", issue_types=("Bug", "Story"))
    harness.cloud.add_project("SECRET", browse=())
    await connect(harness, "alice")
    allow(harness)
    return harness


async def stored(harness: Harness, channel: str = "dev") -> dict[str, Subscription]:
    subs = await harness.services.db.subscriptions.list_for_channel(harness.channels[channel])
    return {s.name: s for s in subs}


async def command_in(harness: Harness, mm_user: str, channel_id: str, text: str) -> dict[str, Any]:
    """`/jira text` typed in a channel that is not one of the harness's named ones (a DM, a group)."""
    form = harness.mm.slash_form(harness.user(mm_user), channel_id, text, COMMAND_TOKEN, team=harness.team)
    async with harness.http.post(
        harness.bot_url + "/mattermost/command", data=form.body, headers=form.headers
    ) as r:
        assert r.status == 200
        answer: dict[str, Any] = await r.json()
    return answer


# -- the one-line form ---------------------------------------------------------------------------


async def announced(h: Harness, text: str, channel_id: str | None = None) -> None:
    """Wait (up to 30 s) for a post containing `text`: announcements go through the delivery queue."""
    deadline = asyncio.get_running_loop().time() + 30
    while not any(
        text in p["message"] and (channel_id is None or p["channel_id"] == channel_id) for p in h.mm.posts
    ):
        assert asyncio.get_running_loop().time() < deadline, f"no post with {text!r}"
        await asyncio.sleep(0.05)


async def test_one_line_add_stores_announces_and_lists(h: Harness) -> None:
    answer = await h.command("alice", ONE_LINE)
    assert answer["response_type"] == "in_channel"
    assert answer["text"] == "@alice added the subscription **Bugs in WEB** to this channel."

    sub = (await stored(h))["Bugs in WEB"]
    assert sub.instance_id == h.cloud_url and sub.created_by == h.user("alice")
    assert sub.filters.projects == {"WEB"} and sub.filters.issue_types == {"Bug"}
    assert sub.filters.events == {"event_created", "event_updated_status"}
    assert [(f.key, f.values) for f in sub.filters.fields] == [("priority", ("High", "Highest"))]

    listed = await h.command("alice", "subscribe list")
    assert listed["response_type"] == "ephemeral"
    assert "**Bugs in WEB**: projects WEB; events event_created, event_updated_status" in listed["text"]
    assert "on cloud" in listed["text"]  # two instances are installed, so each line says which

    shown = (await h.command("alice", 'subscribe show "bugs in web"'))["text"]
    assert "* Issue types: Bug" in shown and "`priority include_any High,Highest`" in shown
    assert "Added by @alice" in shown
    assert (
        '/jira subscribe edit "Bugs in WEB" projects=WEB events=event_created,event_updated_status' in shown
    )
    assert "no Jira subscriptions" in (await h.command("alice", "subscribe list", channel="ops"))["text"]


async def test_one_line_errors_name_the_field_and_the_choices(h: Harness) -> None:
    bad_event = (await h.command("alice", "subscribe add X projects=WEB events=event_create"))["text"]
    assert "`events`" in bad_event and "did you mean `event_created`?" in bad_event
    assert "event_updated_any" in bad_event

    bad_filter = (
        await h.command(
            "alice", 'subscribe add X projects=WEB events=event_created fields="priority is High"'
        )
    )["text"]
    assert (
        "`fields`" in bad_filter
        and "include_any, include_all, exclude_any, empty, include_or_empty" in bad_filter
    )

    no_projects = (await h.command("alice", "subscribe add X events=event_created"))["text"]
    assert "`projects`" in no_projects
    no_name = (await h.command("alice", "subscribe add projects=WEB events=event_created"))["text"]
    assert "`name`" in no_name
    unknown = (await h.command("alice", "subscribe add X project=WEB when=now"))["text"]
    assert "`when`" in unknown and "projects, events, issue_types, fields" in unknown
    assert await stored(h) == {}


async def test_unreadable_project_is_refused(h: Harness) -> None:
    text = (await h.command("alice", "subscribe add Secrets projects=SECRET,WEB events=event_created"))[
        "text"
    ]
    assert "cannot read SECRET" in text and "Projects you can read: WEB" in text
    nothing = (await h.command("alice", "subscribe add Nope projects=NOPE events=event_created"))["text"]
    assert "cannot read NOPE" in nothing
    assert await stored(h) == {}


async def test_names_are_unique_per_channel_ignoring_case(h: Harness) -> None:
    await h.command("alice", "subscribe add Web projects=WEB events=event_created")
    again = (await h.command("alice", "subscribe add WEB projects=WEB events=event_deleted"))["text"]
    assert "already has a subscription named **WEB**" in again
    # Another channel may use the same name.
    other = await h.command("alice", "subscribe add Web projects=WEB events=event_created", channel="ops")
    assert other["response_type"] == "in_channel"


async def test_one_line_edit_changes_only_what_is_given_and_can_rename(h: Harness) -> None:
    await h.command("alice", ONE_LINE)
    answer = await h.command("alice", 'subscribe edit "Bugs in WEB" events=event_deleted name="Web bugs"')
    assert answer["response_type"] == "in_channel"
    assert (
        "changed the subscription **Bugs in WEB** of this channel (now named **Web bugs**)" in answer["text"]
    )
    sub = (await stored(h))["Web bugs"]
    assert sub.filters.events == {"event_deleted"} and sub.filters.issue_types == {"Bug"}

    bad = (await h.command("alice", "subscribe edit Web bugs projects=SECRET"))["text"]
    assert "cannot read SECRET" in bad
    missing = (await h.command("alice", "subscribe edit Nothing events=event_created"))["text"]
    assert "no subscription named **Nothing**" in missing and "**Web bugs**" in missing


async def test_remove_announces_and_forgets(h: Harness) -> None:
    await h.command("alice", ONE_LINE)
    answer = await h.command("alice", "subscribe remove Bugs in WEB")
    assert answer["response_type"] == "in_channel"
    assert answer["text"] == "@alice removed the subscription **Bugs in WEB** from this channel."
    assert await stored(h) == {}
    again = (await h.command("alice", "subscribe remove Bugs in WEB"))["text"]
    assert "no subscription named" in again
    assert "Name the subscription" in (await h.command("alice", "subscribe remove"))["text"]


async def test_subscriptions_from_the_config_file_are_read_only(h: Harness) -> None:
    sub = Subscription(
        id="cfg-1",
        name="From config",
        channel_id=h.channels["dev"],
        instance_id=h.cloud_url,
        filters=SubscriptionFilters(projects={"WEB"}, events={"event_created"}),
        created_by="config",
    )
    await h.services.db.subscriptions.upsert(sub, source="config", now=h.services.intake._clock())
    assert "from the configuration file" in (await h.command("alice", "subscribe list"))["text"]
    for text in ("subscribe edit From config events=event_deleted", "subscribe remove From config"):
        assert "declared in the bot's configuration file" in (await h.command("alice", text))["text"]


async def test_bare_subscribe_lists_and_unknown_words_show_usage(h: Harness) -> None:
    assert "no Jira subscriptions" in (await h.command("alice", "subscribe"))["text"]
    usage = (await h.command("alice", "subscribe frobnicate"))["text"]
    assert "`/jira subscribe list`" in usage and "projects=WEB" in usage


# -- the dialog ----------------------------------------------------------------------------------


def dialog_fields(**overrides: str) -> dict[str, str]:
    fields = {
        "name": "Bugs in WEB",
        "projects": "web",
        "issue_types": "Bug",
        "events": "event_created, event_updated_status",
        "fields": "priority include_any High,Highest",
    }
    fields.update(overrides)
    return fields


async def test_dialog_add_announces_and_routes_the_next_webhook(h: Harness) -> None:
    answer = await h.command("alice", "subscribe add")
    assert answer.get("text", "") == ""
    opened = h.mm.dialogs[-1]["dialog"]
    assert opened["title"] == "Add subscription"
    assert [e["name"] for e in opened["elements"]] == [
        "name",
        "projects",
        "issue_types",
        "events",
        "fields",
        "jql",
        "jql_check",
    ]
    assert "event_updated_customfield_NNNNN" in opened["introduction_text"]

    status, body = await h.submit("alice", dialog_fields(fields="priority include_any High,Highest,Medium"))
    assert (status, body) == (200, {})
    dev = h.channels["dev"]
    # Announced through the delivery queue, by the worker.
    await announced(h, "@alice added the subscription **Bugs in WEB** to this channel.", dev)
    assert (await stored(h))["Bugs in WEB"].filters.projects == {"WEB"}

    # Routing picked the new subscription up: a webhook on the firehose reaches the channel.
    payload = EXAMPLE.read_text().replace("https://acme.atlassian.net", h.cloud_url)
    async with h.http.post(
        h.bot_url + "/plugins/jira/api/v2/webhook?secret=webhook-secret",
        data=payload,
        headers={"Content-Type": "application/json"},
    ) as r:
        assert r.status == 200
    posts = await h.mm.wait_for_posts(2)
    routed = [p for p in posts if "WEB-42" in json.dumps(p)]
    assert routed and routed[0]["channel_id"] == dev


async def test_dialog_errors_are_shown_under_their_fields(h: Harness) -> None:
    await h.command("alice", "subscribe add")
    status, body = await h.submit(
        "alice", dialog_fields(name=" ", events="event_created, sometimes", fields="priority maybe High")
    )
    assert status == 200
    errors = body["errors"]
    assert set(errors) == {"name", "events", "fields"}
    assert "sometimes" in errors["events"] and "include_or_empty" in errors["fields"]

    status, body = await h.submit("alice", dialog_fields(projects=""))
    assert "projects" in body["errors"]
    status, body = await h.submit("alice", dialog_fields(projects="WEB, SECRET"))
    assert "cannot read SECRET" in body["errors"]["projects"]
    assert await stored(h) == {}

    await h.command("alice", "subscribe add Taken projects=WEB events=event_created")
    status, body = await h.submit("alice", dialog_fields(name="taken"))
    assert "already has a subscription" in body["errors"]["name"]


async def test_dialog_edit_is_prefilled_and_saves(h: Harness) -> None:
    await h.command("alice", ONE_LINE)
    await h.command("alice", "subscribe edit Bugs in WEB")
    opened = h.mm.dialogs[-1]["dialog"]
    assert opened["title"] == "Edit subscription"
    defaults = {e["name"]: e["default"] for e in opened["elements"]}
    assert defaults == {
        "name": "Bugs in WEB",
        "projects": "WEB",
        "issue_types": "Bug",
        "events": "event_created, event_updated_status",
        "fields": "priority include_any High,Highest",
        "jql": "",
        "jql_check": "local",
    }
    status, body = await h.submit("alice", {**defaults, "events": "event_created_comment", "fields": ""})
    assert (status, body) == (200, {})
    sub = (await stored(h))["Bugs in WEB"]
    assert sub.filters.events == {"event_created_comment"} and sub.filters.fields == ()
    await announced(h, "@alice changed the subscription **Bugs in WEB**")

    # Removed meanwhile: the stale dialog says so instead of recreating it.
    await h.command("alice", "subscribe edit Bugs in WEB")
    stale = h.mm.dialogs[-1]
    await h.command("alice", "subscribe remove Bugs in WEB")
    status, body = await h.submit("alice", defaults, dialog=stale)
    assert "removed meanwhile" in body["error"]


ALREADY_SUBMITTED = {"error": "This form has already been submitted."}


async def test_the_add_form_sent_again_adds_one_subscription(h: Harness) -> None:
    await h.command("alice", "subscribe add")
    answers = await asyncio.gather(*(h.submit("alice", dialog_fields()) for _ in range(3)))
    assert sorted(answers, key=lambda a: len(a[1])) == [(200, {})] + [(200, ALREADY_SUBMITTED)] * 2
    assert await h.submit("alice", dialog_fields(name="Other name")) == (200, ALREADY_SUBMITTED)
    assert list(await stored(h)) == ["Bugs in WEB"]
    await announced(h, "added the subscription")
    added = [p for p in h.mm.posts if "added the subscription" in p["message"]]
    assert len(added) == 1


async def test_the_edit_form_sent_again_changes_nothing(h: Harness) -> None:
    await h.command("alice", ONE_LINE)
    await h.command("alice", "subscribe edit Bugs in WEB")
    assert await h.submit("alice", dialog_fields(events="event_created")) == (200, {})
    # A replay carrying other values is refused; what the first one saved stays.
    replay = dialog_fields(name="Renamed", events="event_created_comment")
    assert await h.submit("alice", replay) == (200, ALREADY_SUBMITTED)
    assert (await stored(h))["Bugs in WEB"].filters.events == {"event_created"}
    await announced(h, "changed the subscription")
    assert len([p for p in h.mm.posts if "changed the subscription" in p["message"]]) == 1


async def test_dialog_submission_checks_permission_again(h: Harness) -> None:
    await h.command("alice", "subscribe add")
    allow(h, "system_admin")
    _, body = await h.submit("alice", dialog_fields())
    assert "Only Mattermost system admins" in body["error"]
    assert await stored(h) == {}


# -- permissions ---------------------------------------------------------------------------------


async def people(h: Harness) -> None:
    """carol: channel admin of dev; dave: team admin; each connected to Jira like alice and admin."""
    dev = h.channels["dev"]
    for name, channel_admin, team_admin in (("carol", True, False), ("dave", False, True)):
        uid = h.mm.add_user(name)
        h.users[name] = uid
        h.mm.add_team_member(h.team, uid, admin=team_admin)
        h.mm.add_member(dev, uid, admin=channel_admin)
        await connect(h, name)
    await connect(h, "admin")


@pytest.mark.parametrize(
    ("role", "allowed"),
    [
        ("users", {"alice", "carol", "dave", "admin"}),
        ("channel_admin", {"carol", "dave", "admin"}),
        ("team_admin", {"dave", "admin"}),
        ("system_admin", {"admin"}),
    ],
)
async def test_permission_matrix(h: Harness, role: str, allowed: set[str]) -> None:
    await people(h)
    allow(h, role)
    refusal = {
        "users": "",
        "channel_admin": "Only channel admins (and team and system admins)",
        "team_admin": "Only team admins (and system admins)",
        "system_admin": "Only Mattermost system admins",
    }[role]
    for user in ("alice", "carol", "dave", "admin"):
        answer = await h.command(user, f"subscribe add {user} projects=WEB events=event_created")
        if user in allowed:
            assert answer["response_type"] == "in_channel", (user, answer)
        else:
            assert refusal in answer["text"], (user, answer)
    assert set(await stored(h)) == allowed


async def test_default_role_is_system_admin(harness: Harness) -> None:
    harness.cloud.add_project("WEB")
    await connect(harness, "alice")
    text = (await harness.command("alice", "subscribe add X projects=WEB events=event_created"))["text"]
    assert "Only Mattermost system admins" in text


async def test_non_member_is_refused(h: Harness) -> None:
    lobby = h.mm.add_channel(h.team, "lobby")
    h.channels["lobby"] = lobby
    text = (await h.command("alice", "subscribe add X projects=WEB events=event_created", channel="lobby"))[
        "text"
    ]
    assert "not a member of this channel" in text


async def test_jira_groups_are_required_when_configured(h: Harness) -> None:
    allow(h, "users", groups=("jira-admins", "Leads"))
    text = (await h.command("alice", "subscribe add X projects=WEB events=event_created"))["text"]
    assert "one of these Jira groups" in text and "`jira-admins`" in text
    await connect(h, "bob", groups=("leads",))
    ok = await h.command("bob", "subscribe add X projects=WEB events=event_created")
    assert ok["response_type"] == "in_channel"


async def test_a_connected_account_is_required(h: Harness) -> None:
    text = (await h.command("bob", "subscribe add X projects=WEB events=event_created --instance cloud"))[
        "text"
    ]
    assert "not connected" in text and "/jira connect" in text
    assert "not connected" in (await h.command("bob", "subscribe add --instance cloud"))["text"]
    assert h.mm.dialogs == []


async def test_direct_and_group_messages_are_refused(h: Harness) -> None:
    mattermost = h.services.commands.deps.mattermost  # type: ignore[union-attr]
    with_bot = await mattermost.direct_channel(h.user("alice"))
    text = (await command_in(h, "alice", with_bot, "subscribe add X projects=WEB events=event_created"))[
        "text"
    ]
    assert "cannot be made in direct or group messages" in text
    assert (
        "cannot be made in direct or group messages"
        in (await command_in(h, "alice", with_bot, "subscribe add"))["text"]
    )

    # The fake has no API to create group messages; its own channel factory makes one with the bot in it.
    group = h.mm._insert_channel("", "group-abc", "", "G", {h.user("alice"), h.user("bob"), h.mm.bot_user_id})
    text = (await command_in(h, "alice", group, "subscribe add X projects=WEB events=event_created"))["text"]
    assert "cannot be made in direct or group messages" in text

    # A direct message between two people: the bot cannot even read the channel.
    between = h.mm._insert_channel("", "alice__bob", "", "D", {h.user("alice"), h.user("bob")})
    text = (await command_in(h, "alice", between, "subscribe add X projects=WEB events=event_created"))[
        "text"
    ]
    assert "The bot cannot see this channel" in text


# -- admins --------------------------------------------------------------------------------------


async def test_list_all_is_for_admins(h: Harness) -> None:
    await h.command("alice", "subscribe add Web projects=WEB events=event_created")
    await h.command("alice", "subscribe add Ops projects=WEB events=event_deleted", channel="ops")
    assert "system admins" in (await h.command("alice", "subscribe list all"))["text"]
    everything = (await h.command("admin", "subscribe list all"))["text"]
    assert (
        "~dev" in everything and "~ops" in everything and "**Web**" in everything and "**Ops**" in everything
    )
    here = (await h.command("admin", "subscribe list", channel="dev"))["text"]
    assert "**Web**" in here and "1 more in other channels" in here


async def test_subscription_of_an_uninstalled_instance_is_cleaned_up_by_an_admin(h: Harness) -> None:
    orphan = Subscription(
        id="orphan",
        name="Old Jira",
        channel_id=h.channels["dev"],
        instance_id="https://gone.example.com",
        filters=SubscriptionFilters(projects={"WEB"}, events={"event_created"}),
    )
    await h.services.db.subscriptions.upsert(orphan, now=h.services.intake._clock())
    edit = (await h.command("alice", "subscribe edit Old Jira events=event_deleted"))["text"]
    assert "no longer installed" in edit and "/jira subscribe remove Old Jira" in edit
    assert "system admins" in (await h.command("alice", "subscribe remove Old Jira"))["text"]
    removed = await h.command("admin", "subscribe remove Old Jira")
    assert removed["response_type"] == "in_channel" and await stored(h) == {}


# -- JQL -----------------------------------------------------------------------------------------


async def test_one_line_jql_is_stored_listed_and_replaces_projects(h: Harness) -> None:
    answer = await h.command(
        "alice",
        "subscribe add Customer events=event_created "
        "jql='project in (WEB, API) AND labels = customer AND status = \"In Progress\"'",
    )
    assert answer["text"] == "@alice added the subscription **Customer** to this channel."
    sub = (await stored(h))["Customer"]
    assert sub.filters.projects == frozenset()
    assert sub.filters.jql == 'project in (WEB, API) AND labels = customer AND status = "In Progress"'
    listed = (await h.command("alice", "subscribe list"))["text"]
    assert "JQL `project in (WEB, API) AND labels = customer" in listed
    shown = (await h.command("alice", "subscribe show Customer"))["text"]
    assert "jql='project in (WEB, API) AND labels = customer AND status = \"In Progress\"'" in shown

    await h.command("alice", 'subscribe edit Customer jql="labels = vip"')
    assert (await stored(h))["Customer"].filters.jql == "labels = vip"


async def test_one_line_jql_errors_give_the_column(h: Harness) -> None:
    broken = await h.command(
        "alice", 'subscribe add X events=event_created jql="project = WEB AND priority ="'
    )
    assert '`jql`: column 29: expected a value after "="' in broken["text"]
    remote = (await h.command("alice", 'subscribe add X events=event_created jql="watcher = ada"'))["text"]
    assert "`watcher = ada` cannot be answered by the bot" in remote
    me = await h.command("alice", 'subscribe add X events=event_created jql="assignee = currentUser()"')
    assert "currentUser()" in me["text"] and "channel subscription" in me["text"]
    assert await stored(h) == {}


async def test_dialog_jql_error_is_shown_under_the_field(h: Harness) -> None:
    await h.command("alice", "subscribe add")
    status, body = await h.submit("alice", dialog_fields(projects="", jql="labels in (a, "))
    assert status == 200
    assert body["errors"] == {"jql": 'column 14: expected a value after "IN".'}
    status, body = await h.submit("alice", dialog_fields(projects="", jql="labels = customer"))
    assert (status, body) == (200, {})
    assert (await stored(h))["Bugs in WEB"].filters.jql == "labels = customer"


async def test_subscribe_test_explains_clause_by_clause(h: Harness) -> None:
    await h.command(
        "alice",
        "subscribe add Mine events=event_created,event_updated_status jql='project = WEB AND labels = nope'",
    )
    key = h.cloud.add_issue("WEB", "Disk full", labels=["ops"])
    text = (await h.command("alice", f"subscribe test Mine {key.lower()}"))["text"]
    assert f"**{key}** would not reach **Mine**" in text
    assert "* ✔ `project = WEB` (issue: WEB)" in text
    assert "* ✖ `labels = nope`" in text
    assert "Events that would post: none." in text

    await h.command("alice", "subscribe edit Mine jql='project = WEB'")
    text = (await h.command("alice", f"subscribe test Mine {key}"))["text"]
    assert f"**{key}** would reach **Mine**" in text
    assert "Events that would post: event_created, event_updated_status." in text
    usage = (await h.command("alice", "subscribe test Mine"))["text"]
    assert "/jira subscribe test NAME WEB-42" in usage
