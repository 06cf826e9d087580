"""The websocket listener: reconnection, catch-up of what was posted meanwhile, each post handled
once (also across a restart and between replicas), and a failing handler not stopping it."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest

from bot.chat import ChatPost
from bot.chat import listener as listener_module
from bot.chat.listener import CLAIM_PREFIX, DONE, LAST_SEEN_KEY, ChatListener
from bot.chat.previews import IssuePreviews
from tests.chat.conftest import eventually, new_listener, processed
from tests.commands.conftest import Harness


def dm_answers(h: Harness, channel: str) -> list[dict[str, Any]]:
    return [p for p in h.mm.posts_in(channel) if p["user_id"] == h.mm.bot_user_id]


async def test_a_post_made_while_disconnected_is_handled_once_after_reconnection(
    harness: Harness, chat: ChatListener
) -> None:
    mm = harness.mm
    channel = mm.direct_channel(mm.bot_user_id, harness.user("bob"))
    mm.user_posts("bob", channel, "about")
    await eventually(lambda: dm_answers(harness, channel))
    await asyncio.sleep(0.1)  # let the watermark be saved

    assert await mm.drop_websockets(refuse=True) == 1
    await eventually(lambda: not chat.connected)
    mm.user_posts("bob", channel, "me")
    # The listener keeps trying (and is refused) while the post waits.
    await eventually(
        lambda: len([r for r in mm.requests if r.path == "/api/v4/websocket" and r.status == 503]) >= 2
    )
    assert len(dm_answers(harness, channel)) == 1
    mm.allow_websockets()

    await mm.wait_for_websocket(connects=2)
    answers = await eventually(lambda: dm_answers(harness, channel)[1:])
    assert "You are not connected to any Jira instance" in answers[0]["message"]
    assert mm.requests_to(f"/api/v4/channels/{channel}/posts", "GET")  # found by the catch-up
    await processed(chat, 2)
    await asyncio.sleep(0.2)
    assert len(dm_answers(harness, channel)) == 2  # handled exactly once
    assert chat.handled == 2


async def test_a_restart_catches_up_from_the_stored_watermark(harness: Harness) -> None:
    mm = harness.mm
    channel = mm.direct_channel(mm.bot_user_id, harness.user("bob"))
    first = new_listener(harness)
    await first.start()
    await mm.wait_for_websocket()
    mm.user_posts("bob", channel, "me")
    await eventually(lambda: dm_answers(harness, channel))
    await first.stop()
    stored = await harness.services.db.kv.get(LAST_SEEN_KEY, now=harness.services.commands.deps.clock())  # type: ignore[union-attr]
    assert isinstance(stored, int) and stored >= mm.posts_in(channel)[0]["create_at"]

    mm.user_posts("bob", channel, "about")  # nobody listens
    second = new_listener(harness)
    await second.start()
    try:
        answers = await eventually(lambda: dm_answers(harness, channel)[1:])
        assert answers[0]["message"].startswith("**jira-chatops**")  # `about`
        await processed(second, 1)
        await asyncio.sleep(0.1)
        assert len(dm_answers(harness, channel)) == 2  # "me" was not answered again
    finally:
        await second.stop()


async def test_two_replicas_answer_once(harness: Harness, chat: ChatListener) -> None:
    other = new_listener(harness)
    await other.start()
    try:
        await harness.mm.wait_for_websocket(connects=2)
        channel = harness.mm.direct_channel(harness.mm.bot_user_id, harness.user("bob"))
        harness.mm.user_posts("bob", channel, "me")
        await processed(chat, 1)
        await processed(other, 1)
        assert len(dm_answers(harness, channel)) == 1
        assert chat.handled + other.handled == 1
    finally:
        await other.stop()


class FlakyPreviews(IssuePreviews):
    """Records the posts it gets; fails on the first one."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.calls: list[str] = []

    async def handle(self, post: ChatPost) -> None:
        self.calls.append(post.message)
        if len(self.calls) == 1:
            raise RuntimeError("boom")


