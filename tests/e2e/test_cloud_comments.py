"""Jira Cloud's real comment webhooks (the shared payloads) reach the channels on a fresh install:
the bot has never seen the issues complete, so it reads them from (a fake) Jira Cloud."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer

from bot.config import load_settings
from tests.conftest import load_shared_webhook_bytes
from tests.e2e.conftest import SECRET, BotFactory
from tests.e2e.test_webhooks import FIREHOSE, subscribe
from tests.fakes import FakeJira, FakeMattermost

SERVICE_EMAIL = "svc@example.com"
SERVICE_TOKEN = "svc-token"
FIXTURES = {
    "webhook-cloud-comment-created.json": "Added a comment",
    "webhook-cloud-comment-updated.json": "Added a comment, then edited it",
    "webhook-cloud-comment-created-mention-user.json": "Added a comment with mentioned user user",
    "webhook-cloud-comment-deleted.json": "KT-7",
}


@pytest.fixture
async def cloud() -> AsyncIterator[tuple[FakeJira, str]]:
    """The issues of the shared payloads, as Jira Cloud has them (ids, keys, projects)."""
    jira = FakeJira("cloud")
    jira.add_user("Jira Service Account", email=SERVICE_EMAIL, password=SERVICE_TOKEN)
    jira.add_project("TES", "test1", project_id="10000", issue_types=("Story",))
    jira.add_project("KT", "Kanban", project_id="10001", issue_types=("Task",))
    jira.add_issue(
        "TES", "Unit test summary 1", issue_type="Story", priority="High", issue_id="10040", number=41
    )
    jira.add_issue("KT", "Kanban task", issue_id="10357", number=7)
    server = TestServer(jira.app())
    await server.start_server()
    yield jira, str(server.make_url("")).rstrip("/")
    await server.close()


async def test_cloud_comment_webhooks_are_posted_on_a_fresh_install(
    make_bot: BotFactory, fake_mm: FakeMattermost, cloud: tuple[FakeJira, str], tmp_path: Path
) -> None:
    jira, url = cloud
    config = tmp_path / "config.yaml"
    config.write_text(
        f"""
jira:
  instances:
    - url: "{url}"
      type: cloud
      service_account: {{email: {SERVICE_EMAIL}, api_token: {SERVICE_TOKEN}}}
"""
    )
    settings = load_settings(
        config,
        {
            "DATA_DIR": str(tmp_path / "data"),
            "MATTERMOST_URL": fake_mm.url,
            "MATTERMOST_BOT_TOKEN": fake_mm.token,
            "JIRA_WEBHOOK_SECRET": SECRET,
            "JIRA_CHATOPS__CHAT__LISTEN": "false",
        },
    )
    bot = await make_bot(config=settings)
    comments = {"event_created_comment", "event_updated_comment", "event_deleted_comment"}
    await subscribe(bot, "dev", instance=url, events=comments, projects={"TES", "KT"})
    for name in FIXTURES:
        r = await bot.post(FIREHOSE, load_shared_webhook_bytes(name))
        assert r.status == 200 and (await r.json())["status"] == "accepted", name
    posts = await bot.fake.wait_for_posts(len(FIXTURES), timeout=30)
    await bot.drain(timeout=30)
    texts = [json.dumps(p, ensure_ascii=False) for p in posts]
    assert len(posts) == len(FIXTURES)
    for name, expected in FIXTURES.items():
        assert any(expected in t for t in texts), (name, texts)
    # Each issue read once, by the service account, whatever the number of its comments.
    assert len(jira.requests_to("/rest/api/2/issue/10040", "GET")) == 1
    assert len(jira.requests_to("/rest/api/2/issue/10357", "GET")) == 1
    service = next(u.id for u in jira.users.values() if u.email == SERVICE_EMAIL)
    assert {r.user for r in jira.requests} == {service}
