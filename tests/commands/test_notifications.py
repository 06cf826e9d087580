"""Personal direct messages from firehose events: who gets one, and who does not."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from tests.commands.conftest import Harness

FIREHOSE = "/plugins/jira/api/v2/webhook"


def assigned_payload(
    harness: Harness, key: str, *, actor: str, assignee: str, summary: str
) -> dict[str, Any]:
    """A Cloud `issue_assigned` webhook about an issue of the fake Cloud Jira."""
    issue = harness.cloud.issue(key)
    actor_user = harness.cloud.users[actor]
    return {
        "timestamp": 1764057600000,
        "webhookEvent": "jira:issue_updated",
        "issue_event_type_name": "issue_assigned",
        "user": {"accountId": actor, "displayName": actor_user.display_name},
        "issue": {
            "id": str(issue["id"]),
            "key": key,
            "self": f"{harness.cloud_url}/rest/api/2/issue/{issue['id']}",
            "fields": {
                "summary": summary,
                "issuetype": {"id": "1", "name": "Task"},
                "project": {"id": "10000", "key": key.split("-")[0], "name": "Project"},
                "status": {"id": "1", "name": "To Do"},
                "assignee": {
                    "accountId": assignee,
                    "displayName": harness.cloud.users[assignee].display_name,
                },
            },
        },
        "changelog": {
            "items": [
                {
                    "field": "assignee",
                    "fieldtype": "jira",
                    "fieldId": "assignee",
                    "to": assignee,
                    "toString": "x",
                }
            ]
        },
    }


async def send(harness: Harness, payload: dict[str, Any]) -> None:
    async with harness.http.post(
        harness.bot_url + FIREHOSE, params={"secret": "webhook-secret"}, data=json.dumps(payload)
    ) as r:
        assert r.status == 200, await r.text()


async def drain(harness: Harness) -> None:
    for _ in range(300):
        if await harness.services.db.deliveries.backlog() == 0:
            return
        await asyncio.sleep(0.02)
    raise AssertionError("backlog did not drain")


def dms_about(harness: Harness, key: str) -> list[dict[str, Any]]:
    return [p for p in harness.mm.posts if key in p["message"] and "**assigned** you" in p["message"]]


async def setup(harness: Harness, *, private: bool = False) -> tuple[str, str, str]:
    alice = harness.cloud.add_user("Alice Liddell", email="alice@example.com")
    bob = harness.cloud.add_user("Bob Builder", email="bob@example.com")
    harness.cloud.add_project("PROJ", "Project", browse=[bob] if private else None)
    key = harness.cloud.add_issue("PROJ", "Printer on fire", reporter=bob)
    await harness.connect_cloud("alice", alice)
    return alice, bob, key


async def test_assignee_gets_a_dm_with_their_own_access(harness: Harness) -> None:
    alice, bob, key = await setup(harness)
    await send(harness, assigned_payload(harness, key, actor=bob, assignee=alice, summary="Printer on fire"))
    await drain(harness)
    [dm] = dms_about(harness, key)
    channel = harness.mm.channels[dm["channel_id"]]
    assert channel["type"] == "D" and harness.user("alice") in channel["name"]


async def test_no_dm_to_the_person_who_made_the_change(harness: Harness) -> None:
    alice, _, key = await setup(harness)
    await send(
        harness, assigned_payload(harness, key, actor=alice, assignee=alice, summary="Printer on fire")
    )
    await drain(harness)
    assert dms_about(harness, key) == []


async def test_no_dm_when_the_user_cannot_see_the_issue(harness: Harness) -> None:
    alice, bob, key = await setup(harness, private=True)
    await send(harness, assigned_payload(harness, key, actor=bob, assignee=alice, summary="Printer on fire"))
    await drain(harness)
    assert dms_about(harness, key) == []


async def test_no_dm_when_the_switch_is_off(harness: Harness) -> None:
    alice, bob, key = await setup(harness)
    answer = await harness.command("alice", "settings notifications assignee off --instance cloud")
    assert "**off**" in answer["text"]
    await send(harness, assigned_payload(harness, key, actor=bob, assignee=alice, summary="Printer on fire"))
    await drain(harness)
    assert dms_about(harness, key) == []


async def test_no_dm_for_users_who_are_not_connected(harness: Harness) -> None:
    _, bob, key = await setup(harness)
    carol = harness.cloud.add_user("Carol Danvers")
    await send(harness, assigned_payload(harness, key, actor=bob, assignee=carol, summary="Printer on fire"))
    await drain(harness)
    assert dms_about(harness, key) == []


async def test_channel_posts_carry_buttons_that_act_as_the_clicker(harness: Harness) -> None:
    from bot.routing.model import Subscription, SubscriptionFilters

    alice, bob, key = await setup(harness)
    sub = Subscription(
        id="s1",
        name="all",
        channel_id=harness.channels["dev"],
        instance_id=harness.cloud_url,
        filters=SubscriptionFilters(
            events=frozenset({"event_updated_assignee"}), projects=frozenset({"PROJ"})
        ),
    )
    await harness.services.db.subscriptions.upsert(sub, now=harness.services.intake._clock())
    await harness.services.subscriptions.changed()
    await send(harness, assigned_payload(harness, key, actor=bob, assignee=bob, summary="Printer on fire"))
    await drain(harness)
    [post] = [p for p in harness.mm.posts_in(harness.channels["dev"]) if key in json.dumps(p)]
    names = [a["name"] for att in post["props"]["attachments"] for a in att.get("actions", [])]
    assert names == ["Transition", "Assign to me", "Comment"]
    status, _ = await harness.click("alice", post["props"], "Assign to me", post_id=post["id"])
    assert status == 200
    assert harness.cloud.issue(key)["assignee"] == alice


async def test_mentions_of_connected_users_become_mattermost_mentions(harness: Harness) -> None:
    from bot.routing.model import Subscription, SubscriptionFilters

    alice, bob, key = await setup(harness)
    carol = harness.cloud.add_user("Carol Danvers")
    sub = Subscription(
        id="s2",
        name="comments",
        channel_id=harness.channels["dev"],
        instance_id=harness.cloud_url,
        filters=SubscriptionFilters(
            events=frozenset({"event_created_comment"}), projects=frozenset({"PROJ"})
        ),
    )
    await harness.services.db.subscriptions.upsert(sub, now=harness.services.intake._clock())
    await harness.services.subscriptions.changed()
    payload = assigned_payload(harness, key, actor=bob, assignee=bob, summary="Printer on fire")
    payload["issue_event_type_name"] = "issue_commented"
    payload["changelog"] = {"items": []}
    author = {"accountId": bob, "displayName": "Bob Builder"}
    payload["comment"] = {
        "id": "100",
        "body": f"[~accountid:{alice}] and [~accountid:{carol}], please look @here",
        "author": author,
        "updateAuthor": author,
        "created": "2026-01-01T00:00:00.000+0000",
        "updated": "2026-01-01T00:00:00.000+0000",
    }
    await send(harness, payload)
    await drain(harness)
    [post] = [p for p in harness.mm.posts_in(harness.channels["dev"]) if key in json.dumps(p)]
    text = json.dumps(post["props"], ensure_ascii=False)
    assert "@alice" in text  # connected: a real mention
    # Not connected: named as Jira knows her (the webhook carries no name; the service account
    # reads it), no mention.
    assert "Carol Danvers" in text and carol not in text
    assert "@here" not in text
    # Alice is also told personally that she was mentioned.
    assert any("**mentioned** you" in p["message"] for p in harness.mm.posts)


async def test_watchers_hear_of_new_comments(harness: Harness) -> None:
    alice, bob, key = await setup(harness)
    harness.cloud.issue(key)["watchers"] = [alice]
    payload = assigned_payload(harness, key, actor=bob, assignee=bob, summary="Printer on fire")
    payload["issue_event_type_name"] = "issue_commented"
    payload["changelog"] = {"items": []}
    author = {"accountId": bob, "displayName": "Bob Builder"}
    payload["comment"] = {
        "id": "101",
        "body": "Replaced the toner.",
        "author": author,
        "updateAuthor": author,
        "created": "2026-01-01T00:00:00.000+0000",
        "updated": "2026-01-01T00:00:00.000+0000",
    }
    await send(harness, payload)
    await drain(harness)
    [dm] = [p for p in harness.mm.posts if "**commented** on" in p["message"]]
    assert "Replaced the toner." in dm["message"]
    assert harness.user("alice") in harness.mm.channels[dm["channel_id"]]["name"]