async def test_a_failing_handler_is_logged_and_the_listener_goes_on(harness: Harness, caplog: Any) -> None:
    mm = harness.mm
    mm.add_member(harness.channels["dev"], mm.bot_user_id)
    assert harness.services.commands is not None
    deps = harness.services.commands.deps
    previews = FlakyPreviews(deps, interval=timedelta(hours=1))
    listener = ChatListener(
        mattermost=deps.mattermost,
        token=mm.token,
        kv=deps.db.kv,
        clock=deps.clock,
        previews=previews,
        websocket_options={"backoff_base_seconds": 0.02, "backoff_max_seconds": 0.1},
    )
    await listener.start()
    try:
        await mm.wait_for_websocket()
        mm.user_posts("alice", harness.channels["dev"], "ABC-1")
        mm.user_posts("alice", harness.channels["dev"], "ABC-2")
        await processed(listener, 2)
        mm.user_posts("alice", harness.channels["dev"], "ABC-3")
        await processed(listener, 3)
    finally:
        await listener.stop()
    assert sorted(previews.calls) == ["ABC-1", "ABC-2", "ABC-3"]
    assert "handling post" in caplog.text and "boom" in caplog.text


async def test_a_wrong_token_never_connects_and_is_retried(harness: Harness, caplog: Any) -> None:
    assert harness.services.commands is not None
    deps = harness.services.commands.deps
    listener = ChatListener(
        mattermost=deps.mattermost,
        token="not-the-token",
        kv=deps.db.kv,
        clock=deps.clock,
        websocket_options={"backoff_base_seconds": 0.02, "backoff_max_seconds": 0.05},
    )
    await listener.start()
    try:
        await eventually(lambda: len(harness.mm.requests_to("/api/v4/websocket")) >= 3)
        assert harness.mm.websocket_connects == 0 and not listener.connected
    finally:
        await listener.stop()
    assert "is the bot token valid?" in caplog.text


async def test_the_fake_websocket_authenticates_by_challenge_and_numbers_events(harness: Harness) -> None:
    mm = harness.mm
    channel = mm.direct_channel(mm.bot_user_id, harness.user("bob"))
    async with aiohttp.ClientSession() as session, session.ws_connect(mm.url + "/api/v4/websocket") as ws:
        await ws.send_json({"seq": 1, "action": "ping"})
        assert (await ws.receive_json(timeout=2))["status"] == "FAIL"  # not authenticated yet
        await ws.send_json({"seq": 2, "action": "authentication_challenge", "data": {"token": mm.token}})
        assert await ws.receive_json(timeout=2) == {"status": "OK", "seq_reply": 2}
        hello = await ws.receive_json(timeout=2)
        assert (hello["event"], hello["seq"]) == ("hello", 0)
        post = mm.user_posts("bob", channel, "hi")
        event = await ws.receive_json(timeout=2)
    assert (event["event"], event["seq"]) == ("posted", 1)
    assert event["data"]["channel_type"] == "D" and event["broadcast"]["channel_id"] == channel
    assert json.loads(event["data"]["post"])["id"] == post["id"]


class StuckPreviews(IssuePreviews):
    """A replica that dies while handling: its handler never returns."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.started = asyncio.Event()

    async def handle(self, post: ChatPost) -> None:
        self.started.set()
        await asyncio.Event().wait()


class CountingPreviews(IssuePreviews):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.calls: list[str] = []

    async def handle(self, post: ChatPost) -> None:
        self.calls.append(post.message)


async def test_a_post_whose_replica_died_while_handling_it_is_taken_over(harness: Harness) -> None:
    """Takes a few seconds: the claim's lease (1 s here) must run out before the takeover."""
    mm = harness.mm
    mm.add_member(harness.channels["dev"], mm.bot_user_id)
    assert harness.services.commands is not None
    deps = harness.services.commands.deps
    stuck = StuckPreviews(deps, interval=timedelta(hours=1))
    counting = CountingPreviews(deps, interval=timedelta(hours=1))

    def replica(previews: IssuePreviews) -> ChatListener:
        return ChatListener(
            mattermost=deps.mattermost,
            token=mm.token,
            kv=deps.db.kv,
            clock=deps.clock,
            previews=previews,
            persist_interval_seconds=0.05,
            stop_grace_seconds=0.5,
            claim_lease_seconds=1.0,
            websocket_options={"backoff_base_seconds": 0.02, "backoff_max_seconds": 0.1},
        )

    dying = replica(stuck)
    await dying.start()
    try:
        await mm.wait_for_websocket()
        mm.user_posts("alice", harness.channels["dev"], "ABC-7")
        await asyncio.wait_for(stuck.started.wait(), 30)
        # The survivor sees the same post; the claim is held, so it waits for the lease.
        survivor = replica(counting)
        await survivor.start()
        try:
            await mm.wait_for_websocket(connects=2)
            mm.user_posts("alice", harness.channels["dev"], "ABC-8")
            await eventually(lambda: "ABC-8" in counting.calls, timeout=30)
            # ABC-7 came before the survivor connected: its catch-up or the recheck brings it.
            await eventually(lambda: "ABC-7" in counting.calls, timeout=30)
            await asyncio.sleep(1.6)  # past another lease: nothing is handled twice
            assert sorted(counting.calls) == ["ABC-7", "ABC-8"]
        finally:
            await survivor.stop()
    finally:
        await dying.stop()


