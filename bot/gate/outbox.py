"""The change gate's side effects as deliveries of the durable queue (`bot.store.interfaces.Outbox`):
comments on the CR (kind GATE_COMMENT) and the Mattermost root post and replies (GATE_POST) are
queued in the database, then carried out by the delivery worker through the senders below, which
the composition root registers by kind. So a comment that Jira refused for a while is retried with
backoff after a restart too, by whichever replica is up, and dead-lettered when it keeps failing.

Idempotency: each delivery's pending_post_id is derived from the gate and the change (a comment
per gate and kind, a reply per gate and reply key, a root edit per gate revision), so queueing the
same change twice queues it once. The deliveries of one gate share an order key: its root post is
made before the replies under it, its comments keep their order.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from bot.gate.ports import JsmClientFactory
from bot.jira.errors import JiraError
from bot.mattermost.models import DeliveryError
from bot.store.interfaces import GATE_COMMENT, Delivery, NewDelivery

# Jira's failures that pass with time; the others (auth, forbidden, not_found, bad request) do not.
_TRANSIENT = frozenset({"unavailable", "timeout", "rate_limited"})
# Recorded as the result of a comment (Jira's comment id is not needed later).
COMMENTED = "commented"


def order_key(gate_id: str) -> str:
    return f"gate:{gate_id}"


def _digest(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:24]


def comment_delivery(
    *, gate_id: str, instance: str | None, cr_id: str, cr_key: str, kind: str, text: str, public: bool
) -> NewDelivery:
    """The comment of `kind` on the gate's CR, queued once per (gate, kind)."""
    return NewDelivery(
        channel_id="",
        order_key=order_key(gate_id),
        kind=GATE_COMMENT,
        payload={
            "gate_id": gate_id,
            "instance": instance,
            "issue": cr_id,
            "issue_key": cr_key,
            "comment": kind,
            "body": text,
            "public": public,
        },
        pending_post_id="gc-" + _digest(gate_id, kind),
    )


def delivery_error(error: JiraError) -> DeliveryError:
    """A Jira failure as the delivery worker judges it: retried when it may pass, with Jira's
    Retry-After; dead-lettered at once when it cannot."""
    return DeliveryError(
        f"Jira: {error}",
        retryable=error.kind in _TRANSIENT,
        retry_after=error.retry_after,
        status=error.status or 0,
    )


class CommentSender:
    """Posts queued CR comments (register it for GATE_COMMENT)."""

    def __init__(self, clients: JsmClientFactory) -> None:
        self._clients = clients

    async def __call__(self, delivery: Delivery) -> str:
        payload: Mapping[str, Any] = delivery.payload
        instance = payload.get("instance")
        try:
            client = self._clients(str(instance) if instance else None)
        except (KeyError, ValueError) as e:
            raise DeliveryError(f"Jira instance {instance!r}: {e}", retryable=False) from e
        try:
            await client.add_comment(
                str(payload["issue"]), str(payload["body"]), public=bool(payload.get("public", False))
            )
        except JiraError as e:
            raise delivery_error(e) from e
        return COMMENTED
