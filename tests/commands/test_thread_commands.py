"""Jira from a message: `/jira create … <message link>` pre-fills the description with the message
(for a reply, its thread's first message) and its permalink; `/jira attach KEY <message link>` adds
that message, with its files, to an issue as a comment and answers in its thread. The slash
command forms are exactly what Mattermost sends (no root_id): the message is named by its link
or its post id. The mention form (`@jira attach KEY` in the thread) is tested in tests/chat."""

from __future__ import annotations

from typing import Any

import pytest

from bot.commands.handlers import thread
from bot.commands.thread_message import (
    NOT_A_MEMBER,
    MessageRef,
    RootMessage,
    attach_comment,
    create_description,
    parse_message_ref,
    permalink,
)
from bot.mattermost.models import DeliveryError
from bot.render.markup import ZERO_WIDTH_JOINER
from tests.commands.conftest import Harness

ZWJ = ZERO_WIDTH_JOINER
ROOT_TEXT = "The login page answers 500 since the upgrade.\nSee the log."


async def cloud_alice(harness: Harness, **project: Any) -> str:
    """Alice connected to Jira Cloud, with the project PROJ (Task and Bug); returns her account id."""
    alice = harness.cloud.add_user("Alice Liddell", email="alice@example.com")
    await harness.connect_cloud("alice", alice)
    harness.cloud.add_project("PROJ", "Project", issue_types=("Task", "Bug"), **project)
    return alice


def bobs_message(harness: Harness, channel: str = "dev", **kw: Any) -> str:
    """Bob's message in the channel, which Alice then answers in its thread; returns its id."""
    return harness.mm.add_post(harness.user("bob"), harness.channels[channel], ROOT_TEXT, **kw)


def elements(opened: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in opened["dialog"]["elements"]}


def link_to(harness: Harness, post_id: str) -> str:
    return f"{harness.mm.url}/acme/pl/{post_id}"


def thread_replies(harness: Harness, root_id: str) -> list[dict[str, Any]]:
    return [p for p in harness.mm.posts if p["root_id"] == root_id]


# -- the texts (pure) -----------------------------------------------------------------------------


def test_the_description_quotes_the_message_and_ends_with_its_permalink() -> None:
    root = RootMessage("p1", "Broken {quote} here", "bob", "https://chat.example.com/acme/pl/p1")
    assert create_description(root) == (
        "{quote}\nBroken \\{quote} here\n{quote}\nPosted by @bob in Mattermost: https://chat.example.com/acme/pl/p1"
    )


def test_a_long_message_is_shortened_so_the_permalink_survives() -> None:
    root = RootMessage("p1", "é" * 5000, "bob", "https://chat.example.com/acme/pl/p1")
    text = create_description(root, limit=3000)
    assert len(text.encode()) <= 3000
    assert text.endswith("…\n{quote}\nPosted by @bob in Mattermost: https://chat.example.com/acme/pl/p1")


def test_a_message_of_files_only_and_an_unknown_author() -> None:
    root = RootMessage("p1", "  ", "", "")
    assert create_description(root) == "Posted in Mattermost"
    assert attach_comment(root, ["a.png"], [("big [v2].zip", "https://chat/api/v4/files/f2")]) == (
        "Posted in Mattermost\nFiles: [^a.png], [big (v2).zip|https://chat/api/v4/files/f2]"
    )


def test_a_message_is_named_by_its_permalink_or_its_post_id() -> None:
    post_id = "zyn6m69z9hde9a7yqiwz9dm8py"
    assert parse_message_ref(f"https://chat.example.com/acme/pl/{post_id}") == MessageRef(post_id, "acme")
    assert parse_message_ref(f"<https://chat.example.com/sub/path/acme/pl/{post_id}>") == MessageRef(
        post_id, "acme"
    )
    assert parse_message_ref(f"https://chat.example.com/_redirect/pl/{post_id}") == MessageRef(post_id)
    assert parse_message_ref(post_id) == MessageRef(post_id)
    for other in (
        "ABC-1",
        "Login",
        post_id[:25],
        post_id.upper(),
        f"https://chat.example.com/acme/channels/{post_id}",
    ):
        assert parse_message_ref(other) is None


def test_permalink_needs_the_site_and_the_team() -> None:
    assert permalink("https://chat.example.com/", "acme", "p1") == "https://chat.example.com/acme/pl/p1"
    assert permalink("", "acme", "p1") == "" and permalink("https://chat.example.com", "", "p1") == ""


