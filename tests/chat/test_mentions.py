"""In a channel's thread, a message that mentions the bot runs a command about that thread:
`@jira attach KEY` and `@jira create Summary`, answered in the thread. The bot learns the thread
from the post itself (the websocket's `posted` event), which a slash command never tells it."""

from __future__ import annotations

from typing import Any

from bot.chat.dm_commands import MENTION_HINT, mention_text
from bot.chat.listener import ChatListener
from bot.render.markup import ZERO_WIDTH_JOINER
from tests.chat.conftest import eventually
from tests.commands.conftest import Harness

ROOT_TEXT = "The login page answers 500 since the upgrade."


def bot_posts_in_thread(h: Harness, root: str) -> list[dict[str, Any]]:
    return [p for p in h.mm.posts if p["root_id"] == root and p["user_id"] == h.mm.bot_user_id]


async def alice_with_issue(h: Harness) -> str:
    alice = h.cloud.add_user("Alice Liddell", email="alice@example.com")
    await h.connect_cloud("alice", alice)
    h.cloud.add_project("PROJ", "Project", issue_types=("Bug",))
    return h.cloud.add_issue("PROJ", "Login fails")


def test_the_command_is_what_follows_the_mention_at_the_start() -> None:
    assert mention_text("@jira attach ABC-1", "jira") == "attach ABC-1"
    assert mention_text("  @Jira  create Login broken\nmore", "jira") == "create Login broken\nmore"
    assert mention_text("@jira", "jira") == ""
    for other in ("hey @jira attach ABC-1", "@jira-bot attach ABC-1", "@jirafan hi", "attach ABC-1"):
        assert mention_text(other, "jira") is None
    assert mention_text("@jira attach ABC-1", "") is None


async def test_attach_by_mention_in_the_thread_adds_its_first_message(
    harness: Harness, chat: ChatListener
) -> None:
    key = await alice_with_issue(harness)
    dev = harness.channels["dev"]
    root = harness.mm.user_posts("bob", dev, ROOT_TEXT)["id"]

    asked = harness.mm.user_posts("alice", dev, f"@jira attach {key}", root_id=root)

    [comment] = await eventually(lambda: harness.cloud.comments[key], timeout=30)
    assert comment["body"].startswith(f"Posted by @bob in Mattermost: {harness.mm.url}/")
    assert f"/pl/{root}" in comment["body"] and ROOT_TEXT in comment["body"]
    assert asked["message"] not in comment["body"]
    answers = await eventually(
        lambda: len(bot_posts_in_thread(harness, root)) >= 2 and bot_posts_in_thread(harness, root),
        timeout=30,
    )
    messages = [p["message"] for p in answers]
    assert f"@{ZERO_WIDTH_JOINER}alice added this message to Jira issue [{key}: Login fails]" in messages[0]
    assert messages[1].startswith("Added the message to")


async def test_create_by_mention_offers_the_form_prefilled_from_the_thread(
    harness: Harness, chat: ChatListener
) -> None:
    await alice_with_issue(harness)
    dev = harness.channels["dev"]
    root = harness.mm.user_posts("bob", dev, ROOT_TEXT)["id"]

    harness.mm.user_posts("alice", dev, "@jira create Login answers 500", root_id=root)

    # A mention brings no trigger id, so the answer in the thread is a button only Alice may use.
    [offer] = await eventually(lambda: bot_posts_in_thread(harness, root), timeout=30)
    assert offer["message"] == "Open the form:"
    status, _ = await harness.click("bob", offer["props"], "Open the form", post_id=offer["id"])
    assert status == 403 and harness.mm.dialogs == []  # the button is Alice's
    status, _ = await harness.click("alice", offer["props"], "Open the form", post_id=offer["id"])
    assert status == 200
    form = {e["name"]: e for e in harness.mm.dialogs[-1]["dialog"]["elements"]}
    assert form["summary"]["default"] == "Login answers 500"
    assert form["description"]["default"].startswith("{quote}\n" + ROOT_TEXT + "\n{quote}\nPosted by @bob")
    assert f"/pl/{root}" in form["description"]["default"]

    status, body = await harness.submit("alice", {"summary": "Login answers 500", "description": "d"})
    assert (status, body) == (200, {})
    created = await eventually(
        lambda: [p for p in bot_posts_in_thread(harness, root) if "created a Jira issue" in p["message"]]
    )
    assert len(created) == 1


async def test_other_commands_and_a_top_level_attach_say_how_to_use_the_mention(
    harness: Harness, chat: ChatListener
) -> None:
    await alice_with_issue(harness)
    dev = harness.channels["dev"]
    root = harness.mm.user_posts("bob", dev, ROOT_TEXT)["id"]
    harness.mm.user_posts("alice", dev, "@jira connect", root_id=root)
    [hint] = await eventually(lambda: bot_posts_in_thread(harness, root), timeout=30)
    assert hint["message"] == MENTION_HINT.format(bot="jira")

    top = harness.mm.user_posts("alice", dev, "@jira attach PROJ-1")["id"]
    [how] = await eventually(lambda: bot_posts_in_thread(harness, top), timeout=30)
    assert "⋯ > Copy Link, then `/jira attach PROJ-1 <link>`" in how["message"]
    assert harness.cloud.comments["PROJ-1"] == []


async def test_the_bot_hears_mentions_only_in_channels_it_is_a_member_of(
    harness: Harness, chat: ChatListener
) -> None:
    await alice_with_issue(harness)
    members = [harness.user("alice"), harness.user("bob")]
    outside = harness.mm.add_channel("acme", "no-bot", members=members)
    lonely = harness.mm.user_posts("bob", outside, ROOT_TEXT)["id"]
    harness.mm.user_posts("alice", outside, "@jira attach PROJ-1", root_id=lonely)
    dev = harness.channels["dev"]
    root = harness.mm.user_posts("bob", dev, ROOT_TEXT)["id"]
    harness.mm.user_posts("alice", dev, "@jira attach PROJ-1", root_id=root)

    await eventually(lambda: len(bot_posts_in_thread(harness, root)) >= 2, timeout=30)
    # Mattermost sends the bot no event for a channel it is not in.
    assert bot_posts_in_thread(harness, lonely) == []
    assert len(harness.cloud.comments["PROJ-1"]) == 1
