"""The chat entry points give the config file's sentence for a wrong event, field key or instance
name."""

from __future__ import annotations

import pytest

from bot.names import KnownInstance, unknown_events, unknown_field_keys, unknown_instance
from tests.commands.conftest import CLOUD_ALIAS, SERVER_ALIAS, Harness
from tests.commands.test_subscribe import allow, connect, dialog_fields, stored


@pytest.fixture
async def h(harness: Harness) -> Harness:
    harness.cloud.add_project("WEB", "Web Site", issue_types=("Bug", "Story"))
    await connect(harness, "alice")
    allow(harness)
    return harness


async def test_text_form_misspelt_field_key(h: Harness) -> None:
    text = (
        await h.command(
            "alice", 'subscribe add X projects=WEB events=event_created fields="prority include_any High"'
        )
    )["text"]
    assert f"`fields`: {unknown_field_keys(['prority'])}" in text
    assert "(did you mean `priority`?)" in text
    assert await stored(h) == {}


# The sentence bot.config gives for `events: [event_creatd]` in the config file (tests/test_config_names.py).
EVENT_TYPO = unknown_events(["event_creatd"])


async def test_text_form_misspelt_event(h: Harness) -> None:
    assert EVENT_TYPO is not None and "(did you mean `event_created`?)" in EVENT_TYPO
    text = (await h.command("alice", "subscribe add X projects=WEB events=event_creatd"))["text"]
    assert f"`events`: {EVENT_TYPO}" in text
    assert await stored(h) == {}


async def test_dialog_misspelt_event(h: Harness) -> None:
    await h.command("alice", "subscribe add")
    status, body = await h.submit("alice", dialog_fields(events="event_creatd"))
    assert status == 200
    assert body["errors"] == {"events": EVENT_TYPO}
    assert await stored(h) == {}


async def test_text_form_stores_the_canonical_field_key(h: Harness) -> None:
    await h.command("alice", 'subscribe add X projects=WEB events=event_created fields="FIXVERSIONS empty"')
    assert [f.key for f in (await stored(h))["X"].filters.fields] == ["fixVersions"]


async def test_dialog_misspelt_field_key(h: Harness) -> None:
    await h.command("alice", "subscribe add")
    status, body = await h.submit(
        "alice", dialog_fields(fields="priority include_any High\nfixVersion empty")
    )
    assert status == 200
    assert body["errors"] == {"fields": unknown_field_keys(["fixVersion"])}
    assert "(did you mean `fixVersions`?)" in body["errors"]["fields"]
    assert await stored(h) == {}


async def test_instance_option_misspelt(h: Harness) -> None:
    known = [KnownInstance(h.cloud_url, CLOUD_ALIAS), KnownInstance(h.server_url, SERVER_ALIAS)]
    text = (await h.command("alice", "subscribe add --instance clod X projects=WEB events=event_created"))[
        "text"
    ]
    assert text == unknown_instance("clod", known)
    assert "(did you mean `cloud`?)" in text
    # Named by alias or URL in any case, it is found.
    added = await h.command(
        "alice", f"subscribe add --instance {h.cloud_url.upper()} X projects=WEB events=event_created"
    )
    assert "added the subscription" in added["text"]
    assert (await stored(h))["X"].instance_id == h.cloud_url


async def test_instance_option_of_the_one_line_form(h: Harness) -> None:
    known = [KnownInstance(h.cloud_url, CLOUD_ALIAS), KnownInstance(h.server_url, SERVER_ALIAS)]
    typo = (await h.command("alice", "subscribe add X instance=clod projects=WEB events=event_created"))[
        "text"
    ]
    assert typo == unknown_instance("clod", known)
    disagree = await h.command(
        "alice", "subscribe add --instance dc X instance=cloud projects=WEB events=event_created"
    )
    assert "disagree" in disagree["text"]
    assert await stored(h) == {}
    added = await h.command("alice", "subscribe add X instance=CLOUD projects=WEB events=event_created")
    assert "added the subscription" in added["text"]
    assert (await stored(h))["X"].instance_id == h.cloud_url
    moved = (await h.command("alice", "subscribe edit X instance=dc"))["text"]
    assert "stays on its Jira instance" in moved
    assert (await stored(h))["X"].instance_id == h.cloud_url
