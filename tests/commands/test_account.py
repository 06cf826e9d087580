"""help, me, about, connect, disconnect, settings."""

from __future__ import annotations

from urllib.parse import parse_qs, urlparse

from bot.names import unknown_instance
from tests.commands.conftest import Harness


async def test_help_shows_admin_part_only_to_admins(harness: Harness) -> None:
    user = (await harness.command("alice", "help"))["text"]
    admin = (await harness.command("admin", "help"))["text"]
    assert "connect" in user and "disconnect" in user
    assert "For system administrators" not in user
    assert "For system administrators" in admin


async def test_unknown_input_names_the_closest_command(harness: Harness) -> None:
    answer = await harness.command("alice", "frobnicate now")
    assert answer["response_type"] == "ephemeral"
    assert answer["text"] == "Unknown command `/jira frobnicate` — `/jira help` lists the commands.\n"
    typo = (await harness.command("alice", "viwe ABC-1"))["text"]
    assert typo.startswith("Unknown command `/jira viwe` — did you mean `/jira view`?\n* `/jira [issue] view")
    assert "Jira slash commands" not in typo
    # The admin part is suggested to admins only.
    admin = (await harness.command("admin", "instance bogus"))["text"]
    assert admin.startswith("Unknown subcommand `bogus` of `/jira instance`")
    assert "/jira instance install" in admin


async def test_help_lists_change_commands_only_with_a_gate(harness: Harness) -> None:
    assert harness.services.commands is not None and harness.services.commands.deps.gate is None
    assert "/jira change" not in (await harness.command("alice", "help"))["text"]
    answer = (await harness.command("alice", "change bogus"))["text"]
    assert answer.startswith("`/jira change` is not configured on this bot.")


async def test_admin_command_refused_to_a_user(harness: Harness) -> None:
    answer = await harness.command("alice", "instance list")
    assert "system admins" in answer["text"]


async def test_me_before_and_after_connecting(harness: Harness) -> None:
    assert "not connected" in (await harness.command("alice", "me"))["text"]
    jira_alice = harness.server.add_user("Alice Liddell", name="alice", email="alice@example.com")
    await harness.connect_server("alice", jira_alice)
    text = (await harness.command("alice", "info"))["text"]
    assert "Alice Liddell" in text and "dc" in text


async def test_about(harness: Harness) -> None:
    assert "jira-chatops" in (await harness.command("alice", "about"))["text"]


async def test_connect_cloud_gives_a_one_time_link(harness: Harness) -> None:
    answer = await harness.command("alice", "connect cloud")
    assert "Click here to link your Jira account" in answer["text"]
    link = answer["text"].split("](", 1)[1].rstrip(")")
    assert link.startswith(harness.bot_url + "/oauth/jira/connect?")
    assert parse_qs(urlparse(link).query)["state"][0]


async def test_connect_with_several_instances_and_no_choice_says_how_to_choose(harness: Harness) -> None:
    text = (await harness.command("alice", "connect"))["text"]
    assert "--instance" in text and "cloud" in text and "dc" in text


async def test_connect_unknown_instance(harness: Harness) -> None:
    # The sentence and did-you-mean every entry point gives for an unknown instance.
    sentence = (
        "There is no Jira instance `clod` (did you mean `cloud`?). Known instances: "
        f"`cloud` ({harness.cloud_url}), `dc` ({harness.server_url})."
    )
    known = [i.known for i in harness.services.instances.all()]
    assert unknown_instance("clod", known) == sentence
    assert (await harness.command("alice", "connect --instance clod"))["text"] == sentence
    assert (await harness.command("alice", "connect clod"))["text"] == sentence
    # URL or alias, in any case.
    answer = await harness.command("alice", f"connect {harness.cloud_url.upper()}/")
    assert "Click here to link your Jira account" in answer["text"]


