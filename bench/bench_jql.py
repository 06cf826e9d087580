"""Routing + rendering with JQL subscriptions: 10,000 subscriptions, 2,000 of them with JQL.

    python -m bench.bench_jql                       # 10,000 subscriptions, 2,000 with JQL
    python -m bench.bench_jql --subs 20000 --jql 5000 --events 2000

The subscriptions spread over 200 projects of one instance. Of the JQL ones, four in five name
their project in a top-level `project = X` / `project IN (...)` (so the index files them under it),
one in five names none (evaluated for every event of the instance). Each event is a status change
on an issue of a random project. Printed: the time to build (and compile) the index; per event
(median, 95th percentile, max) the processor's `plan_deliveries` (routing with
`SubscriptionIndex.match_targets`, then one post per matched channel, each naming its
subscription); and `match_targets` alone.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from datetime import UTC, datetime

from bot.config import ChannelPostSettings
from bot.jira.events import normalise
from bot.jira.models import parse_webhook
from bot.pipeline.processor import plan_deliveries
from bot.routing.matcher import SubscriptionIndex
from bot.routing.model import FieldFilter, Inclusion, Subscription, SubscriptionFilters
from bot.store.interfaces import InboxItem

INSTANCE = "https://acme.atlassian.net"
EVENTS = ["event_created", "event_updated_status", "event_updated_any", "event_created_comment"]
JQL_WITH_PROJECT = [
    "project = {p} AND labels = customer",
    "project in ({p}, {q}) AND priority in (High, Highest) AND statusCategory != Done",
    'project = {p} AND issuetype = Bug AND resolution = Unresolved AND summary ~ "disk*"',
    "project = {p} AND component in (Backend, API) AND created >= -7d",
    "project = {p} AND (assignee = ada@example.com OR reporter is EMPTY) AND NOT labels = wontfix",
]
JQL_ANY_PROJECT = [
    "labels = security AND priority = Highest",
    'text ~ "outage" AND statusCategory = indeterminate',
    "cf[10072] = 'Red team' OR fixVersion = 2.0",
]


def _subscriptions(total: int, with_jql: int, projects: list[str], rng: random.Random) -> list[Subscription]:
    subs = []
    for i in range(total):
        p, q = rng.choice(projects), rng.choice(projects)
        events = frozenset(rng.sample(EVENTS, 2))
        if i < with_jql:
            template = rng.choice(JQL_ANY_PROJECT if i % 5 == 0 else JQL_WITH_PROJECT)
            filters = SubscriptionFilters(events=events, jql=template.format(p=p, q=q))
        else:
            filters = SubscriptionFilters(
                events=events,
                projects=frozenset({p}),
                fields=(FieldFilter(key="priority", inclusion=Inclusion.INCLUDE_ANY, values=("High",)),)
                if i % 3 == 0
                else (),
            )
        subs.append(
            Subscription(
                id=f"s{i}", name=f"sub {i}", channel_id=f"ch{i % 3000}", instance_id=INSTANCE, filters=filters
            )
        )
    return subs


def _event(project: str, n: int, rng: random.Random):  # type: ignore[no-untyped-def]
    body = {
        "webhookEvent": "jira:issue_updated",
        "issue_event_type_name": "issue_generic",
        "timestamp": 1_770_000_000_000,
        "user": {"accountId": "u1", "displayName": "Ada Lovelace"},
        "issue": {
            "id": str(10000 + n),
            "key": f"{project}-{n}",
            "self": f"{INSTANCE}/rest/api/2/issue/{10000 + n}",
            "fields": {
                "summary": "Disk full on the build server",
                "description": "The nightly build fails: *no space* left on device.",
                "project": {"id": "1", "key": project, "name": project.title()},
                "issuetype": {"id": "1", "name": rng.choice(["Bug", "Story"])},
                "priority": {"id": "2", "name": rng.choice(["High", "Low", "Highest"])},
                "status": {
                    "id": "3",
                    "name": "In Progress",
                    "statusCategory": {"id": 4, "key": "indeterminate", "name": "In Progress"},
                },
                "labels": rng.sample(["customer", "security", "ops", "wontfix"], 2),
                "components": [{"id": "1", "name": rng.choice(["Backend", "Frontend"])}],
                "assignee": {"accountId": "u1", "displayName": "Ada Lovelace"},
                "created": "2026-01-25T09:30:00.000+0000",
            },
        },
        "changelog": {"items": [{"field": "status", "fromString": "Open", "toString": "In Progress"}]},
    }
    event = normalise(parse_webhook(body))
    assert event is not None
    return event


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subs", type=int, default=10_000)
    parser.add_argument("--jql", type=int, default=2_000)
    parser.add_argument("--events", type=int, default=1_000)
    args = parser.parse_args()
    rng = random.Random(7)
    projects = [f"P{i:03d}" for i in range(200)]
    subs = _subscriptions(args.subs, args.jql, projects, rng)

    started = time.perf_counter()
    index = SubscriptionIndex.build(subs)
    build_ms = (time.perf_counter() - started) * 1000

    events = [_event(rng.choice(projects), n, rng) for n in range(args.events)]
    item = InboxItem(
        id=1,
        dedupe_key=None,
        route="firehose",
        instance_id=INSTANCE,
        params={},
        body=b"",
        received_at=datetime(2026, 1, 25, tzinfo=UTC),
        status="processing",
        attempts=1,
    )
    settings = ChannelPostSettings(show_subscription_name=True)
    times: list[float] = []
    posts = 0
    for event in events:
        t0 = time.perf_counter()
        plan = plan_deliveries(item, event, index, settings)
        times.append((time.perf_counter() - t0) * 1000)
        posts += len(plan.deliveries)
    times.sort()
    routing: list[float] = []
    for event in events:
        t0 = time.perf_counter()
        index.match_targets(event, INSTANCE)
        routing.append((time.perf_counter() - t0) * 1000)
    print(f"subscriptions {args.subs}, with JQL {args.jql}, events {args.events}")
    print(f"index build (JQL compiled once each): {build_ms:.0f} ms")
    print(
        f"route + render per event: median {statistics.median(times):.3f} ms, "
        f"p95 {times[int(len(times) * 0.95)]:.3f} ms, max {times[-1]:.3f} ms; "
        f"{posts / len(events):.1f} posts per event"
    )
    print(f"routing alone per event: median {statistics.median(routing):.3f} ms")


if __name__ == "__main__":
    main()
