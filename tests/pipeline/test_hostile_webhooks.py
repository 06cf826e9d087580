"""Hostile webhooks through the whole pure path: parse, normalise, route (legacy, every event),
render. Generated structures (wrong types, missing and extra keys, deep nesting, hostile text in
every string) must never raise anything but a refusal, and every post that comes out must be safe:
no mass mention, no image, no link to a forbidden scheme."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.config import ChannelPostSettings
from bot.pipeline.processor import decode, plan_deliveries
from bot.routing.matcher import SubscriptionIndex
from bot.store.interfaces import InboxItem
from tests.render.test_markup import mattermost_mentions
from tests.render.test_render_hostile import FRAGMENTS, assert_safe, lookup

ROOT = Path(__file__).resolve().parents[2]
# The project's own payloads, and the shared real ones when they are there (more shapes to break).
SEEDS = [
    json.loads(path.read_bytes())
    for path in [
        *sorted((ROOT / "tests" / "fixtures" / "webhooks").glob("*.json")),
        ROOT / "examples" / "issue-created.json",
        *sorted((ROOT.parent / "shared" / "fixtures" / "jira-webhooks").glob("*.json")),
    ]
]
EVENT_NAMES = [
    "jira:issue_created",
    "jira:issue_updated",
    "jira:issue_deleted",
    "comment_created",
    "comment_updated",
    "comment_deleted",
]
EMPTY_INDEX = SubscriptionIndex.build([])
T0 = datetime(2026, 1, 1, tzinfo=UTC)

hostile_text = st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=4)), max_size=30).map("".join)
leaf = st.one_of(
    hostile_text,
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
)
hostile_value = st.recursive(
    leaf,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(hostile_text, children, max_size=4)
    ),
    max_leaves=12,
)


def _paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(doc, dict):
        for key, value in doc.items():
            found += _paths(value, (*prefix, key))
    elif isinstance(doc, list):
        for index, value in enumerate(doc):
            found += _paths(value, (*prefix, index))
    return found


def _get(doc: Any, path: tuple[Any, ...]) -> Any:
    for step in path:
        doc = doc[step]
    return doc


def _replace(doc: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    head, rest = path[0], path[1:]
    copy: Any = dict(doc) if isinstance(doc, dict) else list(doc)
    copy[head] = _replace(copy[head], rest, value)
    return copy


@st.composite
def hostile_payloads(draw: st.DrawFn) -> Any:
    doc: Any = json.loads(json.dumps(draw(st.sampled_from(SEEDS))))
    if draw(st.integers(min_value=0, max_value=4)) == 0:
        doc["webhookEvent"] = draw(st.sampled_from(EVENT_NAMES))
    # Mostly hostile text where Jira sends text (so that posts still come out and carry it), and
    # now and then a subtree of another shape.
    for _ in range(draw(st.integers(min_value=1, max_value=8))):
        paths = [path for path in _paths(doc) if path]
        texts = [path for path in paths if isinstance(_get(doc, path), str)]
        if texts and draw(st.integers(min_value=0, max_value=3)):
            doc = _replace(doc, draw(st.sampled_from(texts)), draw(hostile_text))
        elif paths:
            doc = _replace(doc, draw(st.sampled_from(paths)), draw(hostile_value))
    return doc


def _item(body: bytes) -> InboxItem:
    return InboxItem(
        id=1,
        dedupe_key=None,
        route="legacy",
        instance_id="https://acme.atlassian.net",
        params={"channel_id": "c" * 26, "updated_all": "1"},
        body=body,
        received_at=T0,
        status="processing",
        attempts=1,
    )


def _markdown_texts(payload: dict[str, Any]) -> list[str]:
    """What Mattermost renders as Markdown: the message, and each attachment's pretext, text and
    field values."""
    texts = [str(payload.get("message") or "")]
    for attachment in (payload.get("props") or {}).get("attachments") or ():
        texts += [str(attachment.get(key) or "") for key in ("pretext", "text")]
        texts += [str(field.get("value") or "") for field in attachment.get("fields") or ()]
    return texts


def _plain_texts(payload: dict[str, Any]) -> list[str]:
    """What Mattermost shows as plain text (notifications, clients without attachments)."""
    attachments = (payload.get("props") or {}).get("attachments") or ()
    return [str(attachment.get(key) or "") for attachment in attachments for key in ("fallback", "title")]


def _plan(body: bytes) -> None:
    item = _item(body)
    event = decode(item)  # a refusal is None, never an exception
    plan = plan_deliveries(item, event, EMPTY_INDEX, ChannelPostSettings(), mentions=lookup)
    for delivery in plan.deliveries:
        for text in _markdown_texts(delivery.payload):
            assert_safe(text, {"bob.mm"})
        for text in _plain_texts(delivery.payload):
            assert mattermost_mentions(text) <= {"bob.mm"}, text


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hostile_payloads())
def test_mutated_webhooks_plan_safe_posts_or_nothing(payload: Any) -> None:
    _plan(json.dumps(payload).encode())


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_are_refused_quietly(body: bytes) -> None:
    _plan(body)


def test_deeply_nested_webhook_is_refused_quietly() -> None:
    _plan(b'{"issue": ' + b"[" * 100_000 + b"]" * 100_000 + b"}")
    _plan(b'{"webhookEvent": "jira:issue_created", "issue": {"fields": ' + b"{" * 50_000 + b"}")
