"""Jira from a thread: `/jira create` pre-fills the description with the thread's first message
and its permalink; `/jira attach KEY` adds that message, with its files, to an issue as a comment
and answers in the thread."""

from __future__ import annotations

from typing import Any

import pytest

from bot.commands.handlers import thread
from bot.commands.thread_message import RootMessage, attach_comment, create_description, permalink
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


def test_permalink_needs_the_site_and_the_team() -> None:
    assert permalink("https://chat.example.com/", "acme", "p1") == "https://chat.example.com/acme/pl/p1"
    assert permalink("", "acme", "p1") == "" and permalink("https://chat.example.com", "", "p1") == ""


# -- create in a thread ---------------------------------------------------------------------------


async def test_create_in_a_thread_prefills_the_description_and_answers_there(harness: Harness) -> None:
    await cloud_alice(harness)
    root = bobs_message(harness)
    answer = await harness.command("alice", "create --type Bug Login answers 500", root_id=root)
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


async def test_the_thread_goes_along_through_the_type_buttons(harness: Harness) -> None:
    await cloud_alice(harness)
    root = bobs_message(harness)
    answer = await harness.command("alice", "create Login answers 500", root_id=root)
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


async def test_a_thread_the_bot_cannot_read_leaves_only_its_permalink(harness: Harness) -> None:
    await cloud_alice(harness)
    members = [harness.user("alice"), harness.user("bob")]
    harness.channels["secret"] = harness.mm.add_channel("acme", "secret", private=True, members=members)
    root = bobs_message(harness, "secret")
    await harness.command("alice", "create --type Bug Login", channel="secret", root_id=root)
    assert elements(harness.mm.dialogs[-1])["description"]["default"] == (
        f"From Mattermost: {link_to(harness, root)}"
    )


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

    answer = await harness.command("alice", f"attach {key}", root_id=root)
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

    answer = await harness.command("alice", f"issue attach {key.lower()} --instance dc", root_id=root)
    assert "(1 file attached)" in answer["text"]
    assert harness.server.attachments[key][0]["bytes"] == b"/dev/sda1 100%"
    assert harness.server.comments[key][0]["author"]["name"] == "alice"
    assert len(thread_replies(harness, root)) == 1


async def test_files_jira_does_not_take_are_linked(harness: Harness) -> None:
    await cloud_alice(harness)
    harness.cloud.attachments_enabled = False
    key = harness.cloud.add_issue("PROJ", "Login fails")
    root = bobs_message(harness, files=[("shot.png", b"\x89PNG", "image/png")])
    answer = await harness.command("alice", f"attach {key}", root_id=root)
    assert "(1 linked)" in answer["text"]
    file_id = harness.mm.get_post(root)["file_ids"][0]  # type: ignore[index]
    assert harness.cloud.comments[key][0]["body"].endswith(
        f"Files: [shot.png|{harness.mm.url}/api/v4/files/{file_id}]"
    )


async def test_attach_outside_a_thread_says_where_to_run_it(harness: Harness) -> None:
    await cloud_alice(harness)
    answer = await harness.command("alice", "attach PROJ-1")
    assert "in the thread of the message" in answer["text"]
    assert "give the issue key" in (await harness.command("alice", "attach", root_id="x" * 26))["text"]


async def test_attach_to_an_issue_the_user_cannot_see_or_change(harness: Harness) -> None:
    await cloud_alice(harness, editors=[])
    key = harness.cloud.add_issue("PROJ", "Login fails")
    root = bobs_message(harness, files=[("server.log", b"trace", "text/plain")])

    answer = await harness.command("alice", "attach PROJ-99", root_id=root)
    assert "cannot see it" in answer["text"]
    answer = await harness.command("alice", f"attach {key}", root_id=root)
    assert "not allowed to do this" in answer["text"]
    assert harness.cloud.comments[key] == [] and key not in harness.cloud.attachments
    assert thread_replies(harness, root) == []


async def test_attach_when_not_connected(harness: Harness) -> None:
    root = bobs_message(harness)
    answer = await harness.command("bob", "attach PROJ-1 --instance cloud", root_id=root)
    assert "not connected" in answer["text"] and "/jira connect" in answer["text"]


async def test_a_message_of_another_channel_is_not_read(harness: Harness) -> None:
    await cloud_alice(harness)
    key = harness.cloud.add_issue("PROJ", "Login fails")
    elsewhere = bobs_message(harness, "ops")
    answer = await harness.command("alice", f"attach {key}", channel="dev", root_id=elsewhere)
    assert "cannot read the first message" in answer["text"]
    assert harness.cloud.comments[key] == []


async def test_an_issue_with_a_security_level_is_named_by_key_only_in_the_thread(harness: Harness) -> None:
    alice = await cloud_alice(harness)
    harness.cloud.set_security_level("Staff", [alice])
    key = harness.cloud.add_issue("PROJ", "Salary table", security="Staff")
    root = bobs_message(harness)
    await harness.command("alice", f"attach {key}", root_id=root)
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
