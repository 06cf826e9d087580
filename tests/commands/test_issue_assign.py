"""/jira assign and /jira unassign: Cloud by accountId, Server by name; me, @user, names."""

from __future__ import annotations

from typing import Any

from tests.commands.conftest import Harness


async def cloud_setup(harness: Harness, *, editors: list[str] | None = None) -> tuple[str, str]:
    """Alice connected to Cloud, project PROJ (with `editors`), one issue; (alice id, key)."""
    alice = harness.cloud.add_user("Alice Liddell", email="alice@example.com")
    await harness.connect_cloud("alice", alice)
    harness.cloud.add_project("PROJ", editors=editors)
    return alice, harness.cloud.add_issue("PROJ", "Login fails", reporter=alice)


async def server_setup(harness: Harness) -> tuple[str, str]:
    alice = harness.server.add_user("Alice Liddell", name="alice", email="alice@example.com")
    await harness.connect_server("alice", alice)
    harness.server.add_project("OPS")
    return alice, harness.server.add_issue("OPS", "Disk full", reporter=alice)


async def test_assign_by_name_on_cloud_uses_the_account_id(harness: Harness) -> None:
    _, key = await cloud_setup(harness)
    john = harness.cloud.add_user("John Smith", email="john@example.com")
    harness.cloud.add_user("Joan Smithers", email="joan@example.com")
    answer = await harness.command("alice", f"assign {key} John Smith")
    assert answer["text"] == f"`John Smith` assigned to Jira issue [{key}]({harness.cloud_url}/browse/{key})"
    assert harness.cloud.issue(key)["assignee"] == john
    assert harness.cloud.requests_to(f"/rest/api/2/issue/{key}/assignee", "PUT")[-1].body == {
        "accountId": john
    }


async def test_assign_by_name_on_server_uses_the_username(harness: Harness) -> None:
    _, key = await server_setup(harness)
    harness.server.add_user("John Smith", name="jsmith", email="john@example.com")
    answer = await harness.command("alice", f"issue assign {key} john@example.com --instance dc")
    assert "`John Smith` assigned" in answer["text"]
    assert harness.server.issue(key)["assignee"] == "jsmith"
    assert harness.server.requests_to(f"/rest/api/2/issue/{key}/assignee", "PUT")[-1].body == {
        "name": "jsmith"
    }


async def test_words_in_any_order_find_the_user(harness: Harness) -> None:
    _, key = await cloud_setup(harness)
    john = harness.cloud.add_user("John Smith")
    assert "`John Smith` assigned" in (await harness.command("alice", f"assign {key} smi jo"))["text"]
    assert harness.cloud.issue(key)["assignee"] == john


async def test_assign_me_on_cloud_and_on_server(harness: Harness) -> None:
    alice, key = await cloud_setup(harness)
    assert "`Alice Liddell` assigned" in (await harness.command("alice", f"assign {key} me"))["text"]
    assert harness.cloud.issue(key)["assignee"] == alice

    server_alice, server_key = await server_setup(harness)
    answer = await harness.command("alice", f"assign {server_key} me --instance dc")
    assert "`Alice Liddell` assigned" in answer["text"]
    assert harness.server.issue(server_key)["assignee"] == server_alice == "alice"


async def test_assign_a_mattermost_user_by_their_connected_account(harness: Harness) -> None:
    _, key = await cloud_setup(harness)
    bob = harness.cloud.add_user("Bob Builder", email="bob@example.com")
    await harness.connect_cloud("bob", bob)
    assert "`Bob Builder` assigned" in (await harness.command("alice", f"assign {key} @bob"))["text"]
    assert harness.cloud.issue(key)["assignee"] == bob


async def test_assign_a_mattermost_user_who_is_not_connected_or_unknown(harness: Harness) -> None:
    _, key = await cloud_setup(harness)
    text = (await harness.command("alice", f"assign {key} @bob"))["text"]
    assert "has not connected a Jira account" in text and "cloud" in text
    assert "no Mattermost user" in (await harness.command("alice", f"assign {key} @nobody"))["text"]
    assert harness.cloud.issue(key)["assignee"] is None


