"""Send a queued direct message, only if its recipient may see the issue.

The permission check uses the recipient's own Jira credentials; its answer is remembered for a
short while so a burst of events about one issue asks Jira once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from bot.accounts.service import AccountError, AccountService, ReconnectRequired
from bot.instances import InstanceDirectory
from bot.jira.client import JiraGateway
from bot.jira.errors import JiraError
from bot.mattermost.client import MattermostClient
from bot.mattermost.models import DeliveryError, OutgoingPost
from bot.notify.threads import remember_notification
from bot.store.interfaces import KeyValueRepository

log = logging.getLogger(__name__)


class DirectMessageSender:
    def __init__(
        self,
        *,
        accounts: AccountService,
        instances: InstanceDirectory,
        jira: JiraGateway,
        mattermost: MattermostClient,
        kv: KeyValueRepository,
        clock: Callable[[], datetime],
        access_cache_seconds: float = 300,
    ) -> None:
        self._accounts = accounts
        self._instances = instances
        self._jira = jira
        self._mm = mattermost
        self._kv = kv
        self._clock = clock
        self._ttl = access_cache_seconds
        self._access: dict[tuple[str, str, str], tuple[bool, float]] = {}

    async def may_see(self, mm_user: str, instance_id: str, issue_key: str) -> bool:
        """Whether the user's own credentials can read the issue. Raises DeliveryError
        (retryable) when Jira cannot be asked now."""
        key = (mm_user, instance_id, issue_key)
        cached = self._access.get(key)
        now = time.monotonic()
        if cached is not None and cached[1] > now:
            return cached[0]
        inst = self._instances.find(instance_id)
        if inst is None:
            return False
        try:
            creds = await self._accounts.credentials_for(mm_user, inst.url, now=self._clock())
        except ReconnectRequired:
            return False
        except AccountError as e:
            raise DeliveryError(str(e), retryable=True) from None
        if creds is None:
            return False
        try:
            await self._jira.session(inst.url, creds, is_cloud=inst.is_cloud).issue(issue_key)
            allowed = True
        except JiraError as e:
            if e.kind in ("unavailable", "timeout", "rate_limited"):
                raise DeliveryError(e.user_message(), retryable=True, retry_after=e.retry_after) from None
            if e.kind == "auth":
                await self._accounts.on_revoked(mm_user, inst.url, now=self._clock())
            allowed = False
        if len(self._access) > 10_000:
            self._access.clear()
        self._access[key] = (allowed, now + self._ttl)
        return allowed

    async def send(self, payload: Mapping[str, Any], *, pending_post_id: str = "") -> str:
        """The DM's post id, or "" when it is not sent (the user may not see the issue).
        `pending_post_id` lets Mattermost recognise a DM sent again after a failure."""
        mm_user = str(payload["mm_user_id"])
        instance_id = str(payload["instance_id"])
        issue_key = str(payload["issue_key"])
        if not await self.may_see(mm_user, instance_id, issue_key):
            log.info("%s: no DM to %s: they cannot see the issue or are not connected", issue_key, mm_user)
            return ""
        channel_id = await self._mm.direct_channel(mm_user)
        post_id = await self._mm.create_post(
            OutgoingPost(
                channel_id=channel_id, message=str(payload["message"]), pending_post_id=pending_post_id
            )
        )
        # A reply in this DM's thread becomes a comment on the issue.
        await remember_notification(self._kv, post_id, instance_id, issue_key, self._clock())
        return post_id
