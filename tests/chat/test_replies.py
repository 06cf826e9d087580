"""Reply to act: a reply in the thread of a notification DM becomes a comment on its issue, with
the replying user's own Jira identity, over the fake Mattermost's websocket."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bot.chat.listener import ChatListener
from bot.notify.threads import notification_thread, remember_notification
from tests.chat.conftest import eventually, processed
from tests.commands.conftest import Harness
from tests.fakes import FakeJira


async def connected_issue(h: Harness, mm_user: str, flavour: str) -> tuple[str, str, FakeJira, str]:
    """`mm_user` connected to the Cloud or Server Jira, which has one issue: (key, Jira URL,
    the fake Jira, the user's Jira id)."""
    if flavour == "cloud":
        jira_user = h.cloud.add_user("Alice Liddell", email="alice@example.com")
        await h.connect_cloud(mm_user, jira_user)
        jira, url = h.cloud, h.cloud_url
    else:
        jira_user = h.server.add_user("Alice Liddell", name="alice")
        await h.connect_server(mm_user, jira_user)
        jira, url = h.server, h.server_url
    jira.add_project("PROJ")
    return jira.add_issue("PROJ", "Login fails", reporter=jira_user), url, jira, jira_user


async def notification(h: Harness, mm_user: str, instance_url: str, key: str) -> tuple[str, str]:
    """A notification DM from the bot to the user about `key`: (DM channel id, post id)."""
    assert h.services.commands is not None
    client = h.services.commands.deps.mattermost
    post_id = await client.send_direct_message(h.user(mm_user), f"You were assigned to {key}")
    await remember_notification(h.services.db.kv, post_id, instance_url, key, datetime.now(UTC))
    post = h.mm.get_post(post_id)
    assert post is not None
    return post["channel_id"], post_id


def bot_replies(h: Harness, root_id: str) -> list[str]:
    return [p["message"] for p in h.mm.posts if p["root_id"] == root_id and p["user_id"] == h.mm.bot_user_id]


@pytest.mark.parametrize("flavour", ["cloud", "server"])
async def test_a_reply_becomes_a_comment_with_the_users_identity(
    harness: Harness, chat: ChatListener, flavour: str
) -> None:
    key, url, jira, jira_user = await connected_issue(harness, "alice", flavour)
    channel, root = await notification(harness, "alice", url, key)

    reply = harness.mm.user_posts("alice", channel, "  On it, fixing it today.  ", root_id=root)

    [comment] = await eventually(lambda: jira.comments[key])
    assert comment["body"] == "On it, fixing it today."
    author_id = comment["author"]["accountId"] if flavour == "cloud" else comment["author"]["name"]
    assert author_id == jira_user
    reactions = await eventually(lambda: harness.mm.reactions)
    assert [(r["user_id"], r["post_id"], r["emoji_name"]) for r in reactions] == [
        (harness.mm.bot_user_id, reply["id"], "white_check_mark")
    ]
    assert bot_replies(harness, root) == []  # the reaction is the whole confirmation


async def test_without_reactions_the_confirmation_is_a_reply(harness: Harness, chat: ChatListener) -> None:
    key, url, jira, _ = await connected_issue(harness, "alice", "cloud")
    channel, root = await notification(harness, "alice", url, key)
    harness.mm.fail_next(1, 501, path="/api/v4/reactions")  # reactions switched off

    harness.mm.user_posts("alice", channel, "Done", root_id=root)

    [answer] = await eventually(lambda: bot_replies(harness, root))
    assert answer == f"Added your comment to [{key}]({url}/browse/{key})."
    assert [c["body"] for c in jira.comments[key]] == ["Done"]


async def test_a_user_who_is_not_connected_is_told_how_to_connect(
    harness: Harness, chat: ChatListener
) -> None:
    harness.cloud.add_project("PROJ")
    key = harness.cloud.add_issue("PROJ", "Login fails")
    channel, root = await notification(harness, "bob", harness.cloud_url, key)

    harness.mm.user_posts("bob", channel, "Looks fine", root_id=root)

    [answer] = await eventually(lambda: bot_replies(harness, root))
    assert answer.startswith(f"Your reply was not added to {key}. Your Mattermost account is not connected")
    assert "`/jira connect cloud`" in answer
    assert harness.cloud.comments[key] == []


async def test_jira_refusing_the_comment_is_explained(harness: Harness, chat: ChatListener) -> None:
    key, url, jira, _ = await connected_issue(harness, "alice", "cloud")
    jira.projects["PROJ"].editors = set()  # alice may read, not comment
    channel, root = await notification(harness, "alice", url, key)

    harness.mm.user_posts("alice", channel, "Me too", root_id=root)

    [answer] = await eventually(lambda: bot_replies(harness, root))
    assert answer == f"Your reply was not added to {key}: Your Jira account is not allowed to do this. " + (
        "Ask a Jira administrator for access."
    )
    assert jira.comments[key] == []


async def test_a_reply_in_another_thread_is_a_command_not_a_comment(
    harness: Harness, chat: ChatListener
) -> None:
    key, _, jira, _ = await connected_issue(harness, "alice", "cloud")
    assert harness.services.commands is not None
    client = harness.services.commands.deps.mattermost
    plain = await client.send_direct_message(harness.user("alice"), "Hello from Jira")  # not a notification
    channel = harness.mm.get_post(plain)["channel_id"]  # type: ignore[index]

    harness.mm.user_posts("alice", channel, f"view {key}", root_id=plain)

    [card] = await eventually(
        lambda: [
            p for p in harness.mm.posts if p["root_id"] == plain and p["user_id"] == harness.mm.bot_user_id
        ]
    )
    assert card["props"]["attachments"][0]["title"] == f"{key}: Login fails"
    await processed(chat, 1)
    assert jira.comments[key] == []


async def test_the_thread_record_expires(harness: Harness) -> None:
    kv = harness.services.db.kv
    now = datetime.now(UTC)
    await remember_notification(kv, "p" * 26, harness.cloud_url, "PROJ-7", now, ttl=timedelta(days=1))
    found = await notification_thread(kv, "p" * 26, now + timedelta(hours=23))
    assert found is not None and (found.instance, found.issue_key) == (harness.cloud_url, "PROJ-7")
    assert await notification_thread(kv, "p" * 26, now + timedelta(days=1, seconds=1)) is None
    assert await notification_thread(kv, "", now) is None