class CountingReplicas:
    """The replicas' heartbeats as the store has them, counting the liveness checks."""

    def __init__(self, replicas: Any) -> None:
        self._replicas = replicas
        self.checks: list[bool] = []

    async def is_dead(self, owner: str, *, now: datetime) -> bool:
        dead = await self._replicas.is_dead(owner, now=now)
        self.checks.append(dead)
        return bool(dead)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._replicas, name)


async def test_a_post_claimed_by_a_replica_whose_heartbeat_went_stale_is_taken_over_at_once(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With heartbeats, the claim's lease (120 s, the default) is not waited for: while the
    claiming replica beats, the others leave its post alone; once its heartbeat is stale, one of
    them takes the post over at its next look."""
    monkeypatch.setattr(listener_module, "RECHECK_SECONDS", 0.2)
    mm = harness.mm
    mm.add_member(harness.channels["dev"], mm.bot_user_id)
    assert harness.services.commands is not None
    deps = harness.services.commands.deps
    stuck = StuckPreviews(deps, interval=timedelta(hours=1))
    counting = CountingPreviews(deps, interval=timedelta(hours=1))
    replicas = CountingReplicas(deps.db.replicas)
    await deps.db.replicas.beat("host:1:dying", now=datetime.now(UTC))

    def replica(previews: IssuePreviews, owner: str) -> ChatListener:
        return ChatListener(
            mattermost=deps.mattermost,
            token=mm.token,
            kv=deps.db.kv,
            clock=deps.clock,
            previews=previews,
            persist_interval_seconds=0.05,
            stop_grace_seconds=0.5,
            websocket_options={"backoff_base_seconds": 0.02, "backoff_max_seconds": 0.1},
            owner=owner,
            replicas=replicas,
        )

    dying = replica(stuck, "host:1:dying")
    survivor = replica(counting, "host:2:survivor")
    await dying.start()
    try:
        await mm.wait_for_websocket()
        mm.user_posts("alice", harness.channels["dev"], "ABC-7")
        await asyncio.wait_for(stuck.started.wait(), 30)
        # The survivor's catch-up brings the post, claimed already.
        await survivor.start()
        await mm.wait_for_websocket(connects=2)
        # The holder beats: the survivor looks again and again, and leaves the post alone.
        await eventually(lambda: replicas.checks.count(False) >= 3, timeout=30)
        assert counting.calls == []
        # Its heartbeat goes stale (it died): the survivor's next look takes the post over.
        await deps.db.replicas.beat("host:1:dying", now=datetime.now(UTC) - timedelta(seconds=10))
        await eventually(lambda: counting.calls == ["ABC-7"], timeout=30)
        assert replicas.checks[-1] is True
        [post] = [p for p in mm.posts_in(harness.channels["dev"]) if p["message"] == "ABC-7"]
        claim = CLAIM_PREFIX + post["id"]
        # Done: no replica looks at it again.
        for _ in range(300):
            if await deps.db.kv.get(claim, now=datetime.now(UTC)) == DONE:
                break
            await asyncio.sleep(0.1)
        assert await deps.db.kv.get(claim, now=datetime.now(UTC)) == DONE
        assert counting.calls == ["ABC-7"]
    finally:
        await survivor.stop()
        await dying.stop()
