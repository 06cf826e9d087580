"""Jira webhooks in, Mattermost posts out: endpoints, authentication, bad input, routing."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from pathlib import Path
from urllib.parse import quote

import pytest

from bot.jira.instances import encode_instance_id
from bot.pipeline.subscriptions import SubscriptionCache
from bot.routing.model import Subscription, SubscriptionFilters
from tests.conftest import load_shared_webhook_bytes
from tests.e2e.conftest import CLOUD, SECRET, SERVER, Bot, BotFactory, settings_for
from tests.fakes import FakeMattermost

FIREHOSE = "/plugins/jira/api/v2/webhook"
LEGACY = "/plugins/jira/webhook"
EXAMPLE = (Path(__file__).resolve().parents[2] / "examples" / "issue-created.json").read_bytes()


async def subscribe(
    bot: Bot, channel: str, *, name: str = "all", instance: str = SERVER, **filters: object
) -> None:
    channel_id = await bot.services.sink.resolve_channel("acme", channel)
    assert channel_id
    f = {"events": {"event_created", "event_updated_any"}, "projects": {"TES"}}
    f.update(filters)  # type: ignore[arg-type]
    sub = Subscription(
        id=f"{name}-{channel}",
        name=name,
        channel_id=channel_id,
        instance_id=instance,
        filters=SubscriptionFilters(**f),
    )
    await bot.services.db.subscriptions.upsert(sub, now=bot.services.intake._clock())
    cache: SubscriptionCache = bot.services.subscriptions
    await cache.changed()


async def test_firehose_posts_to_subscribed_channel(make_bot: BotFactory) -> None:
    bot = await make_bot()
    await subscribe(bot, "dev")
    r = await bot.post(FIREHOSE, load_shared_webhook_bytes("webhook-issue-created.json"))
    assert r.status == 200 and (await r.json())["status"] == "accepted"
    posts = await bot.fake.wait_for_posts(1)
    dev = await bot.services.sink.resolve_channel("acme", "dev")
    assert posts[0]["channel_id"] == dev
    text = json.dumps(posts[0])
    assert "**created**" in text and "TES-41" in text


async def test_instance_path_routes_to_that_instance(make_bot: BotFactory) -> None:
    bot = await make_bot()
    await subscribe(bot, "dev", instance=SERVER)
    await subscribe(bot, "ops", instance=CLOUD)
    body = load_shared_webhook_bytes("webhook-issue-created.json")
    r = await bot.post(f"/plugins/jira/instance/{encode_instance_id(CLOUD)}/api/v2/webhook", body)
    assert r.status == 200
    posts = await bot.fake.wait_for_posts(1)
    await bot.drain()
    assert len(bot.fake.posts) == 1
    assert posts[0]["channel_id"] == await bot.services.sink.resolve_channel("acme", "ops")


async def test_bad_instance_id_is_400(make_bot: BotFactory) -> None:
    bot = await make_bot()
    r = await bot.post("/plugins/jira/instance/%21%21/api/v2/webhook", EXAMPLE)
    assert r.status == 400


async def test_legacy_webhook_posts_created_issue(make_bot: BotFactory) -> None:
    bot = await make_bot()
    r = await bot.post(LEGACY, EXAMPLE, team="acme", channel="dev")
    assert r.status == 200
    posts = await bot.fake.wait_for_posts(1)
    assert "WEB-42" in json.dumps(posts[0])


async def test_legacy_webhook_under_instance_path(make_bot: BotFactory) -> None:
    bot = await make_bot()
    r = await bot.post(
        f"/plugins/jira/instance/{encode_instance_id('https://acme.atlassian.net')}/webhook",
        EXAMPLE,
        team="acme",
        channel="ops",
    )
    assert r.status == 200
    await bot.fake.wait_for_posts(1)


async def test_legacy_updated_params_choose_events(make_bot: BotFactory) -> None:
    bot = await make_bot()
    priority = load_shared_webhook_bytes("webhook-issue-updated-raised-priority.json")
    r = await bot.post(LEGACY, priority, team="acme", channel="dev")
    assert r.status == 200
    await bot.drain()
    assert bot.fake.posts == []  # priority changes are not posted by default
    r = await bot.post(LEGACY, priority, team="acme", channel="dev", updated_prioity="1")
    assert r.status == 200
    posts = await bot.fake.wait_for_posts(1)
    assert "priority" in json.dumps(posts[0]).lower()


@pytest.mark.parametrize(
    ("params", "reason"),
    [
        ({"channel": "dev"}, "team"),
        ({"team": "acme"}, "channel"),
        ({"team": "acme", "channel": "nope"}, "unknown"),
    ],
)
async def test_legacy_webhook_needs_a_known_channel(
    make_bot: BotFactory, params: dict[str, str], reason: str
) -> None:
    bot = await make_bot()
    r = await bot.post(LEGACY, EXAMPLE, **params)
    assert r.status == 400
    assert reason in (await r.json())["reason"]
    assert (await bot.services.db.inbox.counts()).get("pending", 0) == 0


@pytest.mark.parametrize("secret", [None, "", "wrong", SECRET + "x"])
async def test_wrong_or_missing_secret_is_403_and_nothing_is_stored(
    make_bot: BotFactory, secret: str | None
) -> None:
    bot = await make_bot()
    r = await bot.post(LEGACY, EXAMPLE, secret=secret, team="acme", channel="dev")
    assert r.status == 403
    assert sum((await bot.services.db.inbox.counts()).values()) == 0


async def test_url_escaped_secret_and_previous_secret_are_accepted(
    make_bot: BotFactory, fake_mm: FakeMattermost, tmp_path: Path
) -> None:
    settings = settings_for(fake_mm, tmp_path, JIRA_WEBHOOK_PREVIOUS_SECRETS="old-one")
    bot = await make_bot(settings)
    for secret in (quote(SECRET, safe=""), "old-one"):
        r = await bot.post(LEGACY, EXAMPLE, secret=secret, team="acme", channel="dev")
        assert r.status == 200, secret
    await bot.fake.wait_for_posts(2)


async def test_signature_is_verified_when_configured(
    make_bot: BotFactory, fake_mm: FakeMattermost, tmp_path: Path
) -> None:
    bot = await make_bot(settings_for(fake_mm, tmp_path, JIRA_WEBHOOK_SIGNING_SECRET="sign-key"))
    good = "sha256=" + hmac.new(b"sign-key", EXAMPLE, hashlib.sha256).hexdigest()
    for headers, status in (
        ({}, 403),
        ({"X-Hub-Signature": "sha256=00"}, 403),
        ({"X-Hub-Signature": good}, 200),
    ):
        r = await bot.post(LEGACY, EXAMPLE, headers=headers, team="acme", channel="dev")
        assert r.status == status


@pytest.mark.parametrize("body", [b"{not json", b"", b"\xff\xfe", b'"a string"', b"[1,2]", b'{"issue": "x"}'])
async def test_malformed_json_is_400(make_bot: BotFactory, body: bytes) -> None:
    bot = await make_bot()
    r = await bot.post(FIREHOSE, body)
    assert r.status == 400
    assert "reason" in await r.json()


async def test_body_over_limit_is_413(make_bot: BotFactory, fake_mm: FakeMattermost, tmp_path: Path) -> None:
    bot = await make_bot(settings_for(fake_mm, tmp_path, JIRA_CHATOPS__SERVER__MAX_BODY_BYTES="2048"))
    r = await bot.post(FIREHOSE, b'{"webhookEvent": "' + b"x" * 4096 + b'"}')
    assert r.status == 413


async def test_probe_from_the_mattermost_guide_is_ignored_with_200(make_bot: BotFactory) -> None:
    bot = await make_bot()
    r = await bot.post(FIREHOSE, '{"event":"some_jira_event"}', user_id="admin", user_key="admin")
    assert r.status == 200
    assert (await r.json())["status"] == "ignored"
    metrics = await (await bot.client.get("/metrics")).text()
    assert 'jira_chatops_webhooks_total{outcome="ignored"} 1.0' in metrics


async def test_server_standalone_comment_is_ignored_at_once(make_bot: BotFactory) -> None:
    """Server's comment_created lacks the issue id (and repeats issue_commented): a quick look
    tells it carries nothing to post, so it is not even stored."""
    bot = await make_bot()
    await subscribe(bot, "dev")
    r = await bot.post(FIREHOSE, load_shared_webhook_bytes("webhook-server-comment-created.json"))
    assert r.status == 200 and (await r.json())["status"] == "ignored"
    assert sum((await bot.services.db.inbox.counts()).values()) == 0


async def test_update_without_a_notable_change_is_stored_then_ignored(make_bot: BotFactory) -> None:
    """Only the full reading of the changelog shows there is nothing to post: the webhook is
    acknowledged, then the processor ignores it, posts nothing and counts it as ignored."""
    bot = await make_bot()
    await subscribe(bot, "dev")
    r = await bot.post(FIREHOSE, load_shared_webhook_bytes("webhook-issue-assigned-empty-changelog.json"))
    assert r.status == 200 and (await r.json())["status"] == "accepted"
    await bot.drain()
    assert bot.fake.posts == []
    assert (await bot.services.db.inbox.counts())["ignored"] == 1
    metrics = await (await bot.client.get("/metrics")).text()
    assert 'jira_chatops_webhooks_total{outcome="ignored"} 1.0' in metrics


async def test_body_valid_at_a_glance_but_not_a_webhook_is_stored_then_ignored(make_bot: BotFactory) -> None:
    """The quick look checks the top-level shape only; a deeper impossible shape is found by the
    processor, which ignores the webhook without a post or an error."""
    bot = await make_bot()
    await subscribe(bot, "dev")
    doc = json.loads(load_shared_webhook_bytes("webhook-issue-created.json"))
    doc["issue"]["fields"]["summary"] = {"not": "text"}
    r = await bot.post(FIREHOSE, json.dumps(doc))
    assert r.status == 200
    await bot.drain()
    assert bot.fake.posts == []
    assert (await bot.services.db.inbox.counts())["ignored"] == 1


async def test_no_input_produces_a_500(make_bot: BotFactory) -> None:
    bot = await make_bot()
    bodies = [
        b"null",
        b"{}",
        b'{"webhookEvent": null}',
        b'{"webhookEvent": "jira:issue_updated", "issue": {"fields": null}}',
        b'{"webhookEvent": "jira:issue_updated", "issue": {"id": 1, "key": [], "fields": {"summary": {}}}}',
        b'{"webhookEvent": "jira:issue_created", "issue": {"id": "1", "key": "A-1", "self": 5}}',
        b'{"webhookEvent": "comment_created", "comment": {"body": null}}',
        json.dumps({"webhookEvent": "jira:issue_updated", "changelog": {"items": [None, 1, "x"]}}).encode(),
    ]
    for body in bodies:
        for path, params in ((FIREHOSE, {}), (LEGACY, {"team": "acme", "channel": "dev"})):
            r = await bot.post(path, body, **params)
            assert r.status < 500, (body, r.status)
            assert "Traceback" not in await r.text()


async def test_redelivered_webhook_is_posted_once(make_bot: BotFactory) -> None:
    bot = await make_bot()
    headers = {"X-Atlassian-Webhook-Identifier": "delivery-123"}
    for _ in range(3):
        r = await bot.post(LEGACY, EXAMPLE, headers=headers, team="acme", channel="dev")
        assert r.status == 200
    await bot.drain()
    assert len(bot.fake.posts) == 1


async def test_one_post_per_channel_when_several_subscriptions_match(make_bot: BotFactory) -> None:
    bot = await make_bot()
    await subscribe(bot, "dev", name="b-second")
    await subscribe(bot, "dev", name="a-first")
    await subscribe(bot, "ops", name="ops")
    r = await bot.post(FIREHOSE, load_shared_webhook_bytes("webhook-issue-created.json"))
    assert r.status == 200
    await bot.fake.wait_for_posts(2)
    await bot.drain()
    assert sorted(p["channel_id"] for p in bot.fake.posts) == sorted(
        [await bot.services.sink.resolve_channel("acme", c) for c in ("dev", "ops")]
    )


async def test_security_level_issue_does_not_reach_unfiltered_channel(make_bot: BotFactory) -> None:
    bot = await make_bot()
    await subscribe(bot, "dev")
    r = await bot.post(FIREHOSE, load_shared_webhook_bytes("webhook-issue-created-with-security-level.json"))
    assert r.status == 200
    await bot.drain()
    assert bot.fake.posts == []


async def test_comment_is_threaded_under_the_created_post(make_bot: BotFactory) -> None:
    bot = await make_bot()
    await subscribe(bot, "dev", events={"event_created", "event_created_comment"})
    created = json.loads(load_shared_webhook_bytes("webhook-issue-created.json"))
    comment = json.loads(load_shared_webhook_bytes("webhook-issue-comment-created-indentation.json"))
    # The comment fixture is about another issue; make both about the same one.
    comment["issue"]["key"] = created["issue"]["key"]
    comment["issue"]["fields"]["project"] = created["issue"]["fields"]["project"]
    comment["issue"]["self"] = created["issue"]["self"]
    assert (await bot.post(FIREHOSE, json.dumps(created))).status == 200
    root = (await bot.fake.wait_for_posts(1))[0]
    assert (await bot.post(FIREHOSE, json.dumps(comment))).status == 200
    posts = await bot.fake.wait_for_posts(2)
    assert posts[1]["root_id"] == root["id"]


async def test_config_subscriptions_are_upserted_at_start(
    fake_mm: FakeMattermost, tmp_path: Path, make_bot: BotFactory
) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        f"""
jira:
  instances: [{{url: "{SERVER}", type: cloud, alias: local}}]
