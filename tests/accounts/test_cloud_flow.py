"""Jira Cloud OAuth 2.0 (3LO) with PKCE, end to end over HTTP: the bot's connect link, the fake
Atlassian consent and token endpoints, the bot's callback, then refreshes with rotating tokens."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest

from bot.accounts.models import AccountError, OAuth2Secret
from bot.accounts.oauth_cloud import SCOPES, InvalidGrantError, pkce_challenge
from bot.accounts.service import ReconnectRequired
from bot.jira.credentials import OAuth2Token
from tests.accounts.conftest import ALICE, CLOUD_ID, CLOUD_URL, Harness
from tests.fakes.atlassian_auth import Site


async def step(browser: aiohttp.ClientSession, url: str) -> tuple[int, str, str]:
    """One browser request without following redirects: (status, Location, body)."""
    async with browser.get(url, allow_redirects=False) as resp:
        return resp.status, resp.headers.get("Location", ""), await resp.text()


async def to_callback(
    h: Harness, browser: aiohttp.ClientSession, mm_user_id: str = "alice"
) -> tuple[str, str]:
    """Start a connection and walk the browser up to (not into) the bot's callback: (callback URL, state)."""
    link = await h.service.start_connect(mm_user_id, "acme", now=h.clock.now)
    status, authorize, _ = await step(browser, link)
    assert status == 302 and authorize.startswith(h.auth.url + "/authorize?")
    status, callback, _ = await step(browser, authorize)
    assert status == 302 and callback.startswith(h.bot_url + "/oauth/jira/callback?")
    return callback, parse_qs(urlsplit(link).query)["state"][0]


async def test_connect_end_to_end(harness: Harness) -> None:
    h = harness
    link = await h.service.start_connect("alice", "acme", now=h.clock.now)
    assert link.startswith(h.bot_url + "/oauth/jira/connect?state=")

    browser = h.browser()
    async with browser.get(link) as resp:  # bot → Atlassian consent → bot callback
        page = await resp.text()
        hops = [str(r.url).split("?")[0] for r in resp.history]
    assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/html")
    assert "Connected to Jira" in page and "Alice Liddell (alice@example.com)" in page
    assert resp.headers["Referrer-Policy"] == "no-referrer" and resp.headers["Cache-Control"] == "no-store"
    assert hops == [h.bot_url + "/oauth/jira/connect", h.auth.url + "/authorize"]

    # The authorization request is the one Atlassian documents, with PKCE.
    asked = h.auth.authorize_requests[-1]
    assert asked["audience"] == "api.atlassian.com" and asked["client_id"] == "client-id-acme"
    assert asked["scope"].split() == list(SCOPES)
    assert asked["redirect_uri"] == h.bot_url + "/oauth/jira/callback"
    assert (asked["response_type"], asked["prompt"], asked["code_challenge_method"]) == (
        "code",
        "consent",
        "S256",
    )
    assert asked["state"] == parse_qs(urlsplit(link).query)["state"][0]
    assert len(asked["code_challenge"]) == 43  # base64url of a SHA-256 digest, unpadded

    conn = await h.service.connection("alice", "acme")
    assert conn is not None and conn.identity.account_id == ALICE.account_id
    assert isinstance(conn.secret, OAuth2Secret) and conn.secret.cloud_id == CLOUD_ID
    assert conn.secret.refresh_token in h.auth.live_refresh_tokens()
    creds = await h.service.credentials_for("alice", CLOUD_URL, now=h.clock.now)
    assert isinstance(creds, OAuth2Token) and creds.base_url == f"{h.auth.url}/ex/jira/{CLOUD_ID}"
    # The identity was asked of Jira with the new token, for the configured instance.
    assert h.verify.calls[-1] == (CLOUD_URL, creds)


async def test_state_is_one_time(harness: Harness) -> None:
    h = harness
    browser = h.browser()
    callback, _ = await to_callback(h, browser)
    status, _, page = await step(browser, callback)
    assert status == 200 and "Connected to Jira" in page
    await h.service.disconnect("alice", "acme", now=h.clock.now)

    status, _, page = await step(browser, callback)  # the same answer replayed
    assert status == 400 and "already used or has expired" in page and "/jira connect" in page
    assert await h.service.connection("alice", "acme") is None


