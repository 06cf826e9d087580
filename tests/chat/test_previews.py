"""Issue previews in channels: for connected authors who may see the issue, once per interval."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

from bot.chat import OPEN, ChatPost
from bot.chat.listener import ChatListener
from bot.chat.previews import IssuePreviews, issue_references, mentions_issue
from bot.instances import Instance
from bot.mattermost.models import OutgoingPost
from tests.chat.conftest import eventually, processed
from tests.commands.conftest import Harness


def previews_in(h: Harness, channel: str) -> list[dict[str, Any]]:
    return [p for p in h.mm.posts_in(h.channels[channel]) if p["user_id"] == h.mm.bot_user_id]


async def alice_and_issue(h: Harness, **project: Any) -> str:
    alice = h.cloud.add_user("Alice Liddell", email="alice@example.com")
    bob = h.cloud.add_user("Bob Builder", email="bob@example.com")
    await h.connect_cloud("alice", alice)
    h.cloud.add_project("PROJ", **project)
    return h.cloud.add_issue("PROJ", "Login fails [again] @channel", assignee=bob, priority="High")


async def test_a_preview_appears_once_per_channel_within_the_interval(
    harness: Harness, chat: ChatListener
) -> None:
    key = await alice_and_issue(harness)
    first = harness.mm.user_posts("alice", harness.channels["dev"], f"Can someone look at {key}?")

    [preview] = await eventually(lambda: previews_in(harness, "dev"))
    assert preview["root_id"] == first["id"]
    assert preview["message"] == (
        # The summary reads as typed: its brackets are escaped in the link text, not replaced.
        f"[{key}: Login fails \\[again\\] @\u200dchannel]({harness.cloud_url}/browse/{key})\n"
        "Status: **To Do** · Assignee: **Bob Builder** · Priority: **High**"
    )

    harness.mm.user_posts("alice", harness.channels["dev"], f"{key} is still broken")
    harness.mm.user_posts(
        "alice", harness.channels["dev"], "reply", root_id=first["id"]
    )  # no key: not queued
    await processed(chat, 2)
    assert len(previews_in(harness, "dev")) == 1

    harness.mm.user_posts("alice", harness.channels["ops"], f"{harness.cloud_url}/browse/{key} hurts ops too")
    [other] = await eventually(lambda: previews_in(harness, "ops"))
    assert other["message"] == preview["message"]


async def test_after_the_interval_the_issue_is_previewed_again(harness: Harness) -> None:
    key = await alice_and_issue(harness)
    assert harness.services.commands is not None
    deps = harness.services.commands.deps
    start = datetime.now(UTC)
    interval = timedelta(minutes=10)
    previews = IssuePreviews(dataclasses.replace(deps, clock=lambda: start), interval=interval)
    previews_later = IssuePreviews(
        dataclasses.replace(deps, clock=lambda: start + interval * 1.1), interval=interval
    )

    def post() -> ChatPost:
        made = harness.mm.user_posts("alice", harness.channels["dev"], f"about {key}")
        found = ChatPost.from_api(made, channel_type=OPEN)
        assert found is not None
        return found

    await previews.handle(post())
    await previews.handle(post())
    assert len(previews_in(harness, "dev")) == 1
    await previews_later.handle(post())
    assert len(previews_in(harness, "dev")) == 2


async def test_no_preview_when_the_author_cannot_see_the_issue(harness: Harness, chat: ChatListener) -> None:
    carol = harness.cloud.add_user("Carol")
    key = await alice_and_issue(harness, browse=[carol])
    harness.mm.user_posts("alice", harness.channels["dev"], f"what is {key}?")
    harness.mm.user_posts("bob", harness.channels["dev"], f"and {key}?")  # bob is not connected at all
    await processed(chat, 2)
    assert previews_in(harness, "dev") == []


async def test_no_preview_of_an_issue_under_a_security_level(harness: Harness, chat: ChatListener) -> None:
    alice = harness.cloud.add_user("Alice Liddell")
    await harness.connect_cloud("alice", alice)
    harness.cloud.add_project("PROJ")
    harness.cloud.set_security_level("Staff", [alice])
    key = harness.cloud.add_issue("PROJ", "Salaries", security="Staff")
    harness.mm.user_posts("alice", harness.channels["dev"], f"see {key}")
    await processed(chat, 1)
    assert previews_in(harness, "dev") == []


async def test_no_preview_for_the_bots_own_posts_or_other_bots(harness: Harness, chat: ChatListener) -> None:
    key = await alice_and_issue(harness)
    assert harness.services.commands is not None
    await harness.services.commands.deps.mattermost.create_post(
        OutgoingPost(channel_id=harness.channels["dev"], message=f"{key} was created")
    )
    other_bot = harness.mm.add_user("ci-bot", is_bot=True)
    harness.mm.user_posts(other_bot, harness.channels["dev"], f"build failed for {key}")
    human = harness.mm.user_posts("alice", harness.channels["dev"], f"{key}!")

    [preview] = await eventually(lambda: [p for p in previews_in(harness, "dev") if p["root_id"]])
    assert preview["root_id"] == human["id"]
    await processed(chat, 1)
    assert chat.processed == 1  # the two bot posts were never queued


async def test_a_shared_card_is_not_previewed(harness: Harness) -> None:
    assert harness.services.commands is not None
    previews = IssuePreviews(harness.services.commands.deps, interval=timedelta(minutes=1))
    post = ChatPost(id="p" * 26, channel_id="c" * 26, user_id="u" * 26, message="PROJ-1", channel_type=OPEN)
    assert previews.wants(post)
    assert not previews.wants(dataclasses.replace(post, props={"attachments": [{"title": "PROJ-1: Login"}]}))


def test_references_from_keys_and_browse_urls() -> None:
    cloud = Instance(url="https://acme.atlassian.net", type="cloud")
    server = Instance(url="https://jira.example.com/jira", type="server")
    message = (
        "PROJ-1 and https://jira.example.com/jira/browse/OPS-12 again PROJ-1, "
        "not proj-2, not https://github.com/x/ABC-3, not `CODE-4`, not XPROJ-1X, "
        "but https://acme.atlassian.net/browse/PROJ-1 and WEB_2-30."
    )
    assert issue_references(message, [cloud, server]) == [
        ("https://jira.example.com/jira", "OPS-12"),
        ("https://acme.atlassian.net", "PROJ-1"),
        (None, "WEB_2-30"),
    ]
    assert mentions_issue("look at ABC-12")
    assert mentions_issue("https://other.example/browse/ABC-12")
    assert not mentions_issue("nothing here, not even ```\nABC-1\n``` or a-1")
