"""Prometheus metrics, one registry per application (no module globals)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.webhooks = Counter(
            "jira_chatops_webhooks",
            "Jira webhooks received, by outcome",
            ["outcome"],
            registry=self.registry,
        )
        self.events = Counter(
            "jira_chatops_events", "Normalised Jira events, by kind", ["kind"], registry=self.registry
        )
        self.events_dropped = Counter(
            "jira_chatops_events_dropped",
            "Events not posted because the issue could not be read or judged, by reason "
            "(issue_not_found, no_permission, credentials_refused, jira_refused)",
            ["reason"],
            registry=self.registry,
        )
        self.posts = Counter(
            "jira_chatops_posts",
            "Channel posts, by result (delivered, retried, dead)",
            ["result"],
            registry=self.registry,
        )
        self.deliveries = Counter(
            "jira_chatops_deliveries",
            "Side effects of the delivery queue, by kind (channel_post, direct_message, "
            "channel_announcement, gate_comment, gate_post) and result (delivered, retried, dead)",
            ["kind", "result"],
            registry=self.registry,
        )
        self.backlog = Gauge(
            "jira_chatops_backlog",
            "Webhooks not yet processed plus posts not yet delivered",
            registry=self.registry,
        )
        self.delivery_latency = Histogram(
            "jira_chatops_delivery_latency_seconds",
            "Time from webhook receipt to the post in Mattermost",
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800),
            registry=self.registry,
        )

        self.commands = Counter(
            "jira_chatops_commands", "Slash commands run, by command", ["command"], registry=self.registry
        )
        # Circuit breakers of the outbound targets (bot.breakers): "mattermost", "jira:<site URL>".
        self.breaker_state = Gauge(
            "jira_chatops_breaker_state",
            "Circuit breaker of an outbound target: 0 closed, 1 half-open (probing), 2 open",
            ["target"],
            registry=self.registry,
        )
        self.breaker_transitions = Counter(
            "jira_chatops_breaker_transitions",
            "Circuit breaker changes of state, by target and new state (closed, half_open, open)",
            ["target", "state"],
            registry=self.registry,
        )

        # Every series README lists exists from the start, at 0, so that rates and alerts work
        # before the first such event (the intake creates its own outcomes' series).
        for outcome in ("forbidden", "too_large", "bad_request", "unavailable"):
            self.webhooks.labels(outcome)
        for result in ("delivered", "retried", "dead"):
            self.posts.labels(result)

    def render(self) -> bytes:
        return generate_latest(self.registry)
