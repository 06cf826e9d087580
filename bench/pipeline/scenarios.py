"""The workload: the replayed Jira payloads, the stored subscriptions and the posts they should make."""

from __future__ import annotations

import json
import random
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa

from bot.jira.events import EVENT_UPDATED_ANY, STANDARD_KINDS, IssueEvent, normalise
from bot.jira.models import WebhookParseError, parse_webhook
from bot.render.posts import render_event
from bot.routing.matcher import SubscriptionIndex
from bot.routing.model import FieldFilter, Inclusion, Subscription, SubscriptionFilters
from bot.store.db import Database
from bot.store.schema import subscriptions as subscriptions_table
from bot.store.subscriptions import subscription_row

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT.parent / "shared" / "fixtures" / "jira-webhooks"
CHANNELS = 8
# Subscriptions that reach the payloads' projects post to these first channels only, so one event
# makes at most this many posts (a busy project followed by a handful of channels).
MATCHING_CHANNELS = 4
PROJECTS = 500
# Each replayed webhook is about an issue of its own: key <project>-<TAG_BASE + sequence number>,
# id TAG_BASE + sequence number. The posts name the key, which ties every post to the request
# that caused it.
TAG_BASE = 7_000_000
PLACEHOLDER = b"__BENCH_SEQ__"
TAG_RE = re.compile(r"\b[A-Z][A-Z0-9_]*-(7\d{6})\b")
PACED_RATE = 25.0  # webhooks/s of the light-load phase


# ------------------------------------------------------------------------------------------ payloads


@dataclass(frozen=True, slots=True)
class Payload:
    name: str
    body: bytes  # the captured webhook
    template: bytes  # the same with PLACEHOLDER for the issue key's number
    event: IssueEvent | None  # the normalised event; None: nothing to post

    @property
    def instance(self) -> str:
        return self.event.issue.base_url.rstrip("/") if self.event else ""

    @property
    def deterministic(self) -> bool:
        """Whether its posts follow from the payload alone. Cloud's standalone comment events lack
        the security level, which the bot fills in from the issue's last complete webhook: their
        posts depend on what arrived before, so they stay out of the exact post count."""
        return self.event is not None and not self.event.issue.fields_partial

    @property
    def project(self) -> str:
        if self.event is None:
            return ""
        return (self.event.issue.project.name or self.event.issue.key.rpartition("-")[0]).upper()

    def tagged(self, seq: int) -> bytes:
        return self.template.replace(PLACEHOLDER, str(TAG_BASE + seq).encode())


def load_payloads(folder: Path = FIXTURES) -> list[Payload]:
    if not folder.is_dir():
        raise SystemExit(
            f"bench.pipeline: the shared Jira webhook payloads are missing: {folder} does not exist "
            "(expected at ../shared/fixtures/jira-webhooks/ from the repository root)"
        )
    payloads = []
    for path in sorted(folder.glob("*.json")):
        body = path.read_bytes()
        doc = json.loads(body)
        issue = doc.get("issue") if isinstance(doc, dict) else None
        template = body
        if isinstance(issue, dict) and isinstance(issue.get("key"), str):
            prefix = issue["key"].rpartition("-")[0] or "BENCH"
            issue["key"] = f"{prefix}-{PLACEHOLDER.decode()}"
            if issue.get("id") is not None:
                # Its own issue, not the payload's issue under another key: the bot keeps the order
                # of each issue by its id, so a shared id would queue all its copies one after another.
                issue["id"] = PLACEHOLDER.decode()
            template = json.dumps(doc).encode()
        try:
            event = normalise(parse_webhook(body))
        except WebhookParseError:
            event = None
        payloads.append(Payload(path.name, body, template, event))
    if not payloads:
        raise SystemExit(f"bench.pipeline: no *.json payloads in {folder}")
    return payloads


# ------------------------------------------------------------------------------------ subscriptions

