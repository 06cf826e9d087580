"""/jira view: the issue card, its transition menu, "Assign to me" and "Share"."""

from __future__ import annotations

import json
from typing import Any

import pytest

from bot.render.markup import ZERO_WIDTH_JOINER
from tests.commands.conftest import Harness


async def cloud_alice(harness: Harness, **issue: Any) -> str:
    """Alice connected to Jira Cloud, project PROJ with one issue; returns its key."""
    alice = harness.cloud.add_user("Alice Liddell", email="alice@example.com")
    await harness.connect_cloud("alice", alice)
    harness.cloud.add_project("PROJ", "Project")
    fields: dict[str, Any] = {"reporter": alice, "description": "", **issue}
    return harness.cloud.add_issue("PROJ", fields.pop("summary", "Login fails"), **fields)


def card_of(answer: dict[str, Any]) -> dict[str, Any]:
    assert answer["response_type"] == "ephemeral"
    [attachment] = answer["attachments"]
    return attachment


def field_values(card: dict[str, Any]) -> dict[str, str]:
    return {f["title"]: f["value"] for f in card["fields"]}


def action_names(card: dict[str, Any]) -> list[str]:
    return [a["name"] for a in card.get("actions") or ()]


async def test_view_shows_the_card_on_cloud(harness: Harness) -> None:
    bob = harness.cloud.add_user("Bob Builder", email="bob@example.com")
    key = await cloud_alice(
        harness,
        summary="Login fails @channel",
        assignee=bob,
        priority="High",
        description="Steps: *click* the button.\nThen @here nothing happens.",
    )
    card = card_of(await harness.command("alice", f"view {key}"))

    assert card["title"].startswith(f"{key}: Login fails @{ZERO_WIDTH_JOINER}channel")
    assert card["title_link"] == f"{harness.cloud_url}/browse/{key}"
    assert field_values(card) == {
        "Status": "To Do",
        "Type": "Task",
        "Priority": "High",
        "Assignee": "Bob Builder",
        "Reporter": "Alice Liddell",
    }
    assert "**click**" in card["text"]  # wiki markup became Markdown
    assert "@here" not in card["text"] and f"@{ZERO_WIDTH_JOINER}here" in card["text"]
    assert action_names(card) == ["Transition", "Assign to me", "Share"]
    menu = harness.mm.find_action(card_props(card), "Transition")
    assert [o["text"] for o in menu["options"]] == ["Start Progress → In Progress", "Done"]


def card_props(card: dict[str, Any]) -> dict[str, Any]:
    return {"attachments": [card]}


async def test_view_on_server_with_the_issue_alias_and_a_long_description(harness: Harness) -> None:
    alice = harness.server.add_user("Alice Liddell", name="alice")
    await harness.connect_server("alice", alice)
    harness.server.add_project("OPS")
    key = harness.server.add_issue("OPS", "Disk full", reporter=alice, description="x" * 2000, priority=None)
    card = card_of(await harness.command("alice", f"issue view {key.lower()} --instance dc"))
    assert card["title_link"] == f"{harness.server_url}/browse/{key}"
    assert field_values(card)["Assignee"] == "Unassigned"
    assert field_values(card)["Priority"] == "—"
    assert len(card["text"]) == 500 and card["text"].endswith("...")


async def test_view_unknown_issue_says_to_check_the_key(harness: Harness) -> None:
    await cloud_alice(harness)
    text = (await harness.command("alice", "view PROJ-99"))["text"]
    assert "Check the issue key" in text


async def test_view_of_a_malformed_key(harness: Harness) -> None:
    await cloud_alice(harness)
    assert "is not a Jira issue key" in (await harness.command("alice", "view hello"))["text"]
    assert "give the issue key" in (await harness.command("alice", "view"))["text"]


async def test_view_when_not_connected_says_how_to_connect(harness: Harness) -> None:
    text = (await harness.command("bob", "view PROJ-1 --instance cloud"))["text"]
    assert "not connected" in text and "/jira connect" in text


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (403, "not allowed to do this"),
        (429, "too many requests"),
        (503, "not reachable right now"),
    ],
)
async def test_view_jira_failures_become_one_line(harness: Harness, status: int, expected: str) -> None:
    key = await cloud_alice(harness)
    harness.cloud.fail_next(status=status)
    answer = await harness.command("alice", f"view {key}")
    assert expected in answer["text"]
    assert "\n" not in answer["text"] and "Traceback" not in answer["text"]


