"""A token Jira refuses disconnects its user, who is told by DM at most once per instance every
five minutes."""

from __future__ import annotations

import asyncio
import json

from tests.commands.conftest import Harness


def dms_to(harness: Harness, user: str) -> list[str]:
    return [p["message"] for p in harness.mm.posts if "did not accept your credentials" in p["message"]]


async def test_revoked_token_disconnects_and_sends_one_dm(harness: Harness) -> None:
    jira_alice = harness.server.add_user("Alice Liddell", name="alice")
    harness.server.add_project("OPS")
    key = harness.server.add_issue("OPS", "Disk full", reporter=jira_alice)

    for _ in range(2):
        await harness.connect_server("alice", jira_alice)
        assert "Disk full" in str(await harness.command("alice", f"view {key}"))
        harness.server._tokens.clear()  # the user revokes the token in Jira
        text = (await harness.command("alice", f"view {key}"))["text"]
        assert "did not accept your credentials" in text and "/jira connect" in text
        assert "not connected" in (await harness.command("alice", f"view {key} --instance dc"))["text"]
    # Two revocations within five minutes: one DM.
    assert len(dms_to(harness, "alice")) == 1


async def test_jira_down_is_explained_not_a_trace(harness: Harness) -> None:
    jira_alice = harness.server.add_user("Alice Liddell", name="alice")
    harness.server.add_project("OPS")
    key = harness.server.add_issue("OPS", "Disk full", reporter=jira_alice)
    await harness.connect_server("alice", jira_alice)
    harness.server.fail_next(3, 503)
    text = (await harness.command("alice", f"view {key}"))["text"]
    assert "Traceback" not in text and "try again" in text.lower()


async def test_slow_jira_gets_an_answer_within_two_seconds_and_the_card_later(harness: Harness) -> None:
    """Slow (about 5 s): the fake Jira takes 2.5 s per call, past the two-second answer, and the
    card comes once those calls are done."""
    jira_alice = harness.server.add_user("Alice Liddell", name="alice")
    harness.server.add_project("OPS")
    key = harness.server.add_issue("OPS", "Disk full", reporter=jira_alice)
    await harness.connect_server("alice", jira_alice)
    harness.server.latency = 2.5
    loop = asyncio.get_running_loop()
    started = loop.time()
    first = await harness.command("alice", f"view {key}")
    assert loop.time() - started < 2.0
    assert "Working on it" in first["text"]
    [late] = await harness.mm.wait_for_command_responses(1, timeout=15)
    assert "Disk full" in json.dumps(late)