async def test_several_users_become_five_buttons_with_name_and_email(harness: Harness) -> None:
    _, key = await cloud_setup(harness)
    sams = {
        harness.cloud.add_user(f"Sam {surname}", email=f"sam.{surname.lower()}@example.com"): surname
        for surname in ("Adams", "Baker", "Clark", "Davis", "Evans", "Foster")
    }
    answer = await harness.command("alice", f"assign {key} sam")
    [choice] = answer["attachments"]
    assert '"sam" matches 6 users; here are the first 5' in choice["text"]
    names = [a["name"] for a in choice["actions"]]
    assert names[0] == "Sam Adams (sam.adams@example.com)" and len(names) == 5

    status, _ = await harness.click("bob", {"attachments": [choice]}, "Sam Clark (sam.clark@example.com)")
    assert status == 403
    status, body = await harness.click(
        "alice", {"attachments": [choice]}, "Sam Clark (sam.clark@example.com)"
    )
    assert status == 200 and "`Sam Clark` assigned" in body["update"]["message"]
    assert sams[harness.cloud.issue(key)["assignee"]] == "Clark"


async def test_server_candidate_buttons_assign_by_name(harness: Harness) -> None:
    _, key = await server_setup(harness)
    harness.server.add_user("Ann Lee", name="alee", email="ann@example.com")
    harness.server.add_user("Ann Long", name="along", email="ann.long@example.com")
    [choice] = (await harness.command("alice", f"assign {key} ann --instance dc"))["attachments"]
    props: dict[str, Any] = {"attachments": [choice]}
    _, body = await harness.click("alice", props, "Ann Long (along, ann.long@example.com)")
    assert "`Ann Long` assigned" in body["update"]["message"]
    assert harness.server.issue(key)["assignee"] == "along"


async def test_no_match_is_a_clear_message(harness: Harness) -> None:
    _, key = await cloud_setup(harness)
    text = (await harness.command("alice", f"assign {key} zebediah"))["text"]
    assert text.startswith(f'No Jira user who can be assigned to {key} matches "zebediah".')


async def test_missing_assignee_and_unknown_issue(harness: Harness) -> None:
    _, key = await cloud_setup(harness)
    assert "Please name the assignee" in (await harness.command("alice", f"assign {key}"))["text"]
    assert "Check the issue key" in (await harness.command("alice", "assign PROJ-77 me"))["text"]
    assert "Check the issue key" in (await harness.command("alice", "assign PROJ-77 someone"))["text"]


async def test_assign_without_edit_permission_is_explained(harness: Harness) -> None:
    _, key = await cloud_setup(harness, editors=[])
    text = (await harness.command("alice", f"assign {key} me"))["text"]
    assert "not allowed to do this" in text


async def test_assign_a_user_jira_refuses_is_explained(harness: Harness) -> None:
    alice, key = await cloud_setup(harness)
    bob = harness.cloud.add_user("Bob Builder")
    await harness.connect_cloud("bob", bob)
    harness.cloud.projects["PROJ"].editors = {alice}
    text = (await harness.command("alice", f"assign {key} @bob"))["text"]
    assert "Jira refused the request" in text and "cannot be assigned" in text


async def test_unassign_on_cloud_and_server(harness: Harness) -> None:
    alice, key = await cloud_setup(harness)
    harness.cloud.issue(key)["assignee"] = alice
    text = (await harness.command("alice", f"unassign {key}"))["text"]
    assert text == f"Unassigned Jira issue [{key}]({harness.cloud_url}/browse/{key})"
    assert harness.cloud.issue(key)["assignee"] is None
    assert harness.cloud.requests_to(f"/rest/api/2/issue/{key}/assignee", "PUT")[-1].body == {
        "accountId": None
    }

    server_alice, server_key = await server_setup(harness)
    harness.server.issue(server_key)["assignee"] = server_alice
    assert (
        "Unassigned" in (await harness.command("alice", f"issue unassign {server_key} --instance dc"))["text"]
    )
    assert harness.server.issue(server_key)["assignee"] is None


async def test_unassign_errors(harness: Harness) -> None:
    _, key = await cloud_setup(harness)
    assert "Check the issue key" in (await harness.command("alice", "unassign PROJ-5"))["text"]
    harness.cloud.fail_next(status=503)
    assert "not reachable" in (await harness.command("alice", f"unassign {key}"))["text"]
