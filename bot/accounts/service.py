"""Connecting Mattermost users to Jira, and handing out their credentials.

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

Cloud access tokens are refreshed shortly before they expire. Refresh tokens rotate (each use
returns a new one and disables the old), so refreshes of one connection are serialised (a lock in
the process, a kv lease across replicas) and the new token is stored only over the version that
was read. A refused refresh disconnects the user.

Time is always passed in (`now`).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import secrets
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import aiohttp

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
from bot.config import JiraSettings, Settings
from bot.instances import Instance, InstanceDirectory
from bot.jira.credentials import Credentials, OAuth1Token, OAuth2Token, PersonalAccessToken
from bot.security.urls import UnsafeUrl
from bot.store.interfaces import KeyValueRepository

log = logging.getLogger(__name__)

# Asks Jira who the credentials belong to (GET /myself). `base_url` is the instance's configured
# URL; OAuth2Token credentials must be sent to their own `base_url` (the API gateway). Raises
# TokenRejected when Jira answers 401/403; any other exception means Jira could not be asked.
Verify = Callable[[str, Credentials], Awaitable[JiraIdentity]]

STATE_TTL = timedelta(minutes=10)
REVOKED_DM_INTERVAL = timedelta(minutes=5)
# Refresh this long before the access token expires, so a request never starts with one about to lapse.
REFRESH_MARGIN = timedelta(minutes=2)
REFRESH_LEASE = timedelta(seconds=30)
CONNECT_PATH = "/oauth/jira/connect"

_STATE_PREFIX = "connect:"
_BROWSER_PREFIX = "connect-browser:"
_REFRESH_PREFIX = "oauth-refresh:"
_REVOKED_PREFIX = "revoked-dm:"

FLOW_CLOUD = "cloud"
FLOW_OAUTH1 = "oauth1"


class StateInvalid(AccountError):
    """The connect link or callback names no pending connection (used, expired, or made up)."""


class ReconnectRequired(AccountError):
    """The connection was revoked or expired and has been removed. `notify`: whether a DM about
    it is due (at most one per user and instance every 5 minutes)."""

    def __init__(self, message: str, *, notify: bool) -> None:
        super().__init__(message)
        self.notify = notify


@dataclass(frozen=True, slots=True)
class ConnectRedirect:
    """Where to send the browser that opened a connect link, and the browser nonce to keep in a
    cookie for the callback."""

    url: str
    browser_nonce: str


def _again(instance: str | None = None) -> str:
    return f"Run `/jira connect{' ' + instance if instance else ''}` in Mattermost again."


def _nonce_hash(nonce: str) -> str:
    return hashlib.sha256(nonce.encode()).hexdigest()


class AccountService:
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
        self._owner = secrets.token_hex(8)
        self._refresh_locks: weakref.WeakValueDictionary[tuple[str, str], asyncio.Lock] = (
            weakref.WeakValueDictionary()
        )

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        store: ConnectionStore,
        kv: KeyValueRepository,
        cipher: TokenCipher,
        verify: Verify,
        session: aiohttp.ClientSession | None = None,
        instances: InstanceDirectory | None = None,
    ) -> AccountService:
        return cls(
            jira=settings.jira,
            public_url=settings.server.public_url,
            store=store,
            kv=kv,
            cipher=cipher,
            verify=verify,
            cloud=CloudOAuth.from_settings(settings, session),
            oauth1=ServerOAuth1.from_settings(settings, session),
            instances=instances,
            default_notifications=NotificationSettings(
                assignee=settings.notifications.assignee,
                mention=settings.notifications.mention,
                reporter=settings.notifications.reporter,
                watching=settings.notifications.watching,
            ),
        )

    @property
    def public_url(self) -> str:
        return self._public_url

    async def close(self) -> None:
        await self._cloud.close()
        await self._oauth1.close()

    # ------------------------------------------------------------------------------ instances

    def instance(self, name_or_url: str) -> Instance:
        """The configured instance by URL or alias; AccountError naming the known ones otherwise."""
        found = self._instances.find(name_or_url)
        if found is None:
            known = ", ".join(i.alias or i.url for i in self._instances.all()) or "none configured"
            raise AccountError(f"There is no Jira instance `{name_or_url}` (known: {known}).")
        return found

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
            raise StateInvalid("This connection link was already used or has expired. " + _again())
        nonce = browser_nonce or secrets.token_urlsafe(24)
        bound = await self._kv.add(
            _BROWSER_PREFIX + state, _nonce_hash(nonce), expires_at=now + STATE_TTL, now=now
        )
        if not bound and not await self._same_browser(state, browser_nonce, now):
            raise StateInvalid(
                "This connection link was already opened in another browser. Links are personal: " + _again()
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
            raise StateInvalid("This connection link cannot be used. " + _again()) from None

    async def _take_state(
        self, state: str, flow: str, browser_nonce: str | None, now: datetime
    ) -> tuple[dict[str, Any], dict[str, Any], Instance]:
        if not state:
            raise StateInvalid("The answer from Jira carries no state. " + _again())
        # Checked before taking the state: a callback from the wrong browser must not spend it.
        if not await self._same_browser(state, browser_nonce, now):
            if await self._kv.get(_STATE_PREFIX + state, now=now) is None:
                raise StateInvalid("This connection link was already used or has expired. " + _again())
            raise StateInvalid(
                "This connection was started from another browser. Open the link from "
                "`/jira connect` in the browser you sign in with."
            )
        record = await self._kv.take(_STATE_PREFIX + state, now=now)
        await self._kv.delete(_BROWSER_PREFIX + state)
        if not isinstance(record, dict) or record.get("flow") != flow:
            raise StateInvalid("This connection link was already used or has expired. " + _again())
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
            raise AccountError(f"Jira Cloud did not grant access ({error or 'no code'}). " + _again())
        try:
            grant = await self._cloud.exchange_code(inst, code, secret["verifier"])
            cloud_id = await self._cloud.cloud_id_for(grant.access_token, inst.url)
        except InvalidGrantError:
            raise AccountError(
                "Jira Cloud refused the sign-in (expired or reused code). " + _again()
            ) from None
        except OAuthError as exc:
            log.warning("OAuth 2.0 code exchange for %s failed: %s", inst.url, exc)
            raise AccountError("Jira Cloud's sign-in service did not answer. " + _again()) from None
        if cloud_id is None:
            raise AccountError(
                f"Your Atlassian account gave no access to {inst.url}. On the consent page, "
                f"pick that site. " + _again()
            )
        if not grant.refresh_token:
            raise AccountError("Jira Cloud gave no refresh token (offline access). " + _again())
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
            raise AccountError("Jira did not grant access. " + _again())
        try:
            pair = await self._oauth1.access_token(inst, TokenPair(oauth_token, secret["secret"]), verifier)
        except OAuth1Error as exc:
            log.warning("OAuth 1.0a access token from %s failed: %s", inst.url, exc)
            raise AccountError(
                f"Jira refused the connection ({exc.problem or exc.status}). " + _again()
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

    async def credentials_for(self, mm_user_id: str, instance: str, *, now: datetime) -> Credentials | None:
        """The user's credentials for the instance, or None when they are not connected.

        A Cloud token about to expire is refreshed first. Raises ReconnectRequired when the
        refresh is refused (the user is disconnected), AccountError when it cannot be done now.
        """
        inst = self._configured(instance)
        if inst is None:
            return None
        conn = await self._store.get(mm_user_id, inst.url)
        if conn is None:
            return None
        if isinstance(conn.secret, OAuth2Secret) and conn.secret.expires_at - REFRESH_MARGIN <= now:
            return await self._refreshed(inst, mm_user_id, now)
        return self._credentials(inst, conn.secret)

    def _lock(self, key: tuple[str, str]) -> asyncio.Lock:
        lock = self._refresh_locks.get(key)
        if lock is None:
            lock = asyncio.Lock()
            self._refresh_locks[key] = lock
        return lock

    async def _refreshed(self, inst: Instance, mm_user_id: str, now: datetime) -> Credentials | None:
        async with self._lock((mm_user_id, inst.url)):
            # Read again under the lock: another task may have refreshed meanwhile.
            conn = await self._store.get(mm_user_id, inst.url)
            if conn is None or not isinstance(conn.secret, OAuth2Secret):
                return self._credentials(inst, conn.secret) if conn else None
            secret = conn.secret
            if secret.expires_at - REFRESH_MARGIN > now:
                return self._credentials(inst, secret)
            lease = f"{_REFRESH_PREFIX}{inst.url}:{mm_user_id}"
            if not await self._kv.add(lease, self._owner, expires_at=now + REFRESH_LEASE, now=now):
                # Another replica is refreshing this very token.
                if secret.expires_at > now:
                    return self._credentials(inst, secret)
                raise AccountError("Your Jira Cloud sign-in is being renewed; try again in a moment.")
            try:
                return await self._refresh_under_lease(inst, conn, secret, now)
            finally:
                await self._kv.delete(lease)

    async def _refresh_under_lease(
        self, inst: Instance, conn: Connection, secret: OAuth2Secret, now: datetime
    ) -> Credentials | None:
        try:
            grant = await self._cloud.refresh(inst, secret.refresh_token)
        except InvalidGrantError:
            # Only the version we read is removed: a reconnect meanwhile stays.
            if not await self._store.delete(conn.mm_user_id, inst.url, revision=conn.revision):
                current = await self._store.get(conn.mm_user_id, inst.url)
                return self._credentials(inst, current.secret) if current else None
            log.info("refresh for %s on %s refused; disconnected", conn.mm_user_id, inst.url)
            notify = await self._revoked_dm_due(conn.mm_user_id, inst.url, now)
            raise ReconnectRequired(
                f"Your Jira connection to {inst.url} has expired or was revoked. "
                + _again(inst.alias or inst.url),
                notify=notify,
            ) from None
        except OAuthError as exc:
            log.warning("refresh for %s on %s failed: %s", conn.mm_user_id, inst.url, exc)
            if secret.expires_at > now:
                return self._credentials(inst, secret)
            raise AccountError(
                "Jira Cloud's sign-in service did not answer; try again in a moment."
            ) from None
        renewed = OAuth2Secret(
            access_token=grant.access_token,
            # Rotating refresh tokens: the one just used is now disabled, so the new one must be kept.
            refresh_token=grant.refresh_token or secret.refresh_token,
            expires_at=now + timedelta(seconds=grant.expires_in),
            cloud_id=secret.cloud_id,
            scope=grant.scope or secret.scope,
        )
        if not await self._store.replace_secret(
            conn.mm_user_id, inst.url, renewed, revision=conn.revision, now=now
        ):
            # Reconnected or disconnected while refreshing: what is stored now wins.
            current = await self._store.get(conn.mm_user_id, inst.url)
            return self._credentials(inst, current.secret) if current else None
        return self._credentials(inst, renewed)

    # ---------------------------------------------------------------------- disconnecting

    async def disconnect(self, mm_user_id: str, instance: str, *, now: datetime) -> bool:
        """Forget the user's connection (True when there was one). The token is not revoked at
        Jira (Atlassian has no revocation endpoint for 3LO); the user can revoke it there."""
        inst_id = self._instance_id(instance)
        removed = await self._store.delete(mm_user_id, inst_id)
        prefs = await self._store.get_prefs(mm_user_id)
        if prefs.default_instance == inst_id:
            await self._store.set_prefs(mm_user_id, default_instance=None, now=now)
        return removed

    async def on_revoked(
        self, mm_user_id: str, instance: str, *, now: datetime, credentials: Credentials | None = None
    ) -> bool:
        """Jira answered 401 to the user's credentials: disconnect them. True when a DM telling
        them should be sent (at most one per user and instance every 5 minutes).

        With `credentials` (those that were refused), a connection made since with other
        credentials is left alone.
        """
        inst_id = self._instance_id(instance)
        conn = await self._store.get(mm_user_id, inst_id)
        if conn is None:
            return False
        if credentials is not None:
            inst = self._configured(inst_id)
            if inst is None or self._credentials(inst, conn.secret) != credentials:
                return False
        if not await self._store.delete(mm_user_id, inst_id, revision=conn.revision):
            return False
        log.info("credentials of %s on %s were refused; disconnected", mm_user_id, inst_id)
        return await self._revoked_dm_due(mm_user_id, inst_id, now)

    async def _revoked_dm_due(self, mm_user_id: str, instance_id: str, now: datetime) -> bool:
        return await self._kv.add(
            f"{_REVOKED_PREFIX}{instance_id}:{mm_user_id}",
            True,
            expires_at=now + REVOKED_DM_INTERVAL,
            now=now,
        )

    # --------------------------------------------------------------------------- queries

    def _instance_id(self, instance: str) -> str:
        found = self._configured(instance)
        return found.url if found else instance.rstrip("/")

    async def connection(self, mm_user_id: str, instance: str) -> Connection | None:
        return await self._store.get(mm_user_id, self._instance_id(instance))

    async def connections_for(self, mm_user_id: str) -> list[Connection]:
        return await self._store.list_for_user(mm_user_id)

    async def mattermost_user_for(self, instance: str, jira_user: str) -> str | None:
        """The Mattermost user connected as this Jira user (accountId or username), if any."""
        found = await self._store.find_by_jira_user(self._instance_id(instance), jira_user)
        return found.mm_user_id if found else None

    async def connected_count(self, instance: str | None = None) -> int:
        return await self._store.count(self._instance_id(instance) if instance else None)

    async def set_notification(
        self, mm_user_id: str, instance: str, kind: str, on: bool, *, now: datetime
    ) -> NotificationSettings:
        inst_id = self._instance_id(instance)
        conn = await self._store.get(mm_user_id, inst_id)
        if conn is None:
            raise AccountError(f"You are not connected to {inst_id}. Run `/jira connect` first.")
        try:
            settings = conn.notifications.with_kind(kind, on)
        except ValueError as exc:
            raise AccountError(str(exc)) from None
        await self._store.set_notifications(mm_user_id, inst_id, settings, now=now)
        return settings

    async def default_instance(self, mm_user_id: str) -> str | None:
        return (await self._store.get_prefs(mm_user_id)).default_instance

    async def set_default_instance(self, mm_user_id: str, instance: str | None, *, now: datetime) -> None:
        value = self.instance(instance).url if instance else None
        await self._store.set_prefs(mm_user_id, default_instance=value, now=now)

    async def last_project(self, mm_user_id: str) -> str | None:
        return (await self._store.get_prefs(mm_user_id)).last_project

    async def set_last_project(self, mm_user_id: str, project_key: str, *, now: datetime) -> None:
        await self._store.set_prefs(mm_user_id, last_project=project_key, now=now)

    async def choose_instance(self, mm_user_id: str, requested: str | None = None) -> Instance:
        """`--instance` when given, else the user's default, else the only instance they are
        connected to, else the only configured one; else AccountError saying how to choose."""
        if requested:
            return self.instance(requested)
        default = await self.default_instance(mm_user_id)
        if default and (found := self._configured(default)) is not None:
            return found
        connected = [c for c in await self.connections_for(mm_user_id) if self._configured(c.instance_id)]
        if len(connected) == 1:
            return self.instance(connected[0].instance_id)
        everything = self._instances.all()
        if len(everything) == 1:
            return everything[0]
        if not everything:
            raise AccountError("No Jira instance is configured yet. Ask a system admin to add one.")
        names = ", ".join(f"`{i.alias or i.url}`" for i in everything)
        raise AccountError(
            f"Several Jira instances are configured ({names}): add `--instance URL|alias` to say which."
        )
