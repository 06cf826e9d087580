"""The gate's Mattermost posts: which replies a change makes, the root post's colour, and that a
Mattermost failure never reaches the gate."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bot.gate.posts import COLOURS, GatePosts, replies_for, root_props
from bot.gate_rules.model import (
    ChangeRequest,
    CrSource,
    Decision,
    DeploymentEventKind,
    Gate,
    GateRequest,
    GateStatus,
    GateTarget,
    Reason,
    Verdict,
)
from bot.mattermost.models import DeliveryError, OutgoingPost, new_id

NOW = datetime(2024, 5, 1, 12, tzinfo=UTC)
CR = ChangeRequest("10001", "ITSM-1", "https://jira/browse/ITSM-1", "Planning", source=CrSource.FOUND)


def gate(verdict: Verdict, cr: ChangeRequest | None = CR, **kw: Any) -> Gate:
    return Gate(
        id="g1",
        idempotency_key="k",
        body_hash="h",
        request=GateRequest("Web Site", "Production", "1.2.3"),
        target=GateTarget("itsm", "ITSM", "Request a change"),
        controlled=kw.pop("controlled", True),
        verdict=verdict,
        change_request=cr,
        status=kw.pop("status", GateStatus.ACTIVE),
        created_at=NOW,
        updated_at=NOW,
        deadline=NOW + timedelta(hours=24),
        **kw,
    )


WAITING = Verdict(Decision.WAIT, Reason.AWAITING_APPROVAL, "ITSM-1 is Planning: waiting for approval.", 30)


class RecordingMattermost:
    def __init__(self, *, fail: bool = False) -> None:
        self.created: list[OutgoingPost] = []
        self.updated: list[tuple[str, Mapping[str, Any] | None]] = []
        self.fail = fail

    async def create_post(self, post: OutgoingPost) -> str:
        if self.fail:
            raise DeliveryError("Mattermost is down", retryable=True, status=503)
        self.created.append(post)
        return new_id()

    async def update_post(
        self, post_id: str, message: str | None = None, props: Mapping[str, Any] | None = None
    ) -> None:
        self.updated.append((post_id, props))

    async def resolve_channel(self, team: str, channel: str) -> str | None:
        return "c" * 26 if (team, channel) == ("ops", "deployments") else None


def test_found_cr_and_waiting() -> None:
    replies = replies_for(None, gate(WAITING))
    assert [r.message for r in replies] == [
        ":memo: Found open change request [ITSM-1](https://jira/browse/ITSM-1) (Planning).",
        ":hourglass_flowing_sand: Waiting (`awaiting_approval`). ITSM-1 is Planning: waiting for approval.",
    ]


def test_approved_but_window_not_open_then_proceed() -> None:
    approved = replace(CR, status="Implementing")
    window = Verdict(
        Decision.WAIT, Reason.WINDOW_NOT_OPEN, "ITSM-1 is approved but its window opens at 14:00."
    )
    before = gate(WAITING)
    waiting = gate(window, approved)
    replies = replies_for(before, waiting)
    assert [r.message for r in replies] == [
        ":arrows_counterclockwise: [ITSM-1](https://jira/browse/ITSM-1) moved from Planning to Implementing.",
        ":hourglass: Waiting for the change window. ITSM-1 is approved but its window opens at 14:00.",
    ]
    proceed = gate(Verdict(Decision.PROCEED, Reason.APPROVED, "ITSM-1 is approved."), approved)
    assert [r.message for r in replies_for(waiting, proceed)] == [
        ":white_check_mark: The deployment may proceed. ITSM-1 is approved."
    ]


def test_a_repeated_state_makes_no_reply() -> None:
    assert replies_for(gate(WAITING), gate(WAITING)) == []


def test_fail_names_its_reason_and_turns_the_root_red() -> None:
    failed = gate(
        Verdict(Decision.FAIL, Reason.STATUS_NOT_ALLOWED, "ITSM-1 is Declined."),
        replace(CR, status="Declined"),
    )
    messages = [r.message for r in replies_for(gate(WAITING), failed)]
    assert messages[-1] == ":x: The gate failed (`status_not_allowed`). ITSM-1 is Declined."
    assert root_props(failed)["attachments"][0]["color"] == COLOURS["fail"]


def test_root_colours() -> None:
    assert root_props(gate(WAITING))["attachments"][0]["color"] == COLOURS["wait"]
    cancelled = gate(Verdict(Decision.FAIL, Reason.CANCELLED, "The gate was cancelled."))
    assert root_props(cancelled)["attachments"][0]["color"] == COLOURS["cancelled"]
    deployed_badly = gate(
        Verdict(Decision.PROCEED, Reason.APPROVED, "ok"), deployment=DeploymentEventKind.FAILED
    )
    attachment = root_props(deployed_badly)["attachments"][0]
    assert attachment["color"] == COLOURS["fail"] and "Deployment failed" in attachment["text"]


async def test_posts_create_the_root_once_then_edit_it() -> None:
    mm = RecordingMattermost()
    saved: dict[str, str] = {}

    async def save(gate_id: str, post_id: str) -> str:
        return saved.setdefault(gate_id, post_id)

    posts = GatePosts(mm, "ops/deployments", save_root_post=save)
    first = gate(WAITING)
    await posts.on_change(None, first)
    root = saved["g1"]
    assert [p.root_id for p in mm.created] == ["", root, root]
    assert mm.created[0].pending_post_id and mm.created[1].pending_post_id != mm.created[2].pending_post_id
    later = replace(first, change_request=replace(CR, status="Authorize"), root_post_id=root)
    await posts.on_change(first, later)
    assert len([p for p in mm.created if not p.root_id]) == 1
    assert mm.updated[-1][0] == root
    assert "moved from Planning to Authorize" in mm.created[-1].message


@pytest.mark.parametrize("channel", ["ops/nowhere", "not an id"])
async def test_an_unknown_channel_posts_nothing(channel: str) -> None:
    mm = RecordingMattermost()

    async def save(gate_id: str, post_id: str) -> str:
        raise AssertionError("no root post to save")

    await GatePosts(mm, channel, save_root_post=save).on_change(None, gate(WAITING))
    assert mm.created == []


async def test_uncontrolled_gates_and_mattermost_failures_are_quiet() -> None:
    mm = RecordingMattermost(fail=True)

    async def save(gate_id: str, post_id: str) -> str:
        return post_id

    posts = GatePosts(mm, "c" * 26, save_root_post=save)
    await posts.on_change(None, gate(WAITING))  # DeliveryError is logged, not raised
    free = gate(
        Verdict(Decision.PROCEED, Reason.NOT_CHANGE_CONTROLLED, "not controlled"), None, controlled=False
    )
    mm.fail = False
    await posts.on_change(None, free)
    assert mm.created == []