async def test_connect_server_with_a_personal_access_token_dialog(harness: Harness) -> None:
    jira_bob = harness.server.add_user("Bob Builder", name="bob", email="bob@example.com")
    harness.server.add_token("good-token", jira_bob)
    answer = await harness.command("bob", "instance connect dc")
    assert answer["text"].endswith(
        "connects with a personal access token: paste yours in the form that opened."
    )
    opened = harness.mm.dialogs[-1]
    assert opened["dialog"]["elements"][0]["subtype"] == "password"

    status, body = await harness.submit("bob", {"token": "wrong"})
    assert status == 200 and "refused these credentials" in body["errors"]["token"]
    status, body = await harness.submit("bob", {"token": "good-token"})
    assert status == 200 and body == {}
    assert "Bob Builder" in (await harness.command("bob", "me"))["text"]
    assert any("now connected" in p["message"] for p in harness.mm.posts)

    again = await harness.command("bob", "connect dc")
    assert "already have a Jira account linked" in again["text"]


async def test_a_dialog_state_cannot_be_submitted_by_someone_else(harness: Harness) -> None:
    await harness.command("bob", "connect dc")
    status, _ = await harness.submit("alice", {"token": "whatever"})
    assert status == 403


async def test_disconnect(harness: Harness) -> None:
    jira_alice = harness.server.add_user("Alice Liddell", name="alice")
    await harness.connect_server("alice", jira_alice)
    text = (await harness.command("alice", "disconnect dc"))["text"]
    assert "successfully disconnected" in text and "Alice Liddell" in text
    assert "not connected" in (await harness.command("alice", "disconnect dc"))["text"]


async def test_settings_and_notifications(harness: Harness) -> None:
    assert "not connected" in (await harness.command("alice", "settings --instance dc"))["text"]
    jira_alice = harness.server.add_user("Alice Liddell", name="alice")
    await harness.connect_server("alice", jira_alice)
    text = (await harness.command("alice", "settings"))["text"]
    assert "mention: **on**" in text
    changed = (await harness.command("alice", "settings notifications mention off"))["text"]
    assert "Mention notifications **off**" in changed
    assert "mention: **off**" in (await harness.command("alice", "settings list"))["text"]
    bad = (await harness.command("alice", "settings notifications loud on"))["text"]
    assert "assignee, mention, reporter, watching" in bad


async def test_wrong_token_is_401(harness: Harness) -> None:
    form = harness.mm.slash_form(harness.user("alice"), harness.channels["dev"], "help", "not-the-token")
    async with harness.http.post(
        harness.bot_url + "/mattermost/command", data=form.body, headers=form.headers
    ) as r:
        assert r.status == 401


async def test_site_default_instance_is_used_when_nothing_else_decides(harness: Harness) -> None:
    assert "--instance" in (await harness.command("alice", "connect"))["text"]
    await harness.command("admin", "instance default dc")
    answer = (await harness.command("alice", "connect"))["text"]
    assert harness.mm.dialogs and harness.mm.dialogs[-1]["dialog"]["title"] == "Connect to Jira"
    # A sentence beside the form, never an empty answer.
    assert answer.endswith("connects with a personal access token: paste yours in the form that opened.")


async def test_autocomplete_comes_from_the_command_registry(harness: Harness) -> None:
    async with harness.http.get(harness.bot_url + "/mattermost/command/autocomplete") as r:
        assert r.status == 200 and r.headers["Content-Type"] == "application/json"
        tree = await r.json()
    assert tree["Trigger"] == "jira"
    triggers = {sub["Trigger"] for sub in tree["SubCommands"]}
    assert {"connect", "view", "transition", "subscribe", "help"} <= triggers


async def test_the_token_form_sent_again_is_refused_and_connects_once(harness: Harness) -> None:
    jira_bob = harness.server.add_user("Bob Builder", name="bob", email="bob@example.com")
    harness.server.add_token("good-token", jira_bob)
    await harness.command("bob", "connect dc")
    status, body = await harness.submit("bob", {"token": "wrong"})
    assert "refused these credentials" in body["errors"]["token"]  # corrected below, same form
    assert await harness.submit("bob", {"token": "good-token"}) == (200, {})
    checks = len(harness.server.requests_to("/rest/api/2/myself"))

    status, body = await harness.submit("bob", {"token": "good-token"})
    assert (status, body) == (200, {"error": "This form has already been submitted."})
    assert len(harness.server.requests_to("/rest/api/2/myself")) == checks
    assert len([p for p in harness.mm.posts if "now connected" in p["message"]]) == 1