# -- create in a thread ---------------------------------------------------------------------------


async def test_create_from_a_link_prefills_the_description_and_answers_in_its_thread(
    harness: Harness,
) -> None:
    await cloud_alice(harness)
    root = bobs_message(harness)
    answer = await harness.command("alice", f"create --type Bug Login answers 500 {link_to(harness, root)}")
    assert answer["text"] == ""
    form = elements(harness.mm.dialogs[-1])
    expected = "{quote}\n" + ROOT_TEXT + "\n{quote}\nPosted by @bob in Mattermost: " + link_to(harness, root)
    assert form["description"]["default"] == expected
    assert form["summary"]["default"] == "Login answers 500"

    status, body = await harness.submit("alice", {"summary": "Login answers 500", "description": expected})
    assert (status, body) == (200, {})
    assert harness.cloud.issue("PROJ-1")["description"] == expected
    [reply] = thread_replies(harness, root)
    assert reply["message"].startswith(f"@{ZWJ}alice created a Jira issue [PROJ-1: Login answers 500](")


async def test_the_message_goes_along_through_the_type_buttons(harness: Harness) -> None:
    await cloud_alice(harness)
    root = bobs_message(harness)
    answer = await harness.command("alice", f"create Login answers 500 {root}")  # a bare post id
    status, _ = await harness.click("alice", answer, "Task")
    assert status == 200
    assert link_to(harness, root) in elements(harness.mm.dialogs[-1])["description"]["default"]


async def test_create_outside_a_thread_leaves_the_description_empty(harness: Harness) -> None:
    await cloud_alice(harness)
    await harness.command("alice", "create --type Bug Login answers 500")
    assert elements(harness.mm.dialogs[-1])["description"]["default"] == ""
    await harness.submit("alice", {"summary": "Login answers 500"})
    [post] = harness.mm.posts_in(harness.channels["dev"])
    assert post["root_id"] == ""


async def test_create_from_a_message_the_bot_cannot_read_says_how_to_fix_it(harness: Harness) -> None:
    await cloud_alice(harness)
    members = [harness.user("alice"), harness.user("bob")]
    harness.channels["secret"] = harness.mm.add_channel("acme", "secret", private=True, members=members)
    root = bobs_message(harness, "secret")
    answer = await harness.command(
        "alice", f"create --type Bug Login {link_to(harness, root)}", channel="secret"
    )
    assert answer["text"].startswith(f"The bot cannot read the message `{root}`")
    assert "add the bot to the channel" in answer["text"]
    assert harness.mm.dialogs == []


async def test_create_from_a_message_in_a_channel_the_caller_is_not_in_is_refused(harness: Harness) -> None:
    await cloud_alice(harness)
    harness.channels["private"] = harness.mm.add_channel(
        "acme", "private", private=True, members=[harness.user("bob"), harness.mm.bot_user_id]
    )
    root = bobs_message(harness, "private")
    answer = await harness.command("alice", f"create --type Bug Leak {link_to(harness, root)}")
    assert answer["text"] == NOT_A_MEMBER
    assert harness.mm.dialogs == []


# -- attach ---------------------------------------------------------------------------------------