async def test_state_expires_after_ten_minutes(harness: Harness) -> None:
    h = harness
    browser = h.browser()
    link = await h.service.start_connect("alice", "acme", now=h.clock.now)
    h.clock.advance(minutes=10, seconds=1)
    status, _, page = await step(browser, link)
    assert status == 400 and "expired" in page

    h.clock.advance(minutes=-10, seconds=-1)
    callback, _ = await to_callback(h, browser)
    h.clock.advance(minutes=11)
    status, _, page = await step(browser, callback)
    assert status == 400 and "/jira connect" in page
    assert await h.service.connection("alice", "acme") is None


async def test_a_state_cannot_be_completed_from_another_browser(harness: Harness) -> None:
    h = harness
    alice, mallory = h.browser(), h.browser()
    link = await h.service.start_connect("alice", "acme", now=h.clock.now)
    status, authorize, _ = await step(alice, link)
    assert status == 302

    # Someone else opening the same link is refused: it is bound to the first browser.
    status, _, page = await step(mallory, link)
    assert status == 400 and "another browser" in page

    # Someone else's browser bringing a code for Alice's state is refused, and does not spend it.
    h.auth.account = ALICE.__class__("acc-mallory", "Mallory", "mallory@example.com")
    _, callback, _ = await step(mallory, authorize)
    status, _, page = await step(mallory, callback)
    assert status == 400 and "another browser" in page
    assert await h.service.connection("alice", "acme") is None

    h.auth.account = ALICE
    _, callback, _ = await step(alice, authorize)
    status, _, page = await step(alice, callback)
    assert status == 200 and "Alice Liddell" in page


async def test_a_code_for_another_flow_fails_the_pkce_check(harness: Harness) -> None:
    h = harness
    browser = h.browser()
    first_callback, first_state = await to_callback(h, browser)
    second_callback, _ = await to_callback(h, browser)
    code_of_second = parse_qs(urlsplit(second_callback).query)["code"][0]
    # The second flow's code presented with the first flow's state (and so its verifier).
    injected = first_callback.split("?")[0] + f"?code={code_of_second}&state={first_state}"
    status, _, page = await step(browser, injected)
    assert status == 400 and "refused the sign-in" in page
    assert await h.service.connection("alice", "acme") is None


async def test_code_exchange_checks_the_verifier(harness: Harness) -> None:
    h = harness
    inst = h.service.instance("acme")
    cloud = h.cloud
    verifier, wrong = "v" * 64, "w" * 64
    url = cloud.authorization_url(inst, "s1", pkce_challenge(verifier))
    status, callback, _ = await step(h.browser(), url)
    assert status == 302
    code = parse_qs(urlsplit(callback).query)["code"][0]
    with pytest.raises(InvalidGrantError):
        await cloud.exchange_code(inst, code, wrong)
    # The code was spent by the failed attempt: even the right verifier cannot use it now.
    with pytest.raises(InvalidGrantError):
        await cloud.exchange_code(inst, code, verifier)


async def test_declined_consent_and_site_not_granted(harness: Harness) -> None:
    h = harness
    h.auth.decline = True
    async with h.browser().get(await h.service.start_connect("alice", "acme", now=h.clock.now)) as resp:
        assert resp.status == 400 and "did not grant access" in await resp.text()

    h.auth.decline = False
    h.auth.sites = [Site("other-cloud", "https://other.atlassian.net")]
    async with h.browser().get(await h.service.start_connect("alice", "acme", now=h.clock.now)) as resp:
        page = await resp.text()
    assert resp.status == 400 and f"no access to {CLOUD_URL}" in page
    assert await h.service.connection("alice", "acme") is None


async def connected(h: Harness) -> OAuth2Secret:
    async with h.browser().get(await h.service.start_connect("alice", "acme", now=h.clock.now)) as resp:
        assert resp.status == 200, await resp.text()
    conn = await h.service.connection("alice", "acme")
    assert conn is not None and isinstance(conn.secret, OAuth2Secret)
    return conn.secret


