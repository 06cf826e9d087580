"""Buttons on the bot's channel posts about an issue: Transition, Assign to me and Comment, clicked
by anyone in the channel, each acting with their own Jira account."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Any

from bot.commands.post_buttons import (
    ACTION_IDS,
    MAX_ACTIVITY_LINES,
    POST_ACTIONS_TTL,
    issue_post_actions,
    with_activity,
    with_issue_actions,
)
from bot.jira.events import (
    EVENT_CREATED,
    EVENT_UPDATED_STATUS,
    FieldChange,
    IssueEvent,
    IssueSnapshot,
    JiraUser,
    NamedValue,
)
from bot.mattermost.models import OutgoingPost
from bot.mattermost.payloads import ActionFactory
from bot.render.markup import ZERO_WIDTH_JOINER
from bot.render.posts import RenderedPost, render_event
from bot.security.signing import ContextSigner
from tests.commands.conftest import Harness

ZWJ = ZERO_WIDTH_JOINER
NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def rendered(jira_url: str, key: str, *, description: str = "Steps to reproduce") -> RenderedPost:
    """The post the pipeline makes for an issue created in Jira (an attachment when the issue has
    a description, a bare headline otherwise)."""
    event = IssueEvent(
        webhook_event="jira:issue_created",
        issue_event_type="issue_created",
        kinds=frozenset({EVENT_CREATED}),
        issue=IssueSnapshot(
            id="10001",
            key=key,
            self_url=f"{jira_url}/rest/api/2/issue/10001",
            summary="Login fails",
            description=description,
            issue_type=NamedValue(id="1", name="Task"),
        ),
        actor=JiraUser(display_name="Carol Reporter"),
    )
    post = render_event(event)
    assert post is not None
    return post


async def channel_post(harness: Harness, jira_url: str, key: str, **kw: Any) -> dict[str, Any]:
    """The bot's post about `key` in ~dev, with the issue buttons, made through the bot's client."""
    deps = harness.services.commands.deps  # type: ignore[union-attr]
    post = rendered(jira_url, key, **kw)
    props = with_issue_actions(post.props, issue_post_actions(deps.actions, jira_url, key))
    post_id = await deps.mattermost.create_post(
        OutgoingPost(channel_id=harness.channels["dev"], message=post.message, props=props)
    )
    found = harness.mm.get_post(post_id)
    assert found is not None
    return found


def apply_update(post: dict[str, Any], answer: dict[str, Any]) -> None:
    """What Mattermost does with a click's `update`: a missing `props` keeps the post's own."""
    update = answer["update"]
    post["message"] = update["message"]
    if "props" in update:
        post["props"] = update["props"]


async def cloud_issue(harness: Harness, *, editors: list[str] | None = None) -> tuple[str, str, str]:
    """Alice and Bob on Jira Cloud (Alice connected), project PROJ with one issue: (key, alice, bob)."""
    alice = harness.cloud.add_user("Alice Liddell", email="alice@example.com")
    bob = harness.cloud.add_user("Bob Builder", email="bob@example.com")
    await harness.connect_cloud("alice", alice)
    harness.cloud.add_project("PROJ", "Project", editors=editors)
    return harness.cloud.add_issue("PROJ", "Login fails", reporter=alice), alice, bob


def action_names(post: dict[str, Any]) -> list[str]:
    return [a["name"] for a in post["props"]["attachments"][0].get("actions") or ()]


# -- the buttons on a rendered post (pure) ------------------------------------------------------


def factory() -> ActionFactory:
    return ActionFactory(
        ContextSigner(b"k" * 32), "https://bot.example.com/mattermost/actions", clock=lambda: NOW
    )


def test_buttons_join_the_first_attachment_and_keep_what_it_shows() -> None:
    post = rendered("https://jira.example.com", "PROJ-1")
    original = json.loads(json.dumps(post.props))
    props = with_issue_actions(
        post.props, issue_post_actions(factory(), "https://jira.example.com", "PROJ-1")
    )

    [attachment] = props["attachments"]
    assert {k: v for k, v in attachment.items() if k != "actions"} == original["attachments"][0]
    assert [a["name"] for a in attachment["actions"]] == ["Transition", "Assign to me", "Comment"]
    assert json.loads(json.dumps(post.props)) == original  # the rendered post is left as it was


def test_a_headline_post_gets_an_attachment_for_the_buttons() -> None:
    post = render_event(
        IssueEvent(
            webhook_event="jira:issue_updated",
            issue_event_type="issue_generic",
            kinds=frozenset({EVENT_UPDATED_STATUS}),
            issue=IssueSnapshot(id="1", key="PROJ-1", self_url="https://jira.example.com/rest/api/2/issue/1"),
            changes=(
                FieldChange(
                    kind=EVENT_UPDATED_STATUS,
                    field="status",
                    field_id="status",
                    from_string="To Do",
                    to_string="In Progress",
                ),
            ),
        )
    )
    assert post is not None and post.props == {}
    props = with_issue_actions(
        post.props, issue_post_actions(factory(), "https://jira.example.com", "PROJ-1")
    )
    assert [[a["name"] for a in att["actions"]] for att in props["attachments"]] == [
        ["Transition", "Assign to me", "Comment"]
    ]


def test_adding_the_buttons_twice_replaces_them_and_keeps_other_actions() -> None:
    buttons = issue_post_actions(factory(), "https://jira.example.com", "PROJ-1")
    other = {"id": "other", "name": "Elsewhere", "type": "button", "integration": {"url": "https://x"}}
    props: dict[str, Any] = {"attachments": [{"text": "hi", "actions": [other]}, {"text": "second"}]}
    once = with_issue_actions(props, buttons)
    twice = with_issue_actions(once, issue_post_actions(factory(), "https://jira.example.com", "PROJ-1"))
    assert [a["name"] for a in twice["attachments"][0]["actions"]] == [
        "Elsewhere",
        "Transition",
        "Assign to me",
        "Comment",
    ]
    assert twice["attachments"][1] == {"text": "second"}
    assert props["attachments"][0]["actions"] == [other]


def test_channel_post_contexts_are_for_anyone_and_last_for_weeks() -> None:
    signer = ContextSigner(b"k" * 32)
    actions = issue_post_actions(
        ActionFactory(signer, "https://bot.example.com/mattermost/actions", clock=lambda: NOW),
        "https://jira.example.com",
        "PROJ-1",
    )
    assert {a.id for a in actions} == set(ACTION_IDS.values())
    for button in actions:
        context = button.integration.context
        assert "_uid" not in context and "_once" not in context
        assert context["_exp"] - NOW.timestamp() == POST_ACTIONS_TTL >= 30 * 24 * 3600
        # Anyone may click: the context verifies for any user, until it expires.
        plain = signer.verify(context, NOW, user_id="whoever")
        assert plain["issue"] == "PROJ-1" and plain["instance"] == "https://jira.example.com"


def test_activity_lines_follow_the_message_and_keep_the_latest() -> None:
    assert with_activity("", "@alice did it") == "✓ @alice did it"
    message = "Headline"
    for i in range(MAX_ACTIVITY_LINES + 2):
        message = with_activity(message, f"step {i}")
    lines = message.split("\n")
    assert lines[0] == "Headline"
    assert lines[1:] == [f"✓ step {i}" for i in range(2, MAX_ACTIVITY_LINES + 2)]


# -- Assign to me ---------------------------------------------------------------------------------


async def test_assign_to_me_on_cloud_uses_the_clickers_account_and_notes_it_on_the_post(
    harness: Harness,
) -> None:
    key, alice, bob = await cloud_issue(harness)
    await harness.connect_cloud("bob", bob)
    post = await channel_post(harness, harness.cloud_url, key)

    status, answer = await harness.click("bob", post["props"], "Assign to me", post_id=post["id"])
    assert status == 200
    assert harness.cloud.issue(key)["assignee"] == bob
    put = harness.cloud.requests_to(f"/rest/api/2/issue/{key}/assignee", "PUT")[-1]
    assert put.body == {"accountId": bob} and put.user == bob
    # Only the message is replaced: Mattermost keeps the card and its working buttons.
    assert "props" not in answer["update"]
    assert answer["update"]["message"] == f"✓ @{ZWJ}bob assigned {key} to themselves"
    apply_update(post, answer)

    # The buttons are not single-use: Alice takes it back from the same post.
    status, answer = await harness.click("alice", post["props"], "Assign to me", post_id=post["id"])
    assert status == 200 and harness.cloud.issue(key)["assignee"] == alice
    assert answer["update"]["message"].split("\n") == [
        f"✓ @{ZWJ}bob assigned {key} to themselves",
        f"✓ @{ZWJ}alice assigned {key} to themselves",
    ]


async def test_assign_to_me_on_server_names_the_jira_user(harness: Harness) -> None:
    bob = harness.server.add_user("Bob Builder", name="bob")
    await harness.connect_server("bob", bob)
    harness.server.add_project("OPS")
    key = harness.server.add_issue("OPS", "Disk full")
    post = await channel_post(harness, harness.server_url, key, description="")
    assert post["message"].endswith(f"[{key}: Login fails]({harness.server_url}/browse/{key})")

    status, answer = await harness.click("bob", post["props"], "Assign to me", post_id=post["id"])
    assert status == 200
    assert harness.server.requests_to(f"/rest/api/2/issue/{key}/assignee", "PUT")[-1].body == {"name": "bob"}
    assert harness.server.issue(key)["assignee"] == "bob"
    # The headline stays first; the note follows it.
    assert answer["update"]["message"] == post["message"] + f"\n✓ @{ZWJ}bob assigned {key} to themselves"


async def test_someone_not_connected_is_told_how_to_connect(harness: Harness) -> None:
    key, _, _ = await cloud_issue(harness)
    post = await channel_post(harness, harness.cloud_url, key)
    for button in ("Assign to me", "Transition", "Comment"):
        status, answer = await harness.click("bob", post["props"], button, post_id=post["id"])
        assert status == 200 and "update" not in answer
        assert (
            "not connected" in answer["ephemeral_text"] and "/jira connect cloud" in answer["ephemeral_text"]
        )
    assert harness.cloud.issue(key)["assignee"] is None
    assert harness.mm.dialogs == []


async def test_a_user_without_permission_is_told_and_the_post_is_unchanged(harness: Harness) -> None:
    key, _, _ = await cloud_issue(harness, editors=[])
    post = await channel_post(harness, harness.cloud_url, key)
    status, answer = await harness.click("alice", post["props"], "Assign to me", post_id=post["id"])
    assert status == 200 and "not allowed to do this" in answer["ephemeral_text"]
    assert "update" not in answer and harness.cloud.issue(key)["assignee"] is None

    status, answer = await harness.click("alice", post["props"], "Transition", post_id=post["id"])
    assert "no transition you can make" in answer["ephemeral_text"] and "`To Do`" in answer["ephemeral_text"]


async def test_an_issue_the_clicker_cannot_see_is_explained(harness: Harness) -> None:
    alice = harness.cloud.add_user("Alice Liddell")
    other = harness.cloud.add_user("Someone Else")
    await harness.connect_cloud("alice", alice)
    harness.cloud.add_project("HR", browse=[other])
    key = harness.cloud.add_issue("HR", "Salaries")
    post = await channel_post(harness, harness.cloud_url, key)
    for button in ("Transition", "Assign to me"):
        status, answer = await harness.click("alice", post["props"], button, post_id=post["id"])
        assert status == 200 and "cannot see it" in answer["ephemeral_text"]


# -- Transition -----------------------------------------------------------------------------------


async def test_transition_offers_the_clickers_transitions_and_notes_the_move(harness: Harness) -> None:
    key, _, _ = await cloud_issue(harness)
    post = await channel_post(harness, harness.cloud_url, key)
    buttons_before = json.dumps(post["props"])

    status, answer = await harness.click("alice", post["props"], "Transition", post_id=post["id"])
    assert status == 200 and answer == {}
    opened = harness.mm.dialogs[-1]
    assert opened["user_id"] == harness.user("alice")
    form = opened["dialog"]
    assert "`To Do`" in form["introduction_text"]
    [element] = form["elements"]
    assert [(o["text"], o["value"]) for o in element["options"]] == [
        ("Start Progress → In Progress", "11"),
        ("Done", "31"),
    ]

    status, answer = await harness.submit("alice", {"transition": "11"})
    assert status == 200 and answer == {}
    assert harness.cloud.issue(key)["status"] == "In Progress"
    updated = harness.mm.get_post(post["id"])
    assert updated is not None
    assert updated["message"] == f"✓ @{ZWJ}alice moved {key} to `In Progress`"
    assert json.dumps(updated["props"]) == buttons_before  # card and signed buttons untouched

    # The same form cannot move it again.
    status, answer = await harness.submit("alice", {"transition": "21"})
    assert answer == {"error": "This form has already been submitted."}
    assert harness.cloud.issue(key)["status"] == "In Progress"


async def test_a_transition_no_longer_available_is_shown_on_the_field(harness: Harness) -> None:
    key, _, _ = await cloud_issue(harness)
    post = await channel_post(harness, harness.cloud_url, key)
    await harness.click("alice", post["props"], "Transition", post_id=post["id"])
    harness.cloud.issue(key)["status"] = "Done"  # someone else was quicker

    status, answer = await harness.submit("alice", {"transition": "11"})
    assert status == 200 and "Not available any more" in answer["errors"]["transition"]
    assert "To Do" in answer["errors"]["transition"]
    # The form is still usable once corrected.
    status, answer = await harness.submit("alice", {"transition": "41"})
    assert answer == {} and harness.cloud.issue(key)["status"] == "To Do"


# -- Comment --------------------------------------------------------------------------------------


async def test_comment_is_written_by_the_clicker_once(harness: Harness) -> None:
    key, alice, _ = await cloud_issue(harness)
    post = await channel_post(harness, harness.cloud_url, key, description="")

    status, answer = await harness.click("alice", post["props"], "Comment", post_id=post["id"])
    assert status == 200 and answer == {}
    [element] = harness.mm.dialogs[-1]["dialog"]["elements"]
    assert element["name"] == "comment" and element["type"] == "textarea"

    status, answer = await harness.submit("alice", {"comment": "Reproduced on staging."})
    assert status == 200 and answer == {}
    [comment] = harness.cloud.comments[key]
    assert comment["body"] == "Reproduced on staging." and comment["author"]["accountId"] == alice
    updated = harness.mm.get_post(post["id"])
    assert updated is not None
    assert updated["message"].split("\n")[-1] == f"✓ @{ZWJ}alice commented on {key}"

    # Sent again (a replay of the same form): refused, and no second comment.
    status, answer = await harness.submit("alice", {"comment": "Reproduced on staging."})
    assert answer == {"error": "This form has already been submitted."}
    assert len(harness.cloud.comments[key]) == 1


async def test_a_refused_comment_can_be_sent_again_once_possible(harness: Harness) -> None:
    key, _, _ = await cloud_issue(harness)
    post = await channel_post(harness, harness.cloud_url, key)
    await harness.click("alice", post["props"], "Comment", post_id=post["id"])

    harness.cloud.fail_next(status=503, path=f"/rest/api/2/issue/{key}/comment")
    status, answer = await harness.submit("alice", {"comment": "First try"})
    assert status == 200 and "not reachable right now" in answer["error"]
    assert harness.cloud.comments[key] == []

    status, answer = await harness.submit("alice", {"comment": "First try"})
    assert answer == {} and [c["body"] for c in harness.cloud.comments[key]] == ["First try"]


async def test_racing_submissions_of_one_form_comment_and_move_once(harness: Harness) -> None:
    key, _, _ = await cloud_issue(harness)
    post = await channel_post(harness, harness.cloud_url, key)
    refused = (200, {"error": "This form has already been submitted."})

    await harness.click("alice", post["props"], "Comment", post_id=post["id"])
    answers = await asyncio.gather(*(harness.submit("alice", {"comment": "Once"}) for _ in range(3)))
    assert sorted(answers, key=lambda a: len(a[1])) == [(200, {})] + [refused] * 2
    assert [c["body"] for c in harness.cloud.comments[key]] == ["Once"]

    await harness.click("alice", post["props"], "Transition", post_id=post["id"])
    answers = await asyncio.gather(*(harness.submit("alice", {"transition": "11"}) for _ in range(3)))
    assert sorted(answers, key=lambda a: len(a[1])) == [(200, {})] + [refused] * 2
    assert len(harness.cloud.requests_to(f"/rest/api/2/issue/{key}/transitions", "POST")) == 1


# -- forged and foreign contexts ------------------------------------------------------------------


async def test_forged_button_contexts_are_refused(harness: Harness) -> None:
    key, _, _ = await cloud_issue(harness)
    other = harness.cloud.add_issue("PROJ", "Another one")
    post = await channel_post(harness, harness.cloud_url, key)

    tampered = json.loads(json.dumps(post["props"]))
    for action in tampered["attachments"][0]["actions"]:
        action["integration"]["context"]["issue"] = other
    status, answer = await harness.click("alice", tampered, "Assign to me", post_id=post["id"])
    assert status == 403 and "could not be verified" in answer["ephemeral_text"]

    unsigned = json.loads(json.dumps(post["props"]))
    for action in unsigned["attachments"][0]["actions"]:
        action["integration"]["context"] = {
            "action": "post.assign_me",
            "instance": harness.cloud_url,
            "issue": key,
        }
    status, _ = await harness.click("alice", unsigned, "Assign to me", post_id=post["id"])
    assert status == 403

    assert harness.cloud.issue(key)["assignee"] is None and harness.cloud.issue(other)["assignee"] is None
    assert harness.mm.get_post(post["id"])["message"] == post["message"]  # type: ignore[index]


async def test_a_form_is_refused_to_another_user_and_when_its_state_is_forged(harness: Harness) -> None:
    key, _, bob = await cloud_issue(harness)
    await harness.connect_cloud("bob", bob)
    post = await channel_post(harness, harness.cloud_url, key)
    await harness.click("alice", post["props"], "Comment", post_id=post["id"])
    opened = harness.mm.dialogs[-1]

    status, _ = await harness.submit("bob", {"comment": "Not mine to send"}, dialog=opened)
    assert status == 403

    forged = json.loads(json.dumps(opened))
    state = json.loads(forged["dialog"]["state"])
    state["issue"] = "PROJ-99"
    forged["dialog"]["state"] = json.dumps(state)
    status, _ = await harness.submit("alice", {"comment": "Elsewhere"}, dialog=forged)
    assert status == 403
    assert harness.cloud.comments[key] == []
