"""Connecting Mattermost users to Jira: the connect flows and the instance lookups they need.

Flows:
- Jira Cloud, OAuth 2.0 (3LO) with PKCE: `start_connect` keeps a one-time `state` (10 minutes)
  bound to the Mattermost user and instance, with the PKCE verifier sealed, and returns the bot's
  short connect link. Opening it (`open_connect`) binds the state to that browser (a cookie) and
  redirects to Atlassian; the callback (`complete_cloud`) must come from the same browser, takes
  the state (one-time), exchanges the code with the verifier, finds the site's cloud id, asks Jira
  who the token belongs to (`verify`) and stores the connection.
- Jira Server/DC with an application link, OAuth 1.0a: the same, with Jira's request token as
  the state (`complete_oauth1`).
- Jira Server/DC without one: the user pastes a personal access token in a dialog
  (`needs_token_dialog`, `connect_with_token`).

The browser binding is what stops a connect link sent to someone else from connecting their Jira
account to the sender's Mattermost account.

`AccountService` (bot/accounts/service.py) builds on this with what commands and notifications
ask later: credentials (refreshing Cloud tokens), disconnecting, preferences.

Time is always passed in (`now`).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from bot.accounts.crypto import DecryptionError, TokenCipher
from bot.accounts.models import (
    AccountError,
    Connection,
    JiraIdentity,
    NotificationSettings,
    OAuth1Secret,
    OAuth2Secret,
    PatSecret,
    Secret,
    TokenRejected,
)
from bot.accounts.oauth1_server import OAuth1Error, ServerOAuth1, TokenPair
from bot.accounts.oauth_cloud import CloudOAuth, InvalidGrantError, OAuthError, new_pkce_pair, pkce_challenge
from bot.accounts.store import ConnectionStore
from bot.config import JiraSettings
from bot.instances import Instance, InstanceDirectory, InstanceError
from bot.jira.credentials import Credentials, OAuth1Token, OAuth2Token, PersonalAccessToken
from bot.security.urls import UnsafeUrl
from bot.store.interfaces import KeyValueRepository

log = logging.getLogger(__name__)

# Asks Jira who the credentials belong to (GET /myself). `base_url` is the instance's configured
# URL; OAuth2Token credentials must be sent to their own `base_url` (the API gateway). Raises
# TokenRejected when Jira answers 401/403; any other exception means Jira could not be asked.
Verify = Callable[[str, Credentials], Awaitable[JiraIdentity]]

STATE_TTL = timedelta(minutes=10)
CONNECT_PATH = "/oauth/jira/connect"

_STATE_PREFIX = "connect:"
_BROWSER_PREFIX = "connect-browser:"

FLOW_CLOUD = "cloud"
FLOW_OAUTH1 = "oauth1"


class StateInvalid(AccountError):
    """The connect link or callback names no pending connection (used, expired, or made up)."""


@dataclass(frozen=True, slots=True)
class ConnectRedirect:
    """Where to send the browser that opened a connect link, and the browser nonce to keep in a
    cookie for the callback."""

    url: str
    browser_nonce: str


def connect_again(instance: str | None = None) -> str:
    """What to tell a user whose connection attempt failed."""
    return f"Run `/jira connect{' ' + instance if instance else ''}` in Mattermost again."


def _nonce_hash(nonce: str) -> str:
    return hashlib.sha256(nonce.encode()).hexdigest()


class ConnectFlows:
    """The instances users can connect to and the three ways to connect. Its collaborators are
    shared with `AccountService`, which extends it."""

    def __init__(
        self,
        *,
        jira: JiraSettings,
        public_url: str,
        store: ConnectionStore,
        kv: KeyValueRepository,
        cipher: TokenCipher,
        verify: Verify,
        cloud: CloudOAuth | None = None,
        oauth1: ServerOAuth1 | None = None,
        instances: InstanceDirectory | None = None,
        default_notifications: NotificationSettings | None = None,
    ) -> None:
        self._jira = jira
        # The switches a newly connected user starts with (an admin's choice).
        self._default_notifications = default_notifications or NotificationSettings()
        # Configured and chat-installed instances; without a directory, the configured ones.
        self._instances = instances if instances is not None else InstanceDirectory(jira.instances, kv)
        self._public_url = public_url.rstrip("/")
        self._store = store
        self._kv = kv
        self._cipher = cipher
        self._verify = verify
        self._cloud = cloud or CloudOAuth(
            public_url=public_url,
            auth_url=jira.atlassian_auth_url,
            api_url=jira.atlassian_api_url,
            timeout_seconds=jira.request_timeout_seconds,
        )
        self._oauth1 = oauth1 or ServerOAuth1(
            public_url=public_url, timeout_seconds=jira.request_timeout_seconds
        )

    @property
    def public_url(self) -> str:
        return self._public_url

    async def close(self) -> None:
        await self._cloud.close()
        await self._oauth1.close()

    # ------------------------------------------------------------------------------ instances

    def instance(self, name_or_url: str) -> Instance:
        """The instance by URL or alias; AccountError otherwise, with the sentence and did-you-mean
        every entry point gives for an unknown instance."""
        try:
            return self._instances.require(name_or_url)
        except InstanceError as e:
            raise AccountError(str(e)) from None

    def _configured(self, instance_id: str) -> Instance | None:
        return self._instances.find(instance_id)

    async def _check_reachable(self, inst: Instance) -> None:
        """Before anything is sent to an instance installed from chat: its host must still lead
        to public addresses (checked again here against DNS rebinding)."""
        try:
            await self._instances.check_before_sending(inst)
        except UnsafeUrl as e:
            log.warning("connect to %s refused: %s", inst.url, e)
            raise AccountError(
                f"Jira at {inst.url} cannot be connected: {e} Nothing was sent there. "
                "Ask a system admin to check the instance."
            ) from None

    def needs_token_dialog(self, instance: str) -> bool:
        """True when users of this instance connect by pasting a personal access token (Jira
        Server/DC without an application link configured)."""
        inst = self.instance(instance)
        return inst.type == "server" and inst.oauth1 is None

    # ------------------------------------------------------------------------ connect flows

    def _seal_state(self, state: str, data: dict[str, Any]) -> str:
        return self._cipher.encrypt(data, context=_STATE_PREFIX + state)

    async def start_connect(self, mm_user_id: str, instance: str, *, now: datetime) -> str:
        """The link to send the user (ephemeral): the bot's connect page, valid 10 minutes, once.

        Raises AccountError when the instance cannot be connected this way (Server without an
        application link: use the token dialog; Cloud without an OAuth app: ask an admin).
        """
        inst = self.instance(instance)
        record: dict[str, Any] = {"mm_user_id": mm_user_id, "instance_id": inst.url}
        if inst.type == "cloud":
            if inst.oauth is None:
                raise AccountError(
                    f"{inst.url} has no OAuth app configured, so accounts cannot be connected yet. "
                    "Ask a system admin to set `jira.instances[].oauth`."
                )
            state = secrets.token_urlsafe(32)
            verifier, _ = new_pkce_pair()
            record |= {"flow": FLOW_CLOUD, "sealed": self._seal_state(state, {"verifier": verifier})}
        else:
            if inst.oauth1 is None:
                raise AccountError(f"Connect to {inst.url} with a personal access token instead.")
            await self._check_reachable(inst)
            try:
                pair = await self._oauth1.request_token(inst)
            except OAuth1Error as exc:
                log.warning("OAuth 1.0a request token from %s failed: %s", inst.url, exc)
                reason = exc.problem or exc.status or "no answer"
                raise AccountError(
                    f"Jira at {inst.url} refused to start the connection ({reason}). "
                    "Check the application link, or try again later."
                ) from None
            state = pair.token
            record |= {"flow": FLOW_OAUTH1, "sealed": self._seal_state(state, {"secret": pair.secret})}
        await self._kv.put(_STATE_PREFIX + state, record, expires_at=now + STATE_TTL)
        return f"{self._public_url}{CONNECT_PATH}?{urlencode({'state': state})}"

    async def open_connect(self, state: str, browser_nonce: str | None, *, now: datetime) -> ConnectRedirect:
        """The connect link was opened: bind the state to this browser (first one wins) and say
        where to send it."""
        record = await self._kv.get(_STATE_PREFIX + state, now=now)
        if not isinstance(record, dict):
            raise StateInvalid("This connection link was already used or has expired. " + connect_again())
        nonce = browser_nonce or secrets.token_urlsafe(24)
        bound = await self._kv.add(
            _BROWSER_PREFIX + state, _nonce_hash(nonce), expires_at=now + STATE_TTL, now=now
        )
        if not bound and not await self._same_browser(state, browser_nonce, now):
            raise StateInvalid(
                "This connection link was already opened in another browser. Links are personal: "
                + connect_again()
            )
        inst = self._configured(record["instance_id"])
        if inst is None:
            raise StateInvalid("This Jira instance is no longer configured.")
        secret = self._open_state(state, record)
        if record["flow"] == FLOW_CLOUD:
            url = self._cloud.authorization_url(inst, state, pkce_challenge(secret["verifier"]))
        else:
            url = self._oauth1.authorize_url(inst, state)
        return ConnectRedirect(url=url, browser_nonce=nonce)

    async def _same_browser(self, state: str, browser_nonce: str | None, now: datetime) -> bool:
        expected = await self._kv.get(_BROWSER_PREFIX + state, now=now)
        if not browser_nonce or not isinstance(expected, str):
            return False
        return hmac.compare_digest(_nonce_hash(browser_nonce).encode(), expected.encode())

    def _open_state(self, state: str, record: dict[str, Any]) -> dict[str, Any]:
        try:
            return self._cipher.decrypt(record["sealed"], context=_STATE_PREFIX + state)
        except (DecryptionError, KeyError):
            raise StateInvalid("This connection link cannot be used. " + connect_again()) from None

    async def _take_state(
        self, state: str, flow: str, browser_nonce: str | None, now: datetime
    ) -> tuple[dict[str, Any], dict[str, Any], Instance]:
        if not state:
            raise StateInvalid("The answer from Jira carries no state. " + connect_again())
        # Checked before taking the state: a callback from the wrong browser must not spend it.
        if not await self._same_browser(state, browser_nonce, now):
            if await self._kv.get(_STATE_PREFIX + state, now=now) is None:
                raise StateInvalid("This connection link was already used or has expired. " + connect_again())
            raise StateInvalid(
                "This connection was started from another browser. Open the link from "
                "`/jira connect` in the browser you sign in with."
            )
        record = await self._kv.take(_STATE_PREFIX + state, now=now)
        await self._kv.delete(_BROWSER_PREFIX + state)
        if not isinstance(record, dict) or record.get("flow") != flow:
            raise StateInvalid("This connection link was already used or has expired. " + connect_again())
        inst = self._configured(record["instance_id"])
        if inst is None:
            raise StateInvalid("This Jira instance is no longer configured.")
        return record, self._open_state(state, record), inst

    async def complete_cloud(
        self, state: str, code: str, *, browser_nonce: str | None, now: datetime, error: str = ""
    ) -> Connection:
        """Atlassian redirected back with `code` (or `error` when the user declined)."""
        record, secret, inst = await self._take_state(state, FLOW_CLOUD, browser_nonce, now)
        if error or not code:
            raise AccountError(f"Jira Cloud did not grant access ({error or 'no code'}). " + connect_again())
        try:
            grant = await self._cloud.exchange_code(inst, code, secret["verifier"])
            cloud_id = await self._cloud.cloud_id_for(grant.access_token, inst.url)
        except InvalidGrantError:
            raise AccountError(
                "Jira Cloud refused the sign-in (expired or reused code). " + connect_again()
            ) from None
        except OAuthError as exc:
            log.warning("OAuth 2.0 code exchange for %s failed: %s", inst.url, exc)
            raise AccountError("Jira Cloud's sign-in service did not answer. " + connect_again()) from None
        if cloud_id is None:
            raise AccountError(
                f"Your Atlassian account gave no access to {inst.url}. On the consent page, "
                f"pick that site. " + connect_again()
            )
        if not grant.refresh_token:
            raise AccountError("Jira Cloud gave no refresh token (offline access). " + connect_again())
        oauth_secret = OAuth2Secret(
            access_token=grant.access_token,
            refresh_token=grant.refresh_token,
            expires_at=now + timedelta(seconds=grant.expires_in),
            cloud_id=cloud_id,
            scope=grant.scope,
        )
        return await self._save(record["mm_user_id"], inst, oauth_secret, now)

    async def complete_oauth1(
        self, oauth_token: str, verifier: str, *, browser_nonce: str | None, now: datetime
    ) -> Connection:
        """Jira redirected back after the user approved (or denied) the request token."""
        record, secret, inst = await self._take_state(oauth_token, FLOW_OAUTH1, browser_nonce, now)
        if not verifier or verifier == "denied":
            raise AccountError("Jira did not grant access. " + connect_again())
        try:
            pair = await self._oauth1.access_token(inst, TokenPair(oauth_token, secret["secret"]), verifier)
        except OAuth1Error as exc:
            log.warning("OAuth 1.0a access token from %s failed: %s", inst.url, exc)
            raise AccountError(
                f"Jira refused the connection ({exc.problem or exc.status}). " + connect_again()
            ) from None
        return await self._save(record["mm_user_id"], inst, OAuth1Secret(pair.token, pair.secret), now)

    async def connect_with_token(
        self, mm_user_id: str, instance: str, token: str, *, now: datetime
    ) -> Connection:
        """Connect with a personal access token (Server/DC), checked with Jira before it is kept."""
        inst = self.instance(instance)
        if inst.type != "server":
            raise AccountError(f"{inst.url} is Jira Cloud: connect with `/jira connect` (OAuth) instead.")
        token = token.strip()
        if not token:
            raise AccountError("The personal access token is empty.")
        return await self._save(mm_user_id, inst, PatSecret(token), now)

    async def _save(self, mm_user_id: str, inst: Instance, secret: Secret, now: datetime) -> Connection:
        credentials = self._credentials(inst, secret)
        if credentials is None:
            raise AccountError(f"{inst.url} cannot be connected this way any more; ask a system admin.")
        await self._check_reachable(inst)
        try:
            identity = await self._verify(inst.url, credentials)
        except TokenRejected:
            raise AccountError(
                f"Jira at {inst.url} refused these credentials. Check the token (and that it has not "
                "expired), then try again."
            ) from None
        except Exception:
            log.exception("checking new credentials with %s failed", inst.url)
            raise AccountError(
                f"Could not reach Jira at {inst.url} to check the connection; try again later."
            ) from None
        previous = await self._store.get(mm_user_id, inst.url)
        connection = Connection(
            mm_user_id=mm_user_id,
            instance_id=inst.url,
            identity=identity,
            secret=secret,
            connected_at=now,
            updated_at=now,
            # A reconnect keeps the user's notification switches.
            notifications=previous.notifications if previous else self._default_notifications,
        )
        stored = await self._store.upsert(connection, now=now)
        log.info("%s connected to %s (%s)", mm_user_id, inst.url, stored.auth_type.value)
        return stored

    # -------------------------------------------------------------------------- credentials

    def _credentials(self, inst: Instance, secret: Secret) -> Credentials | None:
        if isinstance(secret, PatSecret):
            return PersonalAccessToken(secret.token)
        if isinstance(secret, OAuth1Secret):
            if inst.oauth1 is None:
                return None
            return OAuth1Token(
                consumer_key=inst.oauth1.consumer_key,
                private_key_pem=inst.oauth1.private_key.get_secret_value(),
                token=secret.token,
                token_secret=secret.token_secret,
            )
        return OAuth2Token(
            access_token=secret.access_token, cloud_id=secret.cloud_id, api_url=self._cloud.api_url
        )