async def test_a_refused_token_disconnects_the_user(harness: Harness) -> None:
    key = await cloud_alice(harness)
    harness.cloud.fail_next(status=401)
    text = (await harness.command("alice", f"view {key}"))["text"]
    assert "disconnected" in text and "/jira connect" in text
    assert "not connected" in (await harness.command("alice", f"view {key} --instance cloud"))["text"]


async def test_transition_menu_applies_the_choice_and_refreshes_the_card(harness: Harness) -> None:
    key = await cloud_alice(harness)
    card = card_of(await harness.command("alice", f"view {key}"))
    status, body = await harness.click("alice", card_props(card), "Transition", selected="11")
    assert status == 200
    assert harness.cloud.issue(key)["status"] == "In Progress"
    assert "transitioned to `In Progress`" in body["update"]["message"]
    [refreshed] = body["update"]["props"]["attachments"]
    assert field_values(refreshed)["Status"] == "In Progress"


async def test_assign_to_me_assigns_the_clicker(harness: Harness) -> None:
    key = await cloud_alice(harness)
    card = card_of(await harness.command("alice", f"view {key}"))
    status, body = await harness.click("alice", card_props(card), "Assign to me")
    assert status == 200
    alice_id = next(u.id for u in harness.cloud.users.values() if u.display_name == "Alice Liddell")
    assert harness.cloud.issue(key)["assignee"] == alice_id
    assert "`Alice Liddell` assigned to Jira issue" in body["update"]["message"]
    put = harness.cloud.requests_to(f"/rest/api/2/issue/{key}/assignee", "PUT")[-1]
    assert put.body == {"accountId": alice_id}


async def test_share_posts_the_card_and_anyone_acts_on_it_as_themselves(harness: Harness) -> None:
    key = await cloud_alice(harness)
    bob = harness.cloud.add_user("Bob Builder", email="bob@example.com")
    await harness.connect_cloud("bob", bob)
    card = card_of(await harness.command("alice", f"view {key}"))

    status, body = await harness.click("alice", card_props(card), "Share")
    assert status == 200 and "Shared" in body["ephemeral_text"]
    [post] = harness.mm.posts_in(harness.channels["dev"])
    assert post["message"] == f"@{ZERO_WIDTH_JOINER}alice shared a Jira issue"
    [shared] = post["props"]["attachments"]
    assert shared["title_link"] == f"{harness.cloud_url}/browse/{key}"
    assert action_names(shared) == ["Transition", "Assign to me"]

    status, body = await harness.click("bob", post["props"], "Assign to me")
    assert status == 200 and "`Bob Builder` assigned" in body["ephemeral_text"]
    assert harness.cloud.issue(key)["assignee"] == bob
    assert harness.cloud.requests_to(f"/rest/api/2/issue/{key}/assignee", "PUT")[-1].user == bob

    # The card's Share button works once.
    status, body = await harness.click("alice", card_props(card), "Share")
    assert "already been made" in body["ephemeral_text"]


async def test_an_issue_with_a_security_level_is_not_shared(harness: Harness) -> None:
    alice_id = harness.cloud.add_user("Alice Liddell")
    harness.cloud.set_security_level("Staff", [alice_id])
    await harness.connect_cloud("alice", alice_id)
    harness.cloud.add_project("SEC")
    key = harness.cloud.add_issue("SEC", "Salary table", security="Staff")
    card = card_of(await harness.command("alice", f"view {key}"))
    assert field_values(card)["Security"] == "Staff"
    _, body = await harness.click("alice", card_props(card), "Share")
    assert "security level" in body["ephemeral_text"]
    assert harness.mm.posts_in(harness.channels["dev"]) == []


async def test_the_card_buttons_are_refused_to_others_and_when_tampered_with(harness: Harness) -> None:
    key = await cloud_alice(harness)
    other = harness.cloud.add_issue("PROJ", "Another one")
    card = card_of(await harness.command("alice", f"view {key}"))

    status, _ = await harness.click("bob", card_props(card), "Assign to me")
    assert status == 403

    tampered = json.loads(json.dumps(card))
    for action in tampered["actions"]:
        action["integration"]["context"]["issue"] = other
    status, body = await harness.click("alice", card_props(tampered), "Assign to me")
    assert status == 403 and "could not be verified" in body["ephemeral_text"]
    assert harness.cloud.issue(other)["assignee"] is None
