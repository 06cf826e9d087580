"""Personal access tokens, revocation with rate-limited DMs, switches, and choosing an instance."""

from __future__ import annotations

import pytest

from bot.accounts.models import AccountError, AuthType, JiraIdentity, NotificationSettings
from bot.jira.credentials import PersonalAccessToken
from bot.names import KnownInstance, unknown_instance
from tests.accounts.conftest import CLOUD_URL, SERVER_URL, Harness, start_harness

BOB = JiraIdentity(name="bob", display_name="Bob <b>Builder</b>", email="bob@example.com")


async def test_server_without_application_link_uses_the_token_dialog(harness: Harness) -> None:
    h = harness
    assert h.service.needs_token_dialog("onprem")
    assert not h.service.needs_token_dialog("acme")
    with pytest.raises(AccountError, match="personal access token"):
        await h.service.start_connect("bob", "onprem", now=h.clock.now)
    with pytest.raises(AccountError) as unknown:
        h.service.needs_token_dialog("nowhere")
    assert str(unknown.value) == unknown_instance("nowhere", KNOWN)


# The sentence every entry point gives for an unknown instance (bot.names), spelt out once.
KNOWN = [KnownInstance(CLOUD_URL, "acme"), KnownInstance(SERVER_URL, "onprem")]
MISSPELT = (
    "There is no Jira instance `onprme` (did you mean `onprem`?). Known instances: "
    f"`acme` ({CLOUD_URL}), `onprem` ({SERVER_URL})."
)


async def test_connect_names_a_misspelt_instance_as_every_entry_point_does(harness: Harness) -> None:
    h = harness
    assert unknown_instance("onprme", KNOWN) == MISSPELT
    with pytest.raises(AccountError) as start:
        await h.service.start_connect("bob", "onprme", now=h.clock.now)
    assert str(start.value) == MISSPELT
    with pytest.raises(AccountError) as token:
        await h.service.connect_with_token("bob", "onprme", "good-pat", now=h.clock.now)
    assert str(token.value) == MISSPELT
    with pytest.raises(AccountError) as by_host:
        await h.service.choose_instance("bob", "jira.example.com")
    assert str(by_host.value) == unknown_instance("jira.example.com", KNOWN)
    assert "(did you mean `onprem`?)" in str(by_host.value)
    # URL or alias, in any case.
    assert (await h.service.choose_instance("bob", SERVER_URL.upper() + "/")).url == SERVER_URL
    assert h.service.instance("ACME").url == CLOUD_URL


async def test_personal_access_token_is_checked_before_it_is_kept(harness: Harness) -> None:
    h = harness
    h.verify.pats["good-pat"] = BOB
    with pytest.raises(AccountError, match="refused these credentials"):
        await h.service.connect_with_token("bob", "onprem", "bad-pat", now=h.clock.now)
    assert await h.service.connection("bob", "onprem") is None
    with pytest.raises(AccountError, match="empty"):
        await h.service.connect_with_token("bob", "onprem", "   ", now=h.clock.now)
    with pytest.raises(AccountError, match="Jira Cloud"):
        await h.service.connect_with_token("bob", "acme", "good-pat", now=h.clock.now)

    conn = await h.service.connect_with_token("bob", SERVER_URL, "  good-pat\n", now=h.clock.now)
    assert conn.auth_type is AuthType.PAT and conn.identity == BOB and conn.jira_user_key == "bob"
    assert h.verify.calls[-1] == (SERVER_URL, PersonalAccessToken("good-pat"))
    assert await h.service.credentials_for("bob", "onprem", now=h.clock.now) == PersonalAccessToken(
        "good-pat"
    )
    assert await h.service.mattermost_user_for("onprem", "bob") == "bob"
    assert await h.service.connected_count() == 1


async def test_unreachable_jira_is_not_a_bad_token(harness: Harness) -> None:
    h = harness
    h.verify.unreachable = True
    with pytest.raises(AccountError, match="Could not reach Jira"):
        await h.service.connect_with_token("bob", "onprem", "good-pat", now=h.clock.now)
    assert await h.service.connection("bob", "onprem") is None