async def test_attach_adds_the_message_and_its_files_as_the_users_comment(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(thread, "MAX_FILE_BYTES", 1000)
    alice = await cloud_alice(harness)
    key = harness.cloud.add_issue("PROJ", "Login fails")
    log = b"\x00\x01 stack trace \xff" * 10
    root = bobs_message(
        harness,
        files=[("server.log", log, "text/plain"), ("dump.bin", b"x" * 2000, "application/octet-stream")],
    )
    big_id = harness.mm.get_post(root)["file_ids"][1]  # type: ignore[index]

    answer = await harness.command("alice", f"attach {key} {link_to(harness, root)}")
    link = f"[{key}: Login fails]({harness.cloud_url}/browse/{key})"
    assert answer["text"] == f"Added the message (1 file attached, 1 linked) to {link} as a comment."

    [uploaded] = harness.cloud.attachments[key]
    assert (uploaded["filename"], uploaded["bytes"]) == ("server.log", log)
    assert uploaded["author"]["accountId"] == alice
    [comment] = harness.cloud.comments[key]
    assert comment["author"]["accountId"] == alice
    assert comment["body"] == "\n".join(
        [
            f"Posted by @bob in Mattermost: {link_to(harness, root)}",
            "{quote}",
            ROOT_TEXT,
            "{quote}",
            f"Files: [^server.log], [dump.bin|{harness.mm.url}/api/v4/files/{big_id}]",
        ]
    )
    # Cloud: everything went through the API gateway with Alice's OAuth token.
    assert all(r.gateway for r in harness.cloud.requests if r.user)
    [reply] = thread_replies(harness, root)
    assert reply["message"] == f"@{ZWJ}alice added this message to Jira issue {link}"
    assert reply["user_id"] == harness.mm.bot_user_id


async def test_attach_on_server_with_the_issue_alias(harness: Harness) -> None:
    alice_jira = harness.server.add_user("Alice Liddell", name="alice")
    await harness.connect_server("alice", alice_jira)
    harness.server.add_project("OPS")
    key = harness.server.add_issue("OPS", "Disk full")
    root = bobs_message(harness, files=[("df.txt", b"/dev/sda1 100%", "text/plain")])

    answer = await harness.command("alice", f"issue attach {key.lower()} {root} --instance dc")
    assert "(1 file attached)" in answer["text"]
    assert harness.server.attachments[key][0]["bytes"] == b"/dev/sda1 100%"
    assert harness.server.comments[key][0]["author"]["name"] == "alice"
    assert len(thread_replies(harness, root)) == 1


async def test_files_jira_does_not_take_are_linked(harness: Harness) -> None:
    await cloud_alice(harness)
    harness.cloud.attachments_enabled = False
    key = harness.cloud.add_issue("PROJ", "Login fails")
    root = bobs_message(harness, files=[("shot.png", b"\x89PNG", "image/png")])
    answer = await harness.command("alice", f"attach {key} {link_to(harness, root)}")
    assert "(1 linked)" in answer["text"]
    file_id = harness.mm.get_post(root)["file_ids"][0]  # type: ignore[index]
    assert harness.cloud.comments[key][0]["body"].endswith(
        f"Files: [shot.png|{harness.mm.url}/api/v4/files/{file_id}]"
    )


async def test_attach_without_a_link_says_exactly_how_to_get_one(harness: Harness) -> None:
    await cloud_alice(harness)
    root = bobs_message(harness)
    # Typed in the message's thread: Mattermost does not tell the bot, so the link is still needed.
    answer = await harness.command("alice", "attach PROJ-1", root_id=root)
    assert answer["text"] == (
        "Name the message: hover it, click ⋯ > Copy Link, then `/jira attach PROJ-1 <link>`. "
        "Or reply to it in its thread with `@jira attach …` (the bot must be a member of the channel)."
    )
    assert "give the issue key" in (await harness.command("alice", f"attach {root}"))["text"]


async def test_a_replys_link_attaches_its_threads_first_message(harness: Harness) -> None:
    await cloud_alice(harness)
    key = harness.cloud.add_issue("PROJ", "Login fails")
    root = bobs_message(harness)
    reply = harness.mm.add_post(harness.user("alice"), harness.channels["dev"], "Same here", root_id=root)
    answer = await harness.command("alice", f"attach {key} {link_to(harness, reply)}")
    assert answer["text"].startswith("Added the message to")
    [comment] = harness.cloud.comments[key]
    assert ROOT_TEXT in comment["body"] and "Same here" not in comment["body"]
    assert link_to(harness, root) in comment["body"]
    [_, answered] = thread_replies(harness, root)
    assert answered["user_id"] == harness.mm.bot_user_id


async def test_a_message_in_a_channel_the_caller_cannot_read_is_refused(harness: Harness) -> None:
    await cloud_alice(harness)
    key = harness.cloud.add_issue("PROJ", "Login fails")
    # The bot is in the private channel and can read it; Alice is not.
    harness.channels["private"] = harness.mm.add_channel(
        "acme", "private", private=True, members=[harness.user("bob"), harness.mm.bot_user_id]
    )
    root = bobs_message(harness, "private")
    answer = await harness.command("alice", f"attach {key} {link_to(harness, root)}")
    assert answer["text"] == NOT_A_MEMBER
    assert harness.cloud.comments[key] == [] and thread_replies(harness, root) == []
    asked = harness.mm.requests_to(
        f"/api/v4/channels/{harness.channels['private']}/members/{harness.user('alice')}"
    )
    assert len(asked) == 1


async def test_a_post_that_does_not_exist_is_refused(harness: Harness) -> None:
    await cloud_alice(harness)
    key = harness.cloud.add_issue("PROJ", "Login fails")
    missing = "x" * 26
    answer = await harness.command("alice", f"attach {key} {link_to(harness, missing)}")
    assert answer["text"].startswith(f"The bot cannot read the message `{missing}`: it does not exist")
    deleted = bobs_message(harness)
    harness.mm.delete_post(deleted)
    answer = await harness.command("alice", f"attach {key} {deleted}")
    assert answer["text"].startswith(f"The bot cannot read the message `{deleted}`")
    assert harness.cloud.comments[key] == []


async def test_attach_to_an_issue_the_user_cannot_see_or_change(harness: Harness) -> None:
    await cloud_alice(harness, editors=[])
    key = harness.cloud.add_issue("PROJ", "Login fails")
    root = bobs_message(harness, files=[("server.log", b"trace", "text/plain")])

    answer = await harness.command("alice", f"attach PROJ-99 {root}")
    assert "cannot see it" in answer["text"]
    answer = await harness.command("alice", f"attach {key} {root}")
    assert "not allowed to do this" in answer["text"]
    assert harness.cloud.comments[key] == [] and key not in harness.cloud.attachments
    assert thread_replies(harness, root) == []


async def test_attach_when_not_connected(harness: Harness) -> None:
    root = bobs_message(harness)
    answer = await harness.command("bob", f"attach PROJ-1 {root} --instance cloud")
    assert "not connected" in answer["text"] and "/jira connect" in answer["text"]


async def test_a_message_of_another_channel_the_caller_is_in_is_answered_there(harness: Harness) -> None:
    await cloud_alice(harness)
    key = harness.cloud.add_issue("PROJ", "Login fails")
    elsewhere = bobs_message(harness, "ops")
    answer = await harness.command("alice", f"attach {key} {link_to(harness, elsewhere)}", channel="dev")
    assert answer["text"].startswith("Added the message to")
    assert len(harness.cloud.comments[key]) == 1
    [reply] = thread_replies(harness, elsewhere)
    assert reply["channel_id"] == harness.channels["ops"]


async def test_an_issue_with_a_security_level_is_named_by_key_only_in_the_thread(harness: Harness) -> None:
    alice = await cloud_alice(harness)
    harness.cloud.set_security_level("Staff", [alice])
    key = harness.cloud.add_issue("PROJ", "Salary table", security="Staff")
    root = bobs_message(harness)
    await harness.command("alice", f"attach {key} {link_to(harness, root)}")
    [reply] = thread_replies(harness, root)
    assert (
        reply["message"]
        == f"@{ZWJ}alice added this message to Jira issue [{key}]({harness.cloud_url}/browse/{key})"
    )


async def test_the_client_reads_files_as_bytes_within_a_limit(harness: Harness) -> None:
    client = harness.services.commands.deps.mattermost  # type: ignore[union-attr]
    content = b'{"looks": "like json"}'
    root = bobs_message(harness, files=[("data.json", content, "application/json")])
    [info] = await client.get_file_infos(root)
    assert (info["name"], info["size"]) == ("data.json", len(content))
    # Served as application/json, yet handed back byte for byte rather than parsed.
    assert await client.get_file(info["id"], max_bytes=1000) == content
    with pytest.raises(DeliveryError) as too_big:
        await client.get_file(info["id"], max_bytes=5)
    assert too_big.value.status == 413
    with pytest.raises(DeliveryError) as missing:
        await client.get_file("x" * 26, max_bytes=1000)
    assert missing.value.status == 404


async def test_help_shows_the_link_form_and_the_mention_form(harness: Harness) -> None:
    text = (await harness.command("alice", "help"))["text"]
    [attach] = [line for line in text.splitlines() if " attach " in line]
    assert "`/jira attach ABC-1 https://chat.example.com/team/pl/…`" in attach and "Copy Link" in attach
    assert "`@jira attach ABC-1`" in attach
    [create] = [line for line in text.splitlines() if " create " in line and "issue" in line]
    assert "`/jira create Login fails https://chat.example.com/team/pl/…`" in create
    assert "`@jira create Login fails`" in create
