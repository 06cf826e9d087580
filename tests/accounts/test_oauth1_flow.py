"""Jira Server/DC OAuth 1.0a (RSA-SHA1) end to end over HTTP against a fake Jira whose endpoints
verify the signatures with the application link's public key."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator

import pytest

from bot.accounts.crypto import TokenCipher
from bot.accounts.models import AccountError, AuthType, OAuth1Secret
from bot.accounts.oauth1_server import OAuth1Error, ServerOAuth1, TokenPair
from bot.config import ServerOAuthSettings
from bot.jira.credentials import OAuth1Token
from bot.store.db import Database
from tests.accounts.conftest import Harness, start_harness
from tests.fakes.atlassian_auth import FakeAtlassianAuth, FakeJiraOAuth1, JiraServerUser, new_rsa_key_pair

CAROL = JiraServerUser("carol", "Carol Danvers", "carol@example.com")


@pytest.fixture(scope="module")
def key_pair() -> tuple[str, str]:
    return new_rsa_key_pair()


@pytest.fixture
async def jira(key_pair: tuple[str, str]) -> AsyncIterator[FakeJiraOAuth1]:
    fake = FakeJiraOAuth1(consumer_key="jira-chatops", public_key_pem=key_pair[1], user=CAROL)
    await fake.start()
    yield fake
    await fake.close()


@pytest.fixture
async def oauth1_harness(
    db: Database,
    fake_auth: FakeAtlassianAuth,
    cipher: TokenCipher,
    jira: FakeJiraOAuth1,
    key_pair: tuple[str, str],
) -> AsyncIterator[Harness]:
    h, server = await start_harness(
        db,
        fake_auth,
        cipher,
        dc={
            "url": jira.url,
            "type": "server",
            "alias": "dc",
            "oauth1": {"consumer_key": "jira-chatops", "private_key": key_pair[0]},
        },
    )
    h.verify.jira_oauth1 = jira
    yield h
    for browser in h.browsers:
        await browser.close()
    await h.service.close()
    await server.close()


async def test_connect_end_to_end(
    oauth1_harness: Harness, jira: FakeJiraOAuth1, key_pair: tuple[str, str]
) -> None:
    h = oauth1_harness
    assert not h.service.needs_token_dialog("dc")
    link = await h.service.start_connect("carol", "dc", now=h.clock.now)
    assert link.startswith(h.bot_url + "/oauth/jira/connect?state=")
    async with h.browser().get(link) as resp:  # bot → Jira's authorize page → bot callback
        page = await resp.text()
        hops = [str(r.url).split("?")[0] for r in resp.history]
    assert resp.status == 200 and "Carol Danvers (carol@example.com)" in page, page
    assert hops == [h.bot_url + "/oauth/jira/connect", jira.url + "/plugins/servlet/oauth/authorize"]

    conn = await h.service.connection("carol", "dc")
    assert conn is not None and conn.auth_type is AuthType.OAUTH1 and conn.jira_user_key == "carol"
    assert isinstance(conn.secret, OAuth1Secret) and jira.identity_for(conn.secret.token) == CAROL
    creds = await h.service.credentials_for("carol", "dc", now=h.clock.now)
    assert creds == OAuth1Token("jira-chatops", key_pair[0], conn.secret.token, conn.secret.token_secret)


async def test_denied_approval_and_replayed_callback(oauth1_harness: Harness, jira: FakeJiraOAuth1) -> None:
    h = oauth1_harness
    jira.approve = False
    async with h.browser().get(await h.service.start_connect("carol", "dc", now=h.clock.now)) as resp:
        assert resp.status == 400 and "did not grant access" in await resp.text()

    jira.approve = True
    browser = h.browser()
    async with browser.get(await h.service.start_connect("carol", "dc", now=h.clock.now)) as resp:
        assert resp.status == 200
        callback = str(resp.url)
    async with browser.get(callback) as replay:
        assert replay.status == 400 and "already used or has expired" in await replay.text()


async def test_signatures_and_tokens_are_checked_by_jira(
    oauth1_harness: Harness, jira: FakeJiraOAuth1
) -> None:
    h = oauth1_harness
    configured = h.service.instance("dc")
    other_private, _ = new_rsa_key_pair()
    wrong_key = dataclasses.replace(
        configured,
        oauth1=ServerOAuthSettings.model_validate(
            {"consumer_key": "jira-chatops", "private_key": other_private}
        ),
    )
    client = ServerOAuth1(public_url=h.bot_url)
    try:
        with pytest.raises(OAuth1Error) as refused:
            await client.request_token(wrong_key)
        assert (refused.value.problem, refused.value.status) == ("signature_invalid", 401)
        with pytest.raises(OAuth1Error) as rejected:
            await client.access_token(configured, TokenPair("never-issued", "secret"), "verifier")
        assert rejected.value.problem == "token_rejected"
    finally:
        await client.close()


async def test_jira_refusing_to_start_is_explained(oauth1_harness: Harness, jira: FakeJiraOAuth1) -> None:
    h = oauth1_harness
    await jira.close()
    with pytest.raises(AccountError, match="refused to start the connection"):
        await h.service.start_connect("carol", "dc", now=h.clock.now)