async def test_revoked_token_disconnects_and_dms_at_most_once_per_five_minutes(harness: Harness) -> None:
    h = harness
    h.verify.pats |= {"pat-1": BOB, "pat-2": BOB}
    answers = []
    for minutes in (0, 4, 5):  # at 0, 4 and 9 minutes
        h.clock.advance(minutes=minutes)
        await h.service.connect_with_token("bob", "onprem", "pat-1", now=h.clock.now)
        answers.append(await h.service.on_revoked("bob", "onprem", now=h.clock.now))
        assert await h.service.connection("bob", "onprem") is None
    assert answers == [True, False, True]
    # Nothing left to disconnect: no DM either.
    assert not await h.service.on_revoked("bob", "onprem", now=h.clock.advance(minutes=10))


async def test_a_late_refusal_of_old_credentials_keeps_a_newer_connection(harness: Harness) -> None:
    h = harness
    h.verify.pats |= {"pat-old": BOB, "pat-new": BOB}
    await h.service.connect_with_token("bob", "onprem", "pat-old", now=h.clock.now)
    old = await h.service.credentials_for("bob", "onprem", now=h.clock.now)
    await h.service.connect_with_token("bob", "onprem", "pat-new", now=h.clock.now)
    assert not await h.service.on_revoked("bob", "onprem", now=h.clock.now, credentials=old)
    assert await h.service.credentials_for("bob", "onprem", now=h.clock.now) == PersonalAccessToken("pat-new")


async def test_notification_switches_survive_a_reconnect(harness: Harness) -> None:
    h = harness
    h.verify.pats["pat"] = BOB
    with pytest.raises(AccountError, match="not connected"):
        await h.service.set_notification("bob", "onprem", "mention", False, now=h.clock.now)
    await h.service.connect_with_token("bob", "onprem", "pat", now=h.clock.now)
    settings = await h.service.set_notification("bob", "onprem", "mention", False, now=h.clock.now)
    assert settings == NotificationSettings(mention=False)
    with pytest.raises(AccountError, match="unknown notification 'everything'"):
        await h.service.set_notification("bob", "onprem", "everything", False, now=h.clock.now)
    await h.service.connect_with_token("bob", "onprem", "pat", now=h.clock.now)
    conn = await h.service.connection("bob", "onprem")
    assert (
        conn is not None
        and not conn.notifications.enabled("mention")
        and conn.notifications.enabled("assignee")
    )


async def test_choosing_an_instance(harness: Harness) -> None:
    h = harness
    h.verify.pats["pat"] = BOB
    with pytest.raises(AccountError, match=r"Several Jira instances.*`acme`, `onprem`.*--instance"):
        await h.service.choose_instance("bob")
    assert (await h.service.choose_instance("bob", "acme")).url == CLOUD_URL
    await h.service.connect_with_token("bob", "onprem", "pat", now=h.clock.now)
    assert (await h.service.choose_instance("bob")).url == SERVER_URL  # the only one connected
    await h.service.set_default_instance("bob", "acme", now=h.clock.now)
    assert await h.service.default_instance("bob") == CLOUD_URL
    assert (await h.service.choose_instance("bob")).url == CLOUD_URL  # the default wins
    assert (await h.service.choose_instance("bob", "onprem")).url == SERVER_URL  # --instance wins

    # Disconnecting from the default instance clears the default.
    await h.service.set_default_instance("bob", "onprem", now=h.clock.now)
    assert await h.service.disconnect("bob", "onprem", now=h.clock.now)
    assert await h.service.default_instance("bob") is None
    assert not await h.service.disconnect("bob", "onprem", now=h.clock.now)

    await h.service.set_last_project("bob", "OPS", now=h.clock.now)
    assert await h.service.last_project("bob") == "OPS"


async def test_cloud_without_oauth_app_says_whom_to_ask(harness: Harness) -> None:

    h, server = await start_harness(
        harness.db,
        harness.auth,
        harness.store._cipher,
        bare={"url": "https://bare.atlassian.net", "alias": "bare"},
    )
    try:
        with pytest.raises(AccountError, match="system admin"):
            await h.service.start_connect("bob", "bare", now=h.clock.now)
    finally:
        await h.service.close()
        await server.close()


async def test_pages_escape_what_jira_says(harness: Harness) -> None:
    h = harness
    h.auth.account = h.auth.account.__class__("acc-x", "<script>alert(1)</script>", "x@example.com")
    async with h.browser().get(await h.service.start_connect("x", "acme", now=h.clock.now)) as resp:
        page = await resp.text()
    assert resp.status == 200
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert resp.headers["Content-Security-Policy"].startswith("default-src 'none'")