subscriptions:
  - name: New in TES
    channel: acme/dev
    filters: {{events: [event_created], projects: [TES]}}
"""
    )
    from bot.config import load_settings

    base = settings_for(fake_mm, tmp_path)
    settings = load_settings(
        cfg,
        {
            "DATA_DIR": str(tmp_path),
            "MATTERMOST_URL": fake_mm.url,
            "MATTERMOST_BOT_TOKEN": fake_mm.token,
            "JIRA_WEBHOOK_SECRET": SECRET,
            "JIRA_CHATOPS__DELIVERY__POLL_INTERVAL_SECONDS": str(base.delivery.poll_interval_seconds),
        },
    )
    bot = await make_bot(settings)
    subs = await bot.services.db.subscriptions.list_all()
    assert [s.name for s in subs] == ["New in TES"]
    r = await bot.post(FIREHOSE, load_shared_webhook_bytes("webhook-issue-created.json"))
    assert r.status == 200
    await bot.fake.wait_for_posts(1)


async def test_health_readiness_and_metrics(make_bot: BotFactory) -> None:
    bot = await make_bot()
    assert (await bot.client.get("/healthz")).status == 200
    r = await bot.client.get("/readyz")
    assert r.status == 200 and (await r.json()) == {"database": "ok", "mattermost": "ok", "status": "ok"}
    await bot.post(LEGACY, EXAMPLE, team="acme", channel="dev")
    await bot.fake.wait_for_posts(1)
    await bot.drain()
    text = await (await bot.client.get("/metrics")).text()
    for needle in (
        'jira_chatops_webhooks_total{outcome="accepted"} 1.0',
        'jira_chatops_events_total{kind="event_created"} 1.0',
        'jira_chatops_posts_total{result="delivered"} 1.0',
        "jira_chatops_backlog 0.0",
        "jira_chatops_delivery_latency_seconds_count 1.0",
    ):
        assert needle in text
    await bot.fake.stop()
    r = await bot.client.get("/readyz")
    assert r.status == 503 and (await r.json())["mattermost"] == "unavailable"


async def test_cloud_comment_events_use_the_security_level_last_seen(make_bot: BotFactory) -> None:
    """Cloud's comment_* webhooks carry no security level: they are posted only once a complete
    webhook of the issue has shown it unrestricted."""
    bot = await make_bot()
    await subscribe(bot, "dev", events={"event_created", "event_created_comment"})
    comment = load_shared_webhook_bytes("webhook-cloud-comment-created.json")

    assert (await bot.post(FIREHOSE, comment)).status == 200
    await bot.drain()
    assert bot.fake.posts == []  # never seen complete: unknown, so not posted

    assert (await bot.post(FIREHOSE, load_shared_webhook_bytes("webhook-issue-created.json"))).status == 200
    root = (await bot.fake.wait_for_posts(1))[0]
    assert (await bot.post(FIREHOSE, comment)).status == 200
    posts = await bot.fake.wait_for_posts(2)
    assert "**commented**" in json.dumps(posts[1]) and posts[1]["root_id"] == root["id"]

    # The issue becomes restricted: its comments stay out of the unfiltered channel.
    secured = load_shared_webhook_bytes("webhook-issue-created-with-security-level.json")
    assert (await bot.post(FIREHOSE, secured)).status == 200
    assert (await bot.post(FIREHOSE, comment)).status == 200
    await bot.drain()
    assert len(bot.fake.posts) == 2


async def test_concurrent_webhooks_are_stored_together_and_a_repeated_one_once(make_bot: BotFactory) -> None:
    bot = await make_bot()
    await subscribe(bot, "dev")
    created = json.loads(load_shared_webhook_bytes("webhook-issue-created.json"))

    def numbered(n: int) -> str:
        doc = json.loads(json.dumps(created))
        doc["issue"]["key"] = f"TES-{900 + n}"
        return json.dumps(doc)

    bodies = [(numbered(n), f"delivery-{n}") for n in range(8)] + [(numbered(0), "delivery-0")]
    answers = await asyncio.gather(
        *(bot.post(FIREHOSE, body, headers={"X-Atlassian-Webhook-Identifier": d}) for body, d in bodies)
    )
    assert [a.status for a in answers] == [200] * 9
    statuses = sorted([(await a.json())["status"] for a in answers])
    assert statuses == ["accepted"] * 8 + ["duplicate"]
    assert bot.services.intake.writer.rows == 9
    assert bot.services.intake.writer.batches < 9  # shared transactions
    await bot.fake.wait_for_posts(8)
    await bot.drain()
    texts = [json.dumps(p) for p in bot.fake.posts]
    assert sorted(next(f"TES-{900 + n}" for n in range(8) if f"TES-{900 + n}" in t) for t in texts) == sorted(
        f"TES-{900 + n}" for n in range(8)
    )


async def test_a_failed_commit_answers_503_to_every_webhook_of_its_batch(
    make_bot: BotFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    bot = await make_bot()
    inbox = bot.services.db.inbox

    async def broken(rows: object, *, now: object) -> list[tuple[int, bool]]:
        raise OSError("disk I/O error")

    monkeypatch.setattr(inbox, "enqueue_many", broken)
    answers = await asyncio.gather(*(bot.post(LEGACY, EXAMPLE, team="acme", channel="dev") for _ in range(4)))
    for answer in answers:
        assert answer.status == 503
        assert int(answer.headers["Retry-After"]) > 0
        assert "Traceback" not in await answer.text()
    monkeypatch.undo()
    assert sum((await bot.services.db.inbox.counts()).values()) == 0
    # Jira's retry goes through once the database is back.
    assert (await bot.post(LEGACY, EXAMPLE, team="acme", channel="dev")).status == 200
    await bot.fake.wait_for_posts(1)
