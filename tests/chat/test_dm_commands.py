"""In a direct message with the bot, commands work without `/jira`; the answer is posted there."""

from __future__ import annotations

from typing import Any

from bot.chat.dm_commands import DM_HINT, command_text, response_posts
from bot.chat.listener import ChatListener
from bot.mattermost.payloads import CommandResponse
from tests.chat.conftest import eventually
from tests.commands.conftest import Harness


def dm_with_bot(h: Harness, mm_user: str) -> str:
    return h.mm.direct_channel(h.mm.bot_user_id, h.user(mm_user))


def answers(h: Harness, channel: str) -> list[dict[str, Any]]:
    return [p for p in h.mm.posts_in(channel) if p["user_id"] == h.mm.bot_user_id]


async def cloud_issue(h: Harness) -> tuple[str, str]:
    alice = h.cloud.add_user("Alice Liddell", email="alice@example.com")
    await h.connect_cloud("alice", alice)
    h.cloud.add_project("PROJ")
    return h.cloud.add_issue("PROJ", "Login fails", reporter=alice), alice


async def test_view_without_prefix_answers_with_the_card(harness: Harness, chat: ChatListener) -> None:
    key, _ = await cloud_issue(harness)
    channel = dm_with_bot(harness, "alice")

    harness.mm.user_posts("alice", channel, f"view {key}")

    [answer] = await eventually(lambda: answers(harness, channel))
    [card] = answer["props"]["attachments"]
    assert card["title"] == f"{key}: Login fails"
    assert card["title_link"] == f"{harness.cloud_url}/browse/{key}"
    assert answer["root_id"] == ""  # a message at the top level is answered at the top level


async def test_assign_me_changes_jira_and_answers_in_the_thread(harness: Harness, chat: ChatListener) -> None:
    key, alice = await cloud_issue(harness)
    channel = dm_with_bot(harness, "alice")
    root = harness.mm.user_posts("alice", channel, "notes")["id"]
    await eventually(lambda: answers(harness, channel))  # "notes" is no command: the help comes

    harness.mm.user_posts("alice", channel, f"/jira assign {key} me", root_id=root)

    await eventually(lambda: harness.cloud.issues[key]["assignee"] == alice)
    [answer] = await eventually(lambda: [p for p in answers(harness, channel) if p["root_id"] == root])
    assert key in answer["message"]


async def test_unknown_text_gets_the_help_with_the_dm_hint(harness: Harness, chat: ChatListener) -> None:
    channel = dm_with_bot(harness, "bob")
    harness.mm.user_posts("bob", channel, "hello there")

    [answer] = await eventually(lambda: answers(harness, channel))
    assert answer["message"].startswith(DM_HINT)
    assert "Unknown command `/jira hello` — did you mean `/jira help`?" in answer["message"]


async def test_a_command_that_opens_a_dialog_points_to_the_slash_command(
    harness: Harness, chat: ChatListener
) -> None:
    channel = dm_with_bot(harness, "bob")
    harness.mm.user_posts("bob", channel, "connect dc")  # Server without application link: token dialog

    [answer] = await eventually(lambda: answers(harness, channel))
    assert answer["message"] == (
        "This command opens a form, which only the slash command can do: type `/jira connect dc`."
    )
    assert harness.mm.dialogs == []


def test_command_text_drops_a_typed_prefix() -> None:
    assert command_text("  /jira view ABC-1 ") == "view ABC-1"
    assert command_text("Jira assign ABC-1 me") == "assign ABC-1 me"
    assert command_text("jiranotes") == "jiranotes"
    assert command_text("/jira") == ""


def test_response_posts_show_attachments_links_and_extra_responses() -> None:
    response = CommandResponse.ephemeral(
        "first",
        goto_location="https://jira.example.com/x",
        extra_responses=[CommandResponse.in_channel("second", props={"k": "v"})],
    )
    assert response_posts(response) == [
        ("first\n[Open](https://jira.example.com/x)", {}),
        ("second", {"k": "v"}),
    ]
    assert response_posts(CommandResponse.ephemeral("")) == []
