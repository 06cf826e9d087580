"""The accounts users have connected, as commands and notifications use them: credentials
(refreshing Cloud tokens), disconnecting, preferences and lookups. Connecting is in
bot/accounts/connect.py (`ConnectFlows`, which `AccountService` extends).

Cloud access tokens are refreshed shortly before they expire. Refresh tokens rotate (each use
returns a new one and disables the old), so refreshes of one connection are serialised (a lock in
the process, a kv lease across replicas) and the new token is stored only over the version that
was read. A refused refresh disconnects the user.

Time is always passed in (`now`).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import weakref
from datetime import datetime, timedelta
from functools import cached_property
from typing import Any

import aiohttp

from bot.accounts.connect import ConnectFlows, Verify, connect_again
from bot.accounts.crypto import TokenCipher
from bot.accounts.models import AccountError, Connection, NotificationSettings, OAuth2Secret
from bot.accounts.oauth1_server import ServerOAuth1
from bot.accounts.oauth_cloud import CloudOAuth, InvalidGrantError, OAuthError
from bot.accounts.store import ConnectionStore
from bot.config import Settings
from bot.instances import Instance, InstanceDirectory
from bot.jira.credentials import Credentials
from bot.store.interfaces import KeyValueRepository, ReplicaRepository
from bot.store.liveness import holder_is_dead

__all__ = ["AccountError", "AccountService", "ReconnectRequired"]

log = logging.getLogger(__name__)

REVOKED_DM_INTERVAL = timedelta(minutes=5)
# Refresh this long before the access token expires, so a request never starts with one about to lapse.
REFRESH_MARGIN = timedelta(minutes=2)
REFRESH_LEASE = timedelta(seconds=30)

_REFRESH_PREFIX = "oauth-refresh:"
_REVOKED_PREFIX = "revoked-dm:"


class ReconnectRequired(AccountError):
    """The connection was revoked or expired and has been removed. `notify`: whether a DM about
    it is due (at most one per user and instance every 5 minutes)."""

    def __init__(self, message: str, *, notify: bool) -> None:
        super().__init__(message)
        self.notify = notify


class AccountService(ConnectFlows):
    """Everything about users' Jira accounts; one per process."""

    def __init__(
        self, *, replicas: ReplicaRepository | None = None, owner: str | None = None, **flows: Any
    ) -> None:
        """`owner`: this process as the replicas' heartbeats name it (bot.pipeline.replica);
        with `replicas`, a refresh lease held by a replica whose heartbeat went stale is taken
        over at once instead of after REFRESH_LEASE."""
        super().__init__(**flows)
        self._replicas = replicas
        self._owner = owner or secrets.token_hex(8)

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
        replicas: ReplicaRepository | None = None,
        owner: str | None = None,
    ) -> AccountService:
        return cls(
            replicas=replicas,
            owner=owner,
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

    # -------------------------------------------------------------------------- credentials

    @cached_property
    def _refresh_locks(self) -> weakref.WeakValueDictionary[tuple[str, str], asyncio.Lock]:
        return weakref.WeakValueDictionary()

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
            if not await self._take_lease(lease, now):
                # Another replica is refreshing this very token.
                if secret.expires_at > now:
                    return self._credentials(inst, secret)
                raise AccountError("Your Jira Cloud sign-in is being renewed; try again in a moment.")
            try:
                # Read again under the lease: a replica that held it before may have just stored a
                # new token (refreshing with the old, rotated-out refresh token would be refused).
                fresh = await self._store.get(mm_user_id, inst.url)
                if fresh is None or fresh.revision != conn.revision:
                    return self._credentials(inst, fresh.secret) if fresh else None
                return await self._refresh_under_lease(inst, conn, secret, now)
            finally:
                await self._kv.delete(lease)

    async def _take_lease(self, key: str, now: datetime) -> bool:
        """Take the refresh lease `key`: when it is free, or when the replica holding it has
        stopped beating (it died between taking it and letting it go)."""
        if await self._kv.add(key, self._owner, expires_at=now + REFRESH_LEASE, now=now):
            return True
        holder = await self._kv.get(key, now=now)
        if holder == self._owner or not await holder_is_dead(self._replicas, holder, now=now):
            return False
        # Of the replicas taking over, the one whose `take` gets the dead holder's lease
        # competes with late comers through `add`: one of them refreshes.
        taken = await self._kv.take(key, now=now)
        if taken == holder:
            log.info("refresh lease %s: its replica %s died; taking it over", key, holder)
            return await self._kv.add(key, self._owner, expires_at=now + REFRESH_LEASE, now=now)
        if taken is not None:  # taken anew meanwhile: put it back as it was
            await self._kv.add(key, taken, expires_at=now + REFRESH_LEASE, now=now)
        return False

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
                + connect_again(inst.alias or inst.url),
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
