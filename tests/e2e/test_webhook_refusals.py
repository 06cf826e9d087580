"""What an operator sees of refused and ignored webhooks: one log line each (status, reason,
remote address, the path without the secret), metric series present from the start."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from bot.jira.instances import encode_instance_id
from tests.e2e.conftest import SECRET, BotFactory

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = (ROOT / "examples" / "issue-created.json").read_text()  # from https://acme.atlassian.net
INSTANCES = "[{url: 'https://acme.atlassian.net'}, {url: 'https://other.atlassian.net', alias: other}]"


def refusals(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.getMessage().startswith("webhook refused")]


async def test_refused_webhooks_log_one_line_each(
    make_bot: BotFactory, caplog: pytest.LogCaptureFixture
) -> None:
    bot = await make_bot()
    caplog.set_level(logging.INFO)
    wrong = "not-the-secret-123"
    r = await bot.post("/plugins/jira/api/v2/webhook", SAMPLE, secret=wrong)
    assert r.status == 403
    r = await bot.post("/plugins/jira/api/v2/webhook", "{not json")
    assert r.status == 400
    r = await bot.post("/plugins/jira/api/v2/webhook", "x" * (2 * 1024 * 1024))
    assert r.status == 413
    lines = [rec.getMessage() for rec in refusals(caplog)]
    assert len(lines) == 3, lines
    assert (
        lines[0]
        == "webhook refused with 403 (missing or wrong secret) from 127.0.0.1 on /plugins/jira/api/v2/webhook"
    )
    assert lines[1].startswith("webhook refused with 400 (malformed webhook")
    assert lines[2].startswith("webhook refused with 413 (body over")
    assert all(rec.levelno == logging.WARNING for rec in refusals(caplog))
    # The bot's own lines never show a secret (aiohttp's access log is lowered in production).
    mine = [rec.getMessage() for rec in caplog.records if rec.name.startswith("bot")]
    assert mine and not any(wrong in m or SECRET in m for m in mine)


async def test_metric_series_exist_from_the_start(make_bot: BotFactory) -> None:
    bot = await make_bot()
    async with bot.client.get("/metrics") as r:
        text = await r.text()
    for series in (
        'jira_chatops_webhooks_total{outcome="forbidden"} 0.0',
        'jira_chatops_webhooks_total{outcome="too_large"} 0.0',
        'jira_chatops_webhooks_total{outcome="accepted"} 0.0',
        'jira_chatops_posts_total{result="delivered"} 0.0',
        'jira_chatops_posts_total{result="dead"} 0.0',
        "jira_chatops_backlog 0.0",
        'jira_chatops_events_total{kind="event_created"} 0.0',
        'jira_chatops_events_total{kind="event_updated_status"} 0.0',
    ):
        assert series in text, series


async def test_a_webhook_without_an_issue_key_is_ignored_with_the_reason_logged(
    make_bot: BotFactory, caplog: pytest.LogCaptureFixture
) -> None:
    bot = await make_bot()
    caplog.set_level(logging.INFO)
    payload = json.loads(SAMPLE)
    del payload["issue"]["key"]
    r = await bot.post("/plugins/jira/api/v2/webhook", json.dumps(payload))
    assert r.status == 200
    assert (await r.json()) == {"status": "ignored", "reason": "the issue has no key"}
    assert "webhook ignored: issue 10042 has no key" in caplog.text


async def test_a_legacy_url_for_another_instance_is_refused_naming_both(make_bot: BotFactory) -> None:
    bot = await make_bot(JIRA_CHATOPS__JIRA__INSTANCES=INSTANCES)
    path = f"/plugins/jira/instance/{encode_instance_id('https://other.atlassian.net')}/webhook"
    r = await bot.post(path, SAMPLE, team="acme", channel="dev")
    assert r.status == 400
    assert (await r.json())["reason"] == (
        "the URL is for instance https://other.atlassian.net but the webhook comes from https://acme.atlassian.net"
    )
    # The URL of the payload's own instance is accepted.
    path = f"/plugins/jira/instance/{encode_instance_id('https://acme.atlassian.net')}/webhook"
    r = await bot.post(path, SAMPLE, team="acme", channel="dev")
    assert r.status == 200
