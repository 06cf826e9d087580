"""Subscriptions declared in the config file, upserted into the database at start."""

from __future__ import annotations

import hashlib
import logging
from datetime import datetime

from bot.config import Settings, SubscriptionSettings
from bot.mattermost.models import DeliveryError, PostSink
from bot.routing.jql import JqlError
from bot.routing.matcher import compile_subscription_jql
from bot.routing.model import JQL_CHECK_JIRA, FieldFilter, Inclusion, Subscription, SubscriptionFilters
from bot.store.interfaces import SubscriptionRepository

log = logging.getLogger(__name__)


def _instance_for(settings: Settings, declared: SubscriptionSettings) -> str | None:
    if declared.instance:
        inst = settings.jira.find_instance(declared.instance)
        return inst.url if inst else None
    if len(settings.jira.instances) == 1:
        return settings.jira.instances[0].url
    return None


def located_subscription_problems(settings: Settings) -> list[tuple[tuple[int | str, ...], str]]:
    """Problems that make the declared subscriptions unusable, each with the key path it is about
    (for bot.config's `config_location`): what needs the JQL compiler, which bot.config cannot
    import. The rest (events, fields, instances, a subscription without events or projects) is
    checked by bot.config itself, with the file's line or the environment variable."""
    problems: list[tuple[tuple[int | str, ...], str]] = []
    for i, declared in enumerate(settings.subscriptions):
        jql = declared.filters.jql
        jira_check = declared.filters.jql_check == JQL_CHECK_JIRA
        url = _instance_for(settings, declared)
        inst = settings.jira.find_instance(url) if url is not None else None
        service_account = inst is not None and inst.service_account is not None
        if jira_check and inst is not None and not service_account:
            problems.append(
                (
                    ("subscriptions", i, "filters", "jql_check"),
                    f"subscriptions.{i}.filters.jql_check ({declared.name!r}): jira needs the "
                    f"instance's service_account ({inst.url} has none) to ask Jira",
                )
            )
        if jql is not None and jql.strip():
            try:
                # Without the network: custom field names and the priority order are not known
                # here, so JQL that needs them is refused unless Jira checks it.
                compile_subscription_jql(jql, jira_check=jira_check, offer_jira=service_account)
            except JqlError as e:
                problems.append(
                    (
                        ("subscriptions", i, "filters", "jql"),
                        f"subscriptions.{i}.filters.jql ({declared.name!r}): {e}",
                    )
                )
    return problems


async def _channel_id(sink: PostSink, channel: str) -> str | None:
    if "/" in channel:
        team, name = channel.split("/", 1)
        return await sink.resolve_channel(team, name)
    return channel if await sink.channel_exists(channel) else None


def subscription_id(name: str, channel_id: str) -> str:
    """Stable id for a declared subscription, so a restart updates rather than duplicates it."""
    return "cfg-" + hashlib.sha256(f"{channel_id}\x00{name}".encode()).hexdigest()[:20]


async def sync_config_subscriptions(
    settings: Settings, store: SubscriptionRepository, sink: PostSink, now: datetime
) -> int:
    subs = []
    for declared in settings.subscriptions:
        instance = _instance_for(settings, declared)
        try:
            channel_id = await _channel_id(sink, declared.channel)
        except DeliveryError as e:
            log.error("subscription %r: cannot look up channel %r: %s", declared.name, declared.channel, e)
            continue
        if instance is None or channel_id is None:
            log.error("subscription %r: unknown channel %r; skipped", declared.name, declared.channel)
            continue
        f = declared.filters
        subs.append(
            Subscription(
                id=subscription_id(declared.name, channel_id),
                name=declared.name,
                channel_id=channel_id,
                instance_id=instance,
                filters=SubscriptionFilters(
                    events=frozenset(f.events),
                    projects=frozenset(f.projects),
                    issue_types=frozenset(f.issue_types),
                    fields=tuple(
                        FieldFilter(key=ff.key, inclusion=Inclusion(ff.inclusion), values=ff.values)
                        for ff in f.fields
                    ),
                    jql=f.jql,
                    jql_check=f.jql_check,
                ),
                created_by="config",
            )
        )
    await store.replace_config_subscriptions(subs, now=now)
    return len(subs)