async def test_refresh_rotates_and_stores_the_new_refresh_token(harness: Harness) -> None:
    h = harness
    first = await connected(h)
    # Well before expiry: the stored token is used as is.
    h.clock.advance(minutes=30)
    creds = await h.service.credentials_for("alice", "acme", now=h.clock.now)
    assert isinstance(creds, OAuth2Token) and creds.access_token == first.access_token
    assert "refresh_token" not in h.auth.token_requests

    for _ in range(2):  # twice: the second refresh must use the token the first one returned
        h.clock.advance(minutes=59)
        before = await h.service.connection("alice", "acme")
        assert before is not None and isinstance(before.secret, OAuth2Secret)
        creds = await h.service.credentials_for("alice", "acme", now=h.clock.now)
        after = await h.service.connection("alice", "acme")
        assert after is not None and isinstance(after.secret, OAuth2Secret)
        assert isinstance(creds, OAuth2Token) and creds.access_token == after.secret.access_token
        assert after.secret.refresh_token != before.secret.refresh_token
        assert h.auth.live_refresh_tokens() == [after.secret.refresh_token]
        assert after.secret.expires_at == h.clock.now + timedelta(seconds=h.auth.access_ttl)
        assert h.auth.identity_for(creds.access_token) == ALICE
    assert h.auth.token_requests.count("refresh_token") == 2

    # Atlassian disables a used refresh token: presenting the first one again is refused.
    with pytest.raises(InvalidGrantError):
        await h.cloud.refresh(h.service.instance("acme"), first.refresh_token)


async def test_concurrent_requests_refresh_once(harness: Harness) -> None:
    h = harness
    await connected(h)
    h.clock.advance(minutes=59)
    results = await asyncio.gather(
        *(h.service.credentials_for("alice", "acme", now=h.clock.now) for _ in range(5))
    )
    assert h.auth.token_requests.count("refresh_token") == 1
    assert len({r.access_token for r in results if isinstance(r, OAuth2Token)}) == 1
    assert await h.service.connection("alice", "acme") is not None


async def test_a_reused_refresh_token_disconnects(harness: Harness) -> None:
    h = harness
    stored = await connected(h)
    # Used elsewhere (e.g. by a process that crashed before storing the rotated one).
    await h.cloud.refresh(h.service.instance("acme"), stored.refresh_token)
    h.clock.advance(hours=1)
    with pytest.raises(ReconnectRequired) as refused:
        await h.service.credentials_for("alice", "acme", now=h.clock.now)
    assert refused.value.notify and "/jira connect acme" in str(refused.value)
    assert await h.service.connection("alice", "acme") is None
    assert await h.service.credentials_for("alice", "acme", now=h.clock.now) is None


async def test_revoked_at_atlassian_disconnects_with_one_dm_per_five_minutes(harness: Harness) -> None:
    h = harness
    h.auth.access_ttl = 60  # inside the refresh margin at once: the next use refreshes
    notified = []
    for minutes_later in (0, 2, 4):  # revoked at 0, 2 and 6 minutes
        h.clock.advance(minutes=minutes_later)
        await connected(h)
        h.auth.revoke(ALICE.account_id)
        with pytest.raises(ReconnectRequired) as refused:
            await h.service.credentials_for("alice", "acme", now=h.clock.now)
        notified.append(refused.value.notify)
        assert await h.service.connection("alice", "acme") is None
    assert notified == [True, False, True]


async def test_sign_in_service_down_keeps_a_still_valid_token(harness: Harness) -> None:
    h = harness
    first = await connected(h)
    h.clock.advance(minutes=59)  # inside the refresh margin, not yet expired
    await h.auth.close()
    creds = await h.service.credentials_for("alice", "acme", now=h.clock.now)
    assert isinstance(creds, OAuth2Token) and creds.access_token == first.access_token
    h.clock.advance(minutes=2)  # now expired
    with pytest.raises(AccountError, match="did not answer"):
        await h.service.credentials_for("alice", "acme", now=h.clock.now)
    assert await h.service.connection("alice", "acme") is not None