_ISSUE_TYPES = ("Story", "Task", "Bug", "Improvement", "Epic", "10001", "10002", "10004")
_FIELD_FILTERS = (
    FieldFilter(key="priority", inclusion=Inclusion.INCLUDE_ANY, values=("High", "Highest", "Medium")),
    FieldFilter(key="labels", inclusion=Inclusion.EXCLUDE_ANY, values=("wontfix", "spam")),
    FieldFilter(key="fixVersions", inclusion=Inclusion.INCLUDE_OR_EMPTY, values=("10000", "v2.0")),
    FieldFilter(key="components", inclusion=Inclusion.INCLUDE_ANY, values=("Backend", "10100")),
    FieldFilter(key="customfield_10072", inclusion=Inclusion.INCLUDE_ALL, values=("v",)),
    FieldFilter(key="status", inclusion=Inclusion.EXCLUDE_ANY, values=("Done",)),
)
_SECURITY_FILTER = FieldFilter(key="security", inclusion=Inclusion.INCLUDE_ANY, values=("10001",))
_OTHER_INSTANCES = ("https://acme.atlassian.net", "https://jira.example.com", "https://tracker.example.org")


def _filters(rng: random.Random, projects: Iterable[str]) -> SubscriptionFilters:
    kinds = sorted(STANDARD_KINDS)
    roll = rng.random()
    if roll < 0.25:
        events = {EVENT_UPDATED_ANY, "event_created"}
    elif roll < 0.40:
        events = {"event_created", "event_deleted", "event_updated_resolved", "event_updated_reopened"}
    else:
        events = set(rng.sample(kinds, rng.randint(2, 8)))
    if rng.random() < 0.05:
        events.add("event_updated_customfield_10072")
    issue_types: tuple[str, ...] = ()
    if rng.random() < 0.4:
        issue_types = tuple(rng.sample(_ISSUE_TYPES, rng.randint(1, 3)))
    fields: list[FieldFilter] = []
    if rng.random() < 0.3:
        fields.extend(rng.sample(_FIELD_FILTERS, rng.randint(1, 2)))
    if rng.random() < 0.05:
        fields.append(_SECURITY_FILTER)
    return SubscriptionFilters(
        events=frozenset(events),
        projects=frozenset(projects),
        issue_types=frozenset(issue_types),
        fields=tuple(fields),
    )


def make_subscriptions(
    count: int, channel_ids: Sequence[str], payloads: Sequence[Payload], seed: int = 1
) -> list[Subscription]:
    """`count` subscriptions over ~PROJECTS projects and all channels; the first few per payload
    project (max(3, count // PROJECTS) each) are on that project and instance, so they can match."""
    rng = random.Random(seed)
    targets = sorted({(p.instance, p.project) for p in payloads if p.event is not None})
    synthetic = [f"P{i:03d}" for i in range(PROJECTS - len({t[1] for t in targets}))]
    instances = sorted({t[0] for t in targets} | set(_OTHER_INSTANCES))
    per_target = max(3, count // PROJECTS)
    matching = min(count, per_target * len(targets))
    subs = []
    for i in range(count):
        if i < matching:
            instance, project = targets[i % len(targets)]
            projects = {project, *rng.sample(synthetic, rng.randint(0, 2))}
            channel = rng.choice(channel_ids[:MATCHING_CHANNELS])
        else:
            instance = rng.choice(instances)
            projects = set(rng.sample(synthetic, rng.randint(1, 3)))
            channel = rng.choice(channel_ids)
        subs.append(
            Subscription(
                id=f"bench-{i:06d}",
                name=f"sub {i:06d}",
                channel_id=channel,
                instance_id=instance,
                filters=_filters(rng, projects),
                created_by="bench",
            )
        )
    return subs


async def store_subscriptions(db: Database, subs: Sequence[Subscription]) -> float:
    """Insert all subscriptions in one transaction (one upsert per row would take ~10 s for
    10,000 on SQLite); returns the seconds taken. The rows are the store's own row format, and
    one is read back through the repository to prove it."""
    started = time.perf_counter()
    now = datetime.now(UTC)
    rows = [subscription_row(s, "db", now) for s in subs]
    async with db.engine.begin() as conn:
        for start in range(0, len(rows), 1000):
            await conn.execute(sa.insert(subscriptions_table), rows[start : start + 1000])
    stored = await db.subscriptions.count()
    if stored != len(subs) or (subs and await db.subscriptions.get(subs[-1].id) != subs[-1]):
        raise SystemExit(f"bench.pipeline: stored {stored} subscriptions, meant {len(subs)}")
    return time.perf_counter() - started


def expected_posts(index: SubscriptionIndex, payload: Payload) -> int | None:
    """How many posts the bot should make for one webhook, as its processor plans them; None
    when that depends on earlier webhooks (see Payload.deterministic)."""
    event = payload.event
    if event is None:
        return 0
    if not payload.deterministic:
        return None
    if render_event(event) is None:
        return 0
    return len(index.match(event, payload.instance))
