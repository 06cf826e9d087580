"""Reads what people post from Mattermost's websocket and hands each post, once, to its handler.

- Every post the bot can see arrives as a `posted` event. After each (re)connection, the posts
  made while the bot was not listening are fetched by time (GET /channels/{id}/posts?since=) for
  each channel the bot is a member of whose last post is newer. The time of the last post seen is
  kept in the store, so a restart catches up too (at most `max_catch_up` back).
- Each post is handled once: a short-lived memory drops the repeats of one process (an event
  and the same post in a catch-up), and a store entry claimed with `kv.add` makes one replica of
  several the one that acts. The claim is a lease (`claim_lease_seconds`) until the handler is
  done, then a "done" mark kept as long as a catch-up may bring the post back. A replica that
  found the post claimed but not done looks again when the lease runs out: if the claiming
  replica died meanwhile, it takes the post over. (A handler slower than the lease may see its
  post handled twice; the lease is far above a handler's Jira and Mattermost timeouts.) With the
  replicas' heartbeats (`replicas`, and `owner` the replica's id), it looks again every
  `RECHECK_SECONDS` and takes the post over as soon as the claiming replica's heartbeat is stale
  (bot.store.replicas), as the inbox and delivery claims do, not after the lease (a replica whose
  heartbeat stalls that long while it handles a post, frozen but not dead, may see the post
  handled twice).
- Handlers run in a bounded pool of workers fed by a bounded queue; a failing handler is logged
  and the listener goes on.

Routing: in a direct channel with the bot, a reply in a notification's thread becomes a comment
(`replies`), anything else is a command (`dm_commands`); in other channels a message that starts
by mentioning the bot is a command about its thread (`dm_commands`, `@jira attach ABC-1`), and a
message naming an issue may get a preview (`previews`). The bot's own posts and those of other
bots, webhooks and plugins are ignored.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta
from typing import Any

from bot.chat import DIRECT, ChatPost
from bot.chat.dm_commands import DirectCommands
from bot.chat.previews import IssuePreviews
from bot.chat.replies import ReplyComments
from bot.commands.service import CommandService
from bot.config import Settings
from bot.mattermost.client import MattermostClient
from bot.mattermost.models import DeliveryError
from bot.mattermost.websocket import MattermostWebsocket, WebsocketEvent
from bot.store.interfaces import KeyValueRepository, ReplicaRepository
from bot.store.liveness import holder_is_dead

log = logging.getLogger(__name__)

LAST_SEEN_KEY = "chat:last-post-at"
CLAIM_PREFIX = "chat:post:"
# The value of a claim once its post was handled (while handled, the value names the replica).
DONE = "done"
# How often a post claimed by another replica is looked at again when heartbeats are known.
RECHECK_SECONDS = 3.0


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


class _RecentIds:
    """Post ids seen lately, forgotten after `ttl` seconds or beyond `limit` entries."""

    def __init__(self, ttl: float, limit: int) -> None:
        self._ttl = ttl
        self._limit = limit
        self._seen: OrderedDict[str, float] = OrderedDict()

    def add(self, post_id: str) -> bool:
        """True when the id is new (and is now remembered)."""
        now = time.monotonic()
        while self._seen and (len(self._seen) >= self._limit or next(iter(self._seen.values())) < now):
            self._seen.popitem(last=False)
        if post_id in self._seen:
            return False
        self._seen[post_id] = now + self._ttl
        return True


class ChatListener:
    """The websocket listener and its handlers. `start()` connects in the background (it never
    fails because Mattermost is down); `stop()` disconnects and lets running handlers finish
    for a moment."""

    def __init__(
        self,
        *,
        mattermost: MattermostClient,
        token: str,
        kv: KeyValueRepository,
        clock: Callable[[], datetime],
        replies: ReplyComments | None = None,
        commands: DirectCommands | None = None,
        previews: IssuePreviews | None = None,
        workers: int = 4,
        queue_size: int = 1000,
        catch_up_margin: timedelta = timedelta(seconds=5),
        max_catch_up: timedelta = timedelta(hours=24),
        persist_interval_seconds: float = 5.0,
        stop_grace_seconds: float = 5.0,
        websocket_options: dict[str, Any] | None = None,
        claim_lease_seconds: float = 120.0,
        owner: str | None = None,
        replicas: ReplicaRepository | None = None,
    ) -> None:
        """`websocket_options`: keyword arguments for MattermostWebsocket (backoff, heartbeat…).
        `owner`: this replica's id, as its heartbeat names it; with `replicas`, a post claimed by
        a replica whose heartbeat went stale is taken over at once."""
        self._mm = mattermost
        self._kv = kv
        self._clock = clock
        self._replies = replies
        self._commands = commands
        self._previews = previews
        self._workers_count = max(1, workers)
        self._queue: asyncio.Queue[ChatPost] = asyncio.Queue(maxsize=queue_size)
        self._margin_ms = int(catch_up_margin.total_seconds() * 1000)
        self._max_catch_up_ms = int(max_catch_up.total_seconds() * 1000)
        # A claim outlives the longest catch-up, so a post caught up again is still known.
        self._claim_ttl = max_catch_up + catch_up_margin + timedelta(hours=1)
        self._claim_lease = timedelta(seconds=claim_lease_seconds)
        self._owner = owner or f"listener-{id(self):x}"
        self._replicas = replicas
        self._rechecks: set[asyncio.TimerHandle] = set()
        # Posts claimed by another replica, waiting to be looked at again (id -> create_at).
        self._parked: dict[str, int] = {}
        self._persist_interval = persist_interval_seconds
        self._stop_grace = stop_grace_seconds
        self._recent = _RecentIds(ttl=self._claim_ttl.total_seconds(), limit=20_000)
        self._ws = MattermostWebsocket(
            mattermost.websocket_url,
            token,
            on_event=self._on_event,
            on_connected=self._on_connected,
            verify=mattermost.verify,
            **(websocket_options or {}),
        )
        # Create time (ms) of the newest post seen; 0 until known.
        self._last_seen = 0
        # Where a catch-up that has not finished yet started: the watermark must not pass it.
        self._resume_from: int | None = None
        self._persisted = 0
        # Posts queued or being handled (id -> create_at): the watermark stays behind them.
        self._pending: dict[str, int] = {}
        self._channel_types: dict[str, str] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._catch_up_task: asyncio.Task[None] | None = None
        self.handled = 0  # posts handed to a handler (after the claim)
        self.processed = 0  # queued posts done with, whatever came of them

    @property
    def connected(self) -> bool:
        return self._ws.connected

    @property
    def websocket(self) -> MattermostWebsocket:
        return self._ws

    # -- lifecycle --------------------------------------------------------------------------------

    async def start(self) -> None:
        stored = await self._kv.get(LAST_SEEN_KEY, now=self._clock())
        if isinstance(stored, int) and stored > 0:
            self._last_seen = self._persisted = stored
        self._tasks = [
            asyncio.create_task(self._work(), name=f"chat-worker-{i}") for i in range(self._workers_count)
        ]
        self._tasks.append(asyncio.create_task(self._persist_periodically(), name="chat-watermark"))
        await self._ws.start()

    async def stop(self) -> None:
        await self._ws.stop()
        for handle in self._rechecks:
            handle.cancel()
        self._rechecks.clear()
        if self._catch_up_task is not None:
            self._catch_up_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._catch_up_task
        # Let what is queued or running finish briefly; what is left is caught up after a restart.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._queue.join(), self._stop_grace)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        await self._persist()

    async def lifecycle(self, _app: object) -> AsyncIterator[None]:
        """For `app.cleanup_ctx`: listen while the application runs."""
        await self.start()
        yield
        await self.stop()

    # -- what arrives -----------------------------------------------------------------------------

    async def _on_event(self, event: WebsocketEvent) -> None:
        if event.event != "posted":
            return
        raw = event.data.get("post")
        try:
            post = json.loads(raw) if isinstance(raw, str) else raw
        except ValueError:
            log.warning("ignoring a posted event whose post is not JSON")
            return
        if not isinstance(post, dict):
            return
        found = ChatPost.from_api(post, channel_type=str(event.data.get("channel_type") or ""))
        if found is not None:
            await self._accept(found)

    async def _on_connected(self) -> None:
        if not self._mm.bot_user_id:
            # The bot's own posts must be recognisable before anything is handled.
            try:
                await self._mm.login()
            except DeliveryError as e:
                log.warning("cannot learn the bot's Mattermost id (%s); reconnecting", e)
                await self._ws.reconnect()
                return
        now = _ms(self._clock())
        if not self._last_seen and self._resume_from is None:
            # The first start ever: there is nothing to catch up with.
            self._last_seen = now
            await self._persist()
            return
        marks = [m for m in (self._last_seen, self._resume_from) if m]
        since = max(min(marks) - self._margin_ms, now - self._max_catch_up_ms)
        self._resume_from = since
        if self._catch_up_task is not None and not self._catch_up_task.done():
            self._catch_up_task.cancel()
        self._catch_up_task = asyncio.create_task(self._catch_up(self._resume_from), name="chat-catch-up")

    async def _catch_up(self, since: int) -> None:
        """Queue the posts made after `since` (ms) in the bot's channels."""
        count = 0
        try:
            for channel in await self._mm.my_channels():
                if channel.get("delete_at") or int(channel.get("last_post_at") or 0) <= since:
                    continue
                channel_type = str(channel.get("type") or "")
                self._channel_types[str(channel["id"])] = channel_type
                for raw in await self._mm.get_posts_since(str(channel["id"]), since):
                    # Older posts come back when edited, and as the roots of new replies.
                    if int(raw.get("create_at") or 0) <= since:
                        continue
                    post = ChatPost.from_api(raw, channel_type=channel_type)
                    if post is not None:
                        count += 1
                        await self._accept(post)
        except DeliveryError as e:
            # Reconnecting retries the catch-up (with backoff); the watermark waits for it.
            log.warning("catching up with Mattermost failed: %s; reconnecting", e)
            await self._ws.reconnect()
            return
        if self._resume_from == since:
            self._resume_from = None
        log.info("caught up with Mattermost: %d posts since %d", count, since)

    async def _accept(self, post: ChatPost) -> None:
        """Note the post as seen and queue it when it may concern the bot."""
        self._last_seen = max(self._last_seen, post.create_at)
        if not self._may_concern(post) or not self._recent.add(post.id):
            return
        self._pending[post.id] = post.create_at
        await self._queue.put(post)

    def _may_concern(self, post: ChatPost) -> bool:
        """The checks that need no request: who wrote it, and what kind of post it is."""
        bot_id = self._mm.bot_user_id
        if not bot_id or post.user_id == bot_id:
            return False  # without the bot's id its own posts could not be told apart
        if post.deleted or post.type or post.automated or not post.message.strip():
            return False
        if post.channel_type and post.channel_type != DIRECT:
            if self._commands is not None and self._commands.mentioned(post):
                return True
            return self._previews is not None and self._previews.wants(post)
        return True

    # -- handling ---------------------------------------------------------------------------------

    async def _work(self) -> None:
        while True:
            post = await self._queue.get()
            try:
                await self._process(post)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("handling post %s failed", post.id)
            finally:
                self._pending.pop(post.id, None)
                self.processed += 1
                self._queue.task_done()

    async def _process(self, post: ChatPost) -> None:
        if not post.channel_type:
            post = await self._with_channel_type(post)
            if not self._may_concern(post):
                return
        if not await self._claim(post):
            return
        self.handled += 1
        try:
            await self._handle(post)
        finally:
            # Done, even when the handler failed (it is not retried): no replica takes it over.
            now = self._clock()
            await self._kv.put(CLAIM_PREFIX + post.id, DONE, expires_at=now + self._claim_ttl)

    async def _handle(self, post: ChatPost) -> None:
        if post.channel_type == DIRECT:
            if post.root_id and self._replies is not None and await self._replies.handle(post):
                return
            if self._commands is not None:
                await self._commands.handle(post)
        elif self._commands is not None and self._commands.mentioned(post):
            await self._commands.handle_mention(post)
        elif self._previews is not None:
            await self._previews.handle(post)

    async def _with_channel_type(self, post: ChatPost) -> ChatPost:
        kind = self._channel_types.get(post.channel_id)
        if kind is None:
            channel = await self._mm.get_channel(post.channel_id)
            kind = self._channel_types[post.channel_id] = str(channel.get("type") or "")
        return ChatPost(
            id=post.id,
            channel_id=post.channel_id,
            user_id=post.user_id,
            message=post.message,
            root_id=post.root_id,
            create_at=post.create_at,
            type=post.type,
            channel_type=kind,
            props=post.props,
            deleted=post.deleted,
        )

    async def _claim(self, post: ChatPost) -> bool:
        """Take the post for this replica; when another one holds it unfinished, look again
        once its lease has run out (it may have died)."""
        now = self._clock()
        key = CLAIM_PREFIX + post.id
        if await self._kv.add(key, self._owner, expires_at=now + self._claim_lease, now=now):
            return True
        holder = await self._kv.get(key, now=now)
        if holder == DONE:
            return False
        if holder is not None and await holder_is_dead(self._replicas, holder, now=now):
            # Of the replicas taking over, the one whose `take` gets the dead holder's claim
            # competes with late claimers through `add`: one of them handles the post.
            taken = await self._kv.take(key, now=now)
            if taken == holder:
                log.info("post %s: its claiming replica %s died; taking it over", post.id, holder)
                if await self._kv.add(key, self._owner, expires_at=now + self._claim_lease, now=now):
                    return True
            elif taken is not None:  # finished or claimed anew meanwhile: put it back as it was
                keep = self._claim_ttl if taken == DONE else self._claim_lease
                await self._kv.add(key, taken, expires_at=now + keep, now=now)
                if taken == DONE:
                    return False
        self._recheck_later(post)
        return False

    def _recheck_later(self, post: ChatPost) -> None:
        """Queue the post again once the claim's lease has run out; the watermark stays
        behind it meanwhile."""
        self._parked[post.id] = post.create_at

        def requeue() -> None:
            self._rechecks.discard(handle)
            self._parked.pop(post.id, None)
            try:
                self._queue.put_nowait(post)
                self._pending[post.id] = post.create_at
            except asyncio.QueueFull:  # caught up after a restart instead
                pass

        delay = self._claim_lease.total_seconds() + 0.5
        if self._replicas is not None:
            delay = min(delay, RECHECK_SECONDS)
        handle = asyncio.get_running_loop().call_later(delay, requeue)
        self._rechecks.add(handle)

    # -- the watermark ----------------------------------------------------------------------------

    def _watermark(self) -> int:
        marks = [self._last_seen]
        if self._resume_from is not None:
            marks.append(self._resume_from)
        if self._pending:
            marks.append(min(self._pending.values()) - 1)
        if self._parked:
            marks.append(min(self._parked.values()) - 1)
        return min(marks)

    async def _persist(self) -> None:
        mark = self._watermark()
        if mark > 0 and mark != self._persisted:
            await self._kv.put(LAST_SEEN_KEY, mark)
            self._persisted = mark

    async def _persist_periodically(self) -> None:
        while True:
            await asyncio.sleep(self._persist_interval)
            try:
                await self._persist()
            except Exception:  # the store may be briefly unreachable; the next round retries
                log.exception("saving the time of the last Mattermost post seen failed")


def build_chat_listener(settings: Settings, commands: CommandService, **options: Any) -> ChatListener | None:
    """The listener for the running bot, or None when `chat.listen` is off or there is no bot
    token (the console sink has no Mattermost to listen to). `options` go to ChatListener."""
    token = settings.mattermost.bot_token
    if not settings.chat.listen or token is None or not token.get_secret_value():
        return None
    deps = commands.deps
    previews = (
        IssuePreviews(deps, interval=timedelta(minutes=settings.chat.preview_interval_minutes))
        if settings.chat.previews
        else None
    )
    return ChatListener(
        mattermost=deps.mattermost,
        token=token.get_secret_value(),
        kv=deps.db.kv,
        clock=deps.clock,
        replies=ReplyComments(deps),
        commands=DirectCommands(commands),
        previews=previews,
        **options,
    )
