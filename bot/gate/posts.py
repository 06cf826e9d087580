"""The change gate in Mattermost: one root post per gate in the configured channel, edited in place
as the decision changes (colour and status), and a thread reply for each thing that happened: the
CR created or found, its status changed, waiting for the window, proceed, fail with its reason,
deployment started and finished.

Posting is a courtesy to the people watching: a Mattermost failure is logged and never changes
the gate. Replies carry a `pending_post_id` derived from the gate and the change, so a create
retried after a timeout is not duplicated by Mattermost.

With an outbox (as the application runs it), a change queues its root edit and replies as
GATE_POST deliveries, in order under the gate's order key, and the delivery worker carries them
out through `GatePosts.send`: durable across restarts, retried with backoff, dead-lettered.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from bot.gate.outbox import order_key
from bot.gate_rules.model import (
    ChangeRequest,
    CrSource,
    Decision,
    DeploymentEventKind,
    Gate,
    GateEvent,
    Reason,
)
from bot.mattermost.models import DeliveryError, OutgoingPost, encode_id, is_valid_id
from bot.store.interfaces import GATE_POST, Delivery, NewDelivery, Outbox

log = logging.getLogger(__name__)

COLOURS = {"proceed": "#2EB886", "wait": "#E8A317", "fail": "#D24B4E", "cancelled": "#8D96A0"}
_LABELS = {
    Decision.PROCEED: ":white_check_mark: May proceed",
    Decision.WAIT: ":hourglass_flowing_sand: Waiting",
    Decision.FAIL: ":x: Failed",
}
_SOURCES = {
    CrSource.CREATED: "Created change request",
    CrSource.FOUND: "Found open change request",
    CrSource.LINKED: "Reusing the change request linked to this deployment:",
    CrSource.SUPPLIED: "Checking the change request named by the pipeline:",
}
_DEPLOYMENT = {
    DeploymentEventKind.STARTED: (":rocket:", "Deployment started"),
    DeploymentEventKind.SUCCEEDED: (":tada:", "Deployment succeeded"),
    DeploymentEventKind.FAILED: (":boom:", "Deployment failed"),
}


class GatePostClient(Protocol):
    """The parts of bot.mattermost.client.MattermostClient the gate posts use."""

    async def create_post(self, post: OutgoingPost) -> str: ...

    async def update_post(
        self, post_id: str, message: str | None = None, props: Mapping[str, Any] | None = None
    ) -> None: ...

    async def resolve_channel(self, team: str, channel: str) -> str | None: ...


# Stores the root post id on the gate unless it has one (so every replica edits the same post);
# returns the root post now stored (GateStore.set_root_post).
SaveRootPost = Callable[[str, str], Awaitable[str | None]]
# The deployment events a pipeline reported for a gate (GateService.list_events).
ListEvents = Callable[[str], Awaitable[list[GateEvent]]]
# The root post stored for a gate, if any (the gate's `root_post_id`, read afresh).
GetRootPost = Callable[[str], Awaitable[str | None]]


@dataclass(frozen=True, slots=True)
class Reply:
    """One thread reply: `key` names the change, so the same change is posted once."""

    key: str
    message: str


def _cr_link(cr: ChangeRequest) -> str:
    return f"[{cr.key}]({cr.url})" if cr.url else cr.key


def replies_for(old: Gate | None, new: Gate) -> list[Reply]:
    """What changed between two states of a gate, as thread replies (pure)."""
    replies: list[Reply] = []
    old_cr = old.change_request if old is not None else None
    cr = new.change_request
    if cr is not None and (old_cr is None or old_cr.id != cr.id):
        status = f" ({cr.status})" if cr.status else ""
        replies.append(Reply(f"cr:{cr.id}", f":memo: {_SOURCES[cr.source]} {_cr_link(cr)}{status}."))
    elif cr is not None and old_cr is not None and cr.status != old_cr.status:
        replies.append(
            Reply(
                f"status:{cr.id}:{cr.status}",
                f":arrows_counterclockwise: {_cr_link(cr)} moved from {old_cr.status or 'no status'} "
                f"to {cr.status or 'no status'}.",
            )
        )
    verdict = new.verdict
    same = old is not None and (old.decision, old.reason) == (verdict.decision, verdict.reason)
    if same:
        return replies
    key = f"verdict:{verdict.decision}:{verdict.reason}"
    if verdict.decision is Decision.PROCEED:
        replies.append(Reply(key, f":white_check_mark: The deployment may proceed. {verdict.message}"))
    elif verdict.decision is Decision.FAIL:
        replies.append(Reply(key, f":x: The gate failed (`{verdict.reason}`). {verdict.message}"))
    elif verdict.reason is Reason.WINDOW_NOT_OPEN:
        replies.append(Reply(key, f":hourglass: Waiting for the change window. {verdict.message}"))
    elif verdict.reason is Reason.JIRA_UNAVAILABLE:
        replies.append(Reply(key, f":warning: {verdict.message}"))
    elif verdict.reason is not Reason.CR_PENDING:
        replies.append(
            Reply(key, f":hourglass_flowing_sand: Waiting (`{verdict.reason}`). {verdict.message}")
        )
    return replies


def deployment_reply(kind: DeploymentEventKind, event_id: str, detail: str = "") -> Reply:
    icon, text = _DEPLOYMENT[kind]
    suffix = f": {detail}" if detail else "."
    return Reply(f"event:{event_id}", f"{icon} {text}{suffix}")


def root_props(gate: Gate) -> dict[str, Any]:
    """The root post's attachment: coloured by the decision, with the gate's facts as fields."""
    verdict = gate.verdict
    colour = COLOURS["cancelled"] if verdict.reason is Reason.CANCELLED else COLOURS[str(verdict.decision)]
    if gate.deployment is DeploymentEventKind.FAILED:
        colour = COLOURS["fail"]
    status = _LABELS[verdict.decision]
    if gate.deployment is not None:
        status = " ".join(_DEPLOYMENT[gate.deployment])
    fields: list[dict[str, Any]] = []
    cr = gate.change_request
    if cr is not None:
        fields.append({"title": "Change request", "value": f"{_cr_link(cr)} ({cr.status})", "short": True})
        if cr.planned_start or cr.planned_end:
            window = " to ".join(
                t.strftime("%Y-%m-%d %H:%M UTC") if t else "open" for t in (cr.planned_start, cr.planned_end)
            )
            fields.append({"title": "Change window", "value": window, "short": True})
    fields.append({"title": "Reason", "value": f"`{verdict.reason}`", "short": True})
    fields.append({"title": "Gate", "value": f"`{gate.id}`", "short": True})
    title = f"Deploy {gate.project} {gate.version} to {gate.environment}"
    return {
        "attachments": [
            {
                "fallback": f"{title}: {verdict.decision}. {verdict.message}",
                "color": colour,
                "title": title,
                "title_link": cr.url if cr is not None else "",
                "text": f"**{status}**: {verdict.message}",
                "fields": fields,
                "footer": "Change gate",
            }
        ],
        "change_gate": {"gate_id": gate.id, "decision": str(verdict.decision), "reason": str(verdict.reason)},
    }


def _stable_id(*parts: str) -> str:
    return encode_id(hashlib.sha256("\x1f".join(parts).encode()).digest()[:16])


class GatePosts:
    """The gate service's change listener (`GateService.add_listener(posts.on_change)`): after every
    stored change of a gate, the root post is created or edited and the changes are replied."""

    def __init__(
        self,
        mattermost: GatePostClient,
        channel: str,
        *,
        save_root_post: SaveRootPost,
        list_events: ListEvents | None = None,
        outbox: Outbox | None = None,
        get_root_post: GetRootPost | None = None,
        on_queued: Callable[[], None] = lambda: None,
    ) -> None:
        """`outbox` and `get_root_post`: queue the posts for the delivery worker, which calls
        `send` (registered for GATE_POST), instead of posting them at once."""
        self.mattermost = mattermost
        self.outbox = outbox
        self.get_root_post = get_root_post
        self._on_queued = on_queued
        self.channel = channel
        self.save_root_post = save_root_post
        self.list_events = list_events
        self._channel_id: str | None = None
        # Root posts made by this process, for gates whose stored copy predates the post.
        self._roots: dict[str, str] = {}

    async def on_change(self, old: Gate | None, new: Gate) -> None:
        if not new.controlled:
            return  # ungated deployments proceed at once: nothing for people to follow
        if self.outbox is not None:
            await self._queue(old, new)
            return
        try:
            root = await self._root(new)
            if root is None:
                return
            replies = replies_for(old, new)
            if new.deployment is not None and (old is None or old.deployment is not new.deployment):
                replies.append(await self._deployment_reply(new.id, new.deployment))
            for reply in replies:
                await self._reply(new, root, reply)
        except DeliveryError as e:
            log.warning("could not post the change of gate %s to Mattermost: %s", new.id, e)

    async def channel_id(self) -> str | None:
        """The configured channel's id: `team/channel` resolved once, or an id as it is."""
        if self._channel_id is None:
            team, slash, name = self.channel.partition("/")
            if slash:
                self._channel_id = await self.mattermost.resolve_channel(team, name)
                if self._channel_id is None:
                    log.warning(
                        "change gate channel %s does not exist or the bot cannot see it", self.channel
                    )
            elif is_valid_id(self.channel):
                self._channel_id = self.channel
            else:
                log.warning("change gate channel %r is neither team/channel nor a channel id", self.channel)
        return self._channel_id

    async def _queue(self, old: Gate | None, new: Gate) -> None:
        """Queue the root post (made or edited) and the replies for this change."""
        assert self.outbox is not None
        try:
            channel_id = await self.channel_id()
            if channel_id is None:
                return
            replies = replies_for(old, new)
            if new.deployment is not None and (old is None or old.deployment is not new.deployment):
                replies.append(await self._deployment_reply(new.id, new.deployment))
            await self.outbox.enqueue(self.deliveries(new, channel_id, replies), now=new.updated_at)
        except Exception:
            log.exception("could not queue the posts about gate %s", new.id)
            return
        self._on_queued()

    @staticmethod
    def deliveries(gate: Gate, channel_id: str, replies: Sequence[Reply]) -> list[NewDelivery]:
        """The root post in this gate's state, then the replies (pure)."""
        key = order_key(gate.id)
        root = NewDelivery(
            channel_id=channel_id,
            order_key=key,
            kind=GATE_POST,
            payload={"gate_id": gate.id, "op": "root", "props": root_props(gate)},
            # One root edit per revision of the gate.
            pending_post_id=f"{_stable_id(gate.id, 'root')}-{gate.revision}",
        )
        return [root] + [
            NewDelivery(
                channel_id=channel_id,
                order_key=key,
                kind=GATE_POST,
                payload={"gate_id": gate.id, "op": "reply", "message": reply.message},
                pending_post_id=_stable_id(gate.id, reply.key),
            )
            for reply in replies
        ]

    async def send(self, delivery: Delivery) -> str:
        """Carry out a queued GATE_POST: make or edit the root post, or reply under it; the
        post id. Raises DeliveryError (a reply before its root exists is retried)."""
        payload = delivery.payload
        gate_id = str(payload.get("gate_id", ""))
        stored = await self.get_root_post(gate_id) if self.get_root_post is not None else None
        root = stored or self._roots.get(gate_id)
        if payload.get("op") == "root":
            props = payload.get("props") or {}
            if root:
                await self.mattermost.update_post(root, message="", props=props)
                return root
            made = await self.mattermost.create_post(
                OutgoingPost(
                    channel_id=delivery.channel_id,
                    message="",
                    props=props,
                    pending_post_id=_stable_id(gate_id, "root"),
                )
            )
            root = await self.save_root_post(gate_id, made) or made
            self._roots[gate_id] = root
            return root
        if not root:
            raise DeliveryError(f"the root post of gate {gate_id} is not made yet", retryable=True)
        return await self.mattermost.create_post(
            OutgoingPost(
                channel_id=delivery.channel_id,
                message=str(payload.get("message", "")),
                root_id=root,
                pending_post_id=delivery.pending_post_id,
            )
        )

    async def _deployment_reply(self, gate_id: str, kind: DeploymentEventKind) -> Reply:
        """The reply for the latest event of `kind`, with the pipeline's detail when it gave one."""
        latest: GateEvent | None = None
        if self.list_events is not None:
            matching = [e for e in await self.list_events(gate_id) if e.kind == kind.value]
            latest = matching[-1] if matching else None
        if latest is None:
            return deployment_reply(kind, kind.value)
        return deployment_reply(kind, latest.event_id, latest.detail)

    async def _root(self, gate: Gate) -> str | None:
        root = gate.root_post_id or self._roots.get(gate.id)
        props = root_props(gate)
        if root:
            await self.mattermost.update_post(root, message="", props=props)
            return root
        channel_id = await self.channel_id()
        if channel_id is None:
            return None
        root = await self.mattermost.create_post(
            OutgoingPost(
                channel_id=channel_id, message="", props=props, pending_post_id=_stable_id(gate.id, "root")
            )
        )
        stored = await self.save_root_post(gate.id, root)
        root = stored or root
        self._roots[gate.id] = root
        return root

    async def _reply(self, gate: Gate, root: str, reply: Reply) -> None:
        channel_id = await self.channel_id()
        if channel_id is None:
            return
        await self.mattermost.create_post(
            OutgoingPost(
                channel_id=channel_id,
                message=reply.message,
                root_id=root,
                pending_post_id=_stable_id(gate.id, reply.key),
            )
        )
