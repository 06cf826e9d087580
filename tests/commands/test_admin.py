"""instance list|install|uninstall|alias|unalias|default, webhook, stats, setup: for system admins."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from bot.instances import InstanceDirectory
from bot.jira.instances import encode_instance_id
from bot.names import KnownInstance, unknown_instance
from bot.routing.model import Subscription, SubscriptionFilters
from tests.commands.conftest import Harness

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "issue-created.json"
NEW_JIRA = "https://jira.new.example.com"


async def post_webhook(h: Harness, base_url: str, body: str | None = None) -> str:
    """Post the example issue (its URLs pointing at `base_url`) to the firehose; returns the outcome."""
    payload = (
        body if body is not None else EXAMPLE.read_text().replace("https://acme.atlassian.net", base_url)
    )
    async with h.http.post(
        h.bot_url + "/plugins/jira/api/v2/webhook?secret=webhook-secret",
        data=payload,
        headers={"Content-Type": "application/json"},
    ) as r:
        assert r.status == 200
        outcome: str = (await r.json())["status"]
    return outcome


@pytest.mark.parametrize(
    "text",
    [
        "instance list",
        "instance install server https://jira.example.com",
        "instance uninstall dc",
        "instance alias dc prod",
        "instance unalias dc",
        "instance default dc",
        "webhook",
        "stats",
        "setup",
    ],
)
async def test_refused_to_users(harness: Harness, text: str) -> None:
    answer = await harness.command("alice", text)
    assert answer["text"] == "This command is for Mattermost system admins."
    assert harness.services.instances.find("https://jira.example.com") is None


async def test_help_lists_the_admin_commands_for_admins_only(harness: Harness) -> None:
    admin = (await harness.command("admin", "help"))["text"]
    for line in (
        "/jira instance install cloud|server URL [alias]",
        "/jira webhook",
        "/jira stats",
        "/jira setup",
    ):
        assert line in admin
    assert "/jira instance install" not in (await harness.command("alice", "help"))["text"]


async def test_instance_list(harness: Harness) -> None:
    jira_alice = harness.cloud.add_user("Alice", email="alice@example.com")
    await harness.connect_cloud("alice", jira_alice)
    text = (await harness.command("admin", "instance list"))["text"]
    assert f"| {harness.cloud_url} | Cloud | cloud |  | config file | 1 |" in text
    assert f"| {harness.server_url} | Server/Data Center | dc |  | config file | 0 |" in text


async def test_install_accepts_its_webhooks_and_uninstall_stops_them(harness: Harness) -> None:
    assert await post_webhook(harness, NEW_JIRA) == "ignored"
    answer = (await harness.command("admin", f"instance install server {NEW_JIRA}/ newjira"))["text"]
    assert f"newjira ({NEW_JIRA}) is installed" in answer and "`/jira connect newjira`" in answer
    assert await post_webhook(harness, NEW_JIRA) == "accepted"
    listed = (await harness.command("admin", "instance list"))["text"]
    assert f"| {NEW_JIRA} | Server/Data Center | newjira |  | installed from chat | 0 |" in listed

    cloud = (await harness.command("admin", "instance install cloud https://acme2.atlassian.net"))["text"]
    assert "OAuth 2.0 app" in cloud

    gone = (await harness.command("admin", "instance uninstall newjira"))["text"]
    assert f"newjira ({NEW_JIRA}) is uninstalled" in gone
    assert await post_webhook(harness, NEW_JIRA) == "ignored"


async def test_install_errors(harness: Harness) -> None:
    async def say(text: str) -> str:
        return str((await harness.command("admin", text))["text"])

    assert "Use `/jira instance install cloud|server URL [alias]`" in await say(
        "instance install onprem https://x.org"
    )
    assert "Use `/jira instance install" in await say("instance install server")
    assert "is not a Jira URL" in await say("instance install server jira.example.com")
    assert "is installed already" in await say(f"instance install cloud {harness.cloud_url}")
    assert "alias 'dc' is taken" in await say("instance install server https://other.example.com dc")
    assert "cannot be an alias" in await say("instance install server https://other.example.com bad/alias")


PRIVATE_URLS = [
    "http://127.0.0.1:9",
    "http://169.254.169.254",
    "http://2130706433/",
    "http://0x7f.1/",
    "http://[::ffff:127.0.0.1]:9",
    "https://[::1]",
    "http://0.0.0.0:8080",
]


@pytest.mark.parametrize("allow_private_instance_urls", [False])
@pytest.mark.parametrize("url", PRIVATE_URLS)
async def test_install_refuses_private_addresses(harness: Harness, url: str) -> None:
    answer = (await harness.command("admin", f"instance install server {url} inside"))["text"]
    assert "is refused" in answer
    assert "a loopback, private, link-local or multicast address" in answer
    assert "set `security.allow_private_instance_urls: true` in the configuration file" in answer
    assert harness.services.instances.find("inside") is None
    assert "inside" not in (await harness.command("admin", "instance list"))["text"]


@pytest.mark.parametrize("allow_private_instance_urls", [False])
async def test_configured_private_instances_still_work_without_the_setting(harness: Harness) -> None:
    # The operator wrote them in the config file: only chat installs are checked.
    jira_bob = harness.server.add_user("Bob", email="bob@example.com")
    await harness.connect_server("bob", jira_bob)
    assert "Bob" in (await harness.command("bob", "me"))["text"]


async def test_install_of_a_private_address_with_the_setting(harness: Harness) -> None:
    answer = (await harness.command("admin", "instance install server http://127.0.0.1:9 inside"))["text"]
    assert "inside (http://127.0.0.1:9) is installed" in answer
    assert harness.services.instances.find("inside") is not None


def known(h: Harness) -> list[KnownInstance]:
    return [i.known for i in h.services.instances.all()]


async def test_uninstall_errors_and_subscriptions_left_behind(harness: Harness) -> None:
    assert "comes from the config file" in (await harness.command("admin", "instance uninstall dc"))["text"]
    unknown = (await harness.command("admin", "instance uninstall nowhere"))["text"]
    assert unknown == unknown_instance("nowhere", known(harness))
    assert "Use `/jira instance uninstall" in (await harness.command("admin", "instance uninstall"))["text"]

    await harness.command("admin", f"instance install server {NEW_JIRA} newjira")
    await harness.services.db.subscriptions.upsert(
        _subscription(harness, "dev", NEW_JIRA), now=datetime.now(UTC)
    )
    text = (await harness.command("admin", "instance uninstall newjira"))["text"]
    assert "1 subscription still names it and stays idle" in text


async def test_alias_and_unalias(harness: Harness) -> None:
    text = (await harness.command("admin", f"instance alias {harness.cloud_url} prod"))["text"]
    assert text == f"{harness.cloud_url} is now also called `prod`."
    assert harness.services.instances.find("prod") is not None
    assert "| Cloud | prod |" in (await harness.command("admin", "instance list"))["text"]

    assert "is taken" in (await harness.command("admin", "instance alias dc prod"))["text"]
    assert "cannot be an alias" in (await harness.command("admin", "instance alias dc https://x"))["text"]
    unknown = (await harness.command("admin", "instance alias dcc x"))["text"]
    assert unknown == unknown_instance("dcc", known(harness)) and "(did you mean `dc`?)" in unknown
    assert (
        "Use `/jira instance alias URL ALIAS`"
        in (await harness.command("admin", "instance alias dc"))["text"]
    )

    assert "`prod` no longer names" in (await harness.command("admin", "instance unalias prod"))["text"]
    assert harness.services.instances.find("prod") is None
    missing = (await harness.command("admin", "instance unalias prod"))["text"]
    assert missing == unknown_instance("prod", known(harness))
    # Named by its URL (any case), an instance loses its alias too; one without says so.
    by_url = (await harness.command("admin", f"instance unalias {harness.server_url.upper()}/"))["text"]
    assert by_url == f"`dc` no longer names {harness.server_url}."
    none_left = (await harness.command("admin", f"instance unalias {harness.server_url}"))["text"]
    assert none_left == f"{harness.server_url} has no alias."


async def test_default(harness: Harness) -> None:
    text = (await harness.command("admin", "instance default dc"))["text"]
    assert text == f"dc ({harness.server_url}) is now the default Jira instance."
    assert "| dc | yes |" in (await harness.command("admin", "instance list"))["text"]
    misspelt = (await harness.command("admin", "instance default cloudd"))["text"]
    assert misspelt == unknown_instance("cloudd", known(harness))
    assert misspelt == (
        "There is no Jira instance `cloudd` (did you mean `cloud`?). Known instances: "
        f"`cloud` ({harness.cloud_url}), `dc` ({harness.server_url})."
    )
    text = (await harness.command("admin", f"instance default {harness.cloud_url.upper()}"))["text"]
    assert text == f"cloud ({harness.cloud_url}) is now the default Jira instance."
    assert "Use `/jira instance default" in (await harness.command("admin", "instance default"))["text"]


async def test_no_instance_installed(harness: Harness) -> None:
    deps = harness.services.commands.deps  # type: ignore[union-attr]
    deps.instances = InstanceDirectory((), harness.services.db.kv)
    await deps.instances.load(datetime.now(UTC))
    assert "No Jira instance is installed" in (await harness.command("admin", "instance list"))["text"]
    setup = (await harness.command("admin", "setup"))["text"]
    assert "1. :large_orange_diamond: Install a Jira instance: `/jira instance install cloud" in setup


async def test_webhook_urls_escape_the_secret(harness: Harness) -> None:
    deps = harness.services.commands.deps  # type: ignore[union-attr]
    deps.webhook_secret = "a+b/c&d"
    answer = await harness.command("admin", "webhook")
    assert answer["response_type"] == "ephemeral"
    text, base = answer["text"], harness.bot_url
    assert f"{base}/plugins/jira/api/v2/webhook?secret=a%2Bb%2Fc%26d\n" in text
    for url in (harness.cloud_url, harness.server_url):
        assert (
            f"{base}/plugins/jira/instance/{encode_instance_id(url)}/api/v2/webhook?secret=a%2Bb%2Fc%26d"
            in text
        )
    assert f"{base}/plugins/jira/webhook?secret=a%2Bb%2Fc%26d&team=acme&channel=dev" in text
    assert "Comment: created, updated, deleted" in text


async def test_webhook_for_one_instance(harness: Harness) -> None:
    text = (await harness.command("admin", "webhook dc", channel="ops"))["text"]
    instance_path = f"/plugins/jira/instance/{encode_instance_id(harness.server_url)}"
    assert f"{instance_path}/api/v2/webhook?secret=webhook-secret" in text
    assert f"{instance_path}/webhook?secret=webhook-secret&team=acme&channel=ops" in text
    assert "/plugins/jira/api/v2/webhook" not in text
    assert encode_instance_id(harness.cloud_url) not in text
    assert (
        "There is no Jira instance `nowhere`"
        in (await harness.command("admin", "webhook --instance nowhere"))["text"]
    )


async def test_stats(harness: Harness) -> None:
    jira_admin = harness.cloud.add_user("Admin", email="admin@example.com")
    await harness.connect_cloud("admin", jira_admin)
    await harness.services.db.subscriptions.upsert(_subscription(harness, "dev"), now=datetime.now(UTC))
    assert await post_webhook(harness, harness.cloud_url) == "accepted"
    assert await post_webhook(harness, harness.cloud_url, '{"event": "some_jira_event"}') == "ignored"
    text = (await harness.command("admin", "stats"))["text"]
    assert "Webhooks received: **2** (accepted 1, duplicates 0, ignored 1, failed or refused 0)" in text
    assert "Subscriptions: **1** in 1 channels" in text
    assert "Connected users: **1**" in text and f"cloud ({harness.cloud_url}): 1" in text
    assert "Backlog (webhooks and posts waiting): **" in text


def _subscription(harness: Harness, channel: str, instance_id: str = "") -> Subscription:
    return Subscription(
        id=f"sub-{channel}",
        name="Web",
        channel_id=harness.channels[channel],
        instance_id=instance_id or harness.cloud_url,
        filters=SubscriptionFilters(projects={"WEB"}, events={"event_created"}),
    )


async def test_setup_checklist_follows_progress(harness: Harness) -> None:
    first = (await harness.command("admin", "setup"))["text"]
    assert "1. :white_check_mark: Jira instances: cloud" in first
    assert f"2. :large_orange_diamond: The bot's public URL is `{harness.bot_url}`" in first
    assert "3. :large_orange_diamond: No webhook received yet." in first
    assert f"`{harness.bot_url}/plugins/jira/api/v2/webhook?secret=webhook-secret`" in first
    assert "`/jira connect cloud`, `/jira connect dc`" in first
    assert "5. :large_orange_diamond: Subscribe a channel: run `/jira subscribe add`" in first

    await harness.connect_cloud("admin", harness.cloud.add_user("Admin", email="admin@example.com"))
    await harness.connect_server("admin", harness.server.add_user("Admin", name="admin"))
    await harness.services.db.subscriptions.upsert(_subscription(harness, "dev"), now=datetime.now(UTC))
    assert await post_webhook(harness, harness.cloud_url) == "accepted"
    later = (await harness.command("admin", "setup"))["text"]
    assert "3. :white_check_mark: 1 webhooks received so far." in later
    assert "4. :white_check_mark: Your Jira account is connected." in later
    assert "5. :white_check_mark: Subscriptions: 1 (1 in this channel)." in later


async def test_setup_with_a_public_url(harness: Harness) -> None:
    deps = harness.services.commands.deps  # type: ignore[union-attr]
    server = deps.settings.server.model_copy(update={"public_url": "https://jira-bot.example.com"})
    deps.settings = deps.settings.model_copy(update={"server": server})
    text = (await harness.command("admin", "setup"))["text"]
    assert "2. :white_check_mark: Public URL: `https://jira-bot.example.com`." in text
    assert "`https://jira-bot.example.com/plugins/jira/api/v2/webhook?secret=webhook-secret`" in text


async def test_setup_gives_no_connect_advice_for_a_cloud_instance_without_an_oauth_app(
    harness: Harness,
) -> None:
    directory = harness.services.instances
    directory._check_url = None  # no DNS here: the URL check has tests of its own
    await directory.install("https://noapp.example.net", "cloud", "noapp")
    text = (await harness.command("admin", "setup"))["text"]
    assert "`/jira connect noapp`" not in text
    assert "noapp (https://noapp.example.net) has no way for users to connect yet" in text
    assert "`/jira connect cloud`, `/jira connect dc`" in text  # the others still can
