"""/jira transition: partial state matching, candidate buttons, errors."""

from __future__ import annotations

from typing import Any

import pytest

from tests.commands.conftest import Harness

REVIEW_WORKFLOW = [
    ("11", "Start Progress", "In Progress"),
    ("12", "Send to Review", "In Review"),
    ("31", "Done", "Done"),
]


async def cloud_issue(harness: Harness, *, editors: list[str] | None = None) -> str:
    alice = harness.cloud.add_user("Alice Liddell", email="alice@example.com")
    await harness.connect_cloud("alice", alice)
    harness.cloud.add_project("PROJ", editors=editors)
    return harness.cloud.add_issue("PROJ", "Login fails", reporter=alice)


async def test_one_match_is_applied_on_cloud(harness: Harness) -> None:
    key = await cloud_issue(harness)
    answer = await harness.command("alice", f"transition {key} progress")
    assert answer["text"] == f"[{key}]({harness.cloud_url}/browse/{key}) transitioned to `In Progress`"
    assert harness.cloud.issue(key)["status"] == "In Progress"


async def test_one_match_is_applied_on_server_with_a_quoted_state(harness: Harness) -> None:
    alice = harness.server.add_user("Alice Liddell", name="alice")
    await harness.connect_server("alice", alice)
    harness.server.add_project("OPS")
    key = harness.server.add_issue("OPS", "Disk full")
    answer = await harness.command("alice", f'issue transition {key} "in progress" --instance dc')
    assert "transitioned to `In Progress`" in answer["text"]
    assert harness.server.issue(key)["status"] == "In Progress"


async def test_several_matches_become_buttons_for_the_asker_only(harness: Harness) -> None:
    key = await cloud_issue(harness)
    harness.cloud.set_transitions("To Do", REVIEW_WORKFLOW)
    answer = await harness.command("alice", f"transition {key} in")
    [choice] = answer["attachments"]
    assert "Please be more specific" in choice["text"]
    assert [a["name"] for a in choice["actions"]] == [
        "Start Progress → In Progress",
        "Send to Review → In Review",
    ]
    props: dict[str, Any] = {"attachments": [choice]}

    status, _ = await harness.click("bob", props, "Send to Review → In Review")
    assert status == 403
    assert harness.cloud.issue(key)["status"] == "To Do"

    status, body = await harness.click("alice", props, "Send to Review → In Review")
    assert status == 200
    assert "transitioned to `In Review`" in body["update"]["message"]
    assert body["update"]["props"] == {"attachments": []}
    assert harness.cloud.issue(key)["status"] == "In Review"

    _, again = await harness.click("alice", props, "Send to Review → In Review")
    assert "already been made" in again["ephemeral_text"]


async def test_no_state_offers_every_transition(harness: Harness) -> None:
    key = await cloud_issue(harness)
    [choice] = (await harness.command("alice", f"transition {key}"))["attachments"]
    assert "Valid states: In Progress, Done" in choice["text"]
    assert len(choice["actions"]) == 2


async def test_no_match_lists_the_valid_states(harness: Harness) -> None:
    key = await cloud_issue(harness)
    text = (await harness.command("alice", f"transition {key} shipped"))["text"]
    assert text == f'No transition of {key} matches "shipped". Valid states: In Progress, Done.'
    assert harness.cloud.issue(key)["status"] == "To Do"


async def test_a_user_who_may_not_edit_gets_no_transitions(harness: Harness) -> None:
    key = await cloud_issue(harness, editors=[])
    text = (await harness.command("alice", f"transition {key} done"))["text"]
    assert text == f"No transitions of {key} are available to you."


async def test_unknown_issue_says_to_check_the_key(harness: Harness) -> None:
    await cloud_issue(harness)
    assert "Check the issue key" in (await harness.command("alice", "transition PROJ-42 done"))["text"]


@pytest.mark.parametrize(
    ("status", "expected"),
    [(403, "not allowed to do this"), (429, "too many requests"), (503, "not reachable right now")],
)
async def test_jira_failures_become_one_line(harness: Harness, status: int, expected: str) -> None:
    key = await cloud_issue(harness)
    harness.cloud.fail_next(status=status, path=f"/rest/api/2/issue/{key}/transitions")
    text = (await harness.command("alice", f"transition {key} done"))["text"]
    assert expected in text and "\n" not in text
    assert harness.cloud.issue(key)["status"] == "To Do"


async def test_a_refused_transition_is_explained(harness: Harness) -> None:
    key = await cloud_issue(harness)
    harness.cloud.set_transitions("To Do", [("11", "Start Progress", "In Progress"), ("31", "Done", "Done")])
    [choice] = (await harness.command("alice", f"transition {key}"))["attachments"]
    harness.cloud.set_transitions("To Do", [("31", "Done", "Done")])  # the workflow changed meanwhile
    _, body = await harness.click("alice", {"attachments": [choice]}, "Start Progress → In Progress")
    assert "not available to you" in body["ephemeral_text"] and "Done" in body["ephemeral_text"]
    assert harness.cloud.issue(key)["status"] == "To Do"
