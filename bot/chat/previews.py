"""Issue previews: a message that names an issue (ABC-123, or a browse URL of an installed Jira)
gets a compact reply in its thread with the issue's summary, status, assignee and priority.

Only for a connected author, and only with what the author's own credentials can read: the bot
never reveals an issue the author could not open. Issues under a security level are not
previewed at all, since a channel is usually wider than the level. Each issue is previewed at most
once per channel per interval; the claim is a store entry with an expiry, so replicas agree.
"""

from __future__ import annotations

import hashlib
import logging
import re
from datetime import timedelta

from bot.chat import ChatPost
from bot.commands.cards import inline_text, issue_link
from bot.commands.context import Caller, CommandError, Deps
from bot.instances import Instance
from bot.jira.errors import JiraError
from bot.jira.rest_models import IssueCard
from bot.mattermost.models import DeliveryError, OutgoingPost

log = logging.getLogger(__name__)

_KEY = r"[A-Z][A-Z0-9_]+-\d+"
# A bare key: not inside a word, a path (…/ABC-1 of some other site) or a longer key.
ISSUE_KEY = re.compile(rf"(?<![\w/.-])({_KEY})(?![\w-])")
_BROWSE = re.compile(rf"/browse/{_KEY}(?![\w-])")
# What is quoted as code is not talked about: fenced blocks and inline code are skipped.
_CODE = re.compile(r"```.*?(?:```|$)|`[^`\n]*`", re.DOTALL)
MAX_PREVIEWS_PER_POST = 3
CLAIM_PREFIX = "preview:"


def mentions_issue(message: str) -> bool:
    """Cheap first look: whether the message may name an issue at all."""
    text = _CODE.sub(" ", message)
    return bool(ISSUE_KEY.search(text) or _BROWSE.search(text))


def issue_references(message: str, instances: list[Instance]) -> list[tuple[str | None, str]]:
    """(instance URL, key) for each issue the message names, in order, without repeats: the
    instance is known for a browse URL of an installed instance, None for a bare key."""
    text = _CODE.sub(" ", message)
    found: list[tuple[int, str | None, str]] = []
    for inst in instances:
        base = re.escape(inst.url.rstrip("/"))
        for m in re.finditer(rf"{base}/browse/({_KEY})(?![\w-])", text, re.IGNORECASE):
            found.append((m.start(), inst.url, m.group(1).upper()))
    for m in ISSUE_KEY.finditer(text):
        found.append((m.start(), None, m.group(1)))
    by_url = {key for _, url, key in found if url is not None}
    refs: list[tuple[str | None, str]] = []
    for _, url, key in sorted(found, key=lambda f: f[0]):
        # A key also given as a URL is that URL's issue.
        if (url, key) not in refs and (url is not None or key not in by_url):
            refs.append((url, key))
    return refs


def preview_text(card: IssueCard) -> str:
    """Two lines: the linked key and summary, then status, assignee and priority."""
    assignee = inline_text(card.assignee_name) if card.is_assigned else "Unassigned"
    return (
        f"{issue_link(card.key, card.browse_url, card.summary)}\n"
        f"Status: **{inline_text(card.status) or '—'}** · Assignee: **{assignee}** · "
        f"Priority: **{inline_text(card.priority) or '—'}**"
    )


def claim_key(channel_id: str, instance_url: str, issue_key: str) -> str:
    # The instance URL can be long; a digest keeps the key within the store's 255 characters.
    digest = hashlib.sha256(instance_url.encode()).hexdigest()[:16]
    return f"{CLAIM_PREFIX}{channel_id}:{digest}:{issue_key}"


class IssuePreviews:
    def __init__(self, deps: Deps, *, interval: timedelta) -> None:
        self._deps = deps
        self._interval = interval

    def wants(self, post: ChatPost) -> bool:
        # Message attachments come from integrations (an issue card shared with /jira view is
        # one): previewing the issue under its own card would only repeat it.
        return not post.props.get("attachments") and mentions_issue(post.message)

    async def handle(self, post: ChatPost) -> None:
        deps = self._deps
        refs = issue_references(post.message, deps.instances.all())
        if not refs:
            return
        connected = await self._connected_instances(post.user_id)
        if not connected:
            return  # previews are for connected users; nobody is nagged in a channel
        caller = Caller(deps=deps, user_id=post.user_id, channel_id=post.channel_id, root_id=post.thread_id)
        previews: list[str] = []
        for url, key in refs:
            if len(previews) >= MAX_PREVIEWS_PER_POST:
                break
            for inst in (i for i in connected if url is None or i.url == url):
                if await self._recently_previewed(post.channel_id, inst.url, key):
                    break
                card = await self._visible(caller, inst, key)
                if card is None:
                    continue  # not this instance's, or not visible to the author: try the next
                if card.security_level is None and await self._claim(post.channel_id, inst.url, card.key):
                    previews.append(preview_text(card))
                break
        if not previews:
            return
        try:
            await deps.mattermost.create_post(
                OutgoingPost(
                    channel_id=post.channel_id, message="\n\n".join(previews), root_id=post.thread_id
                )
            )
        except DeliveryError as e:
            log.warning("could not post the preview for post %s: %s", post.id, e)

    async def _connected_instances(self, user_id: str) -> list[Instance]:
        """The installed instances the user is connected to, their default first."""
        accounts = self._deps.accounts
        found = [
            inst
            for c in await accounts.connections_for(user_id)
            if (inst := self._deps.instances.find(c.instance_id)) is not None
        ]
        default = await accounts.default_instance(user_id)
        return sorted(found, key=lambda i: not (default and i.named(default)))

    async def _visible(self, caller: Caller, inst: Instance, key: str) -> IssueCard | None:
        """The issue as the author sees it, or None when they cannot (or Jira does not answer)."""
        try:
            session = await caller.jira(inst)
            return await session.issue(key)
        except CommandError:
            return None
        except JiraError as e:
            if e.kind == "auth":
                await caller.explain(e)  # a refused token disconnects its user, as for commands
            elif e.kind != "not_found":
                log.info("no preview of %s: %s", key, e)
            return None

    async def _recently_previewed(self, channel_id: str, instance_url: str, key: str) -> bool:
        # Spares the Jira call when the issue was just previewed; `_claim` is what decides.
        kv = self._deps.db.kv
        return await kv.get(claim_key(channel_id, instance_url, key), now=self._deps.clock()) is not None

    async def _claim(self, channel_id: str, instance_url: str, key: str) -> bool:
        now = self._deps.clock()
        return await self._deps.db.kv.add(
            claim_key(channel_id, instance_url, key), True, expires_at=now + self._interval, now=now
        )
