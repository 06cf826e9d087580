"""The parts create_app wires in: kept secrets, the command service, the change gate, personal features."""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from aiohttp import web

from bot.accounts.crypto import TokenCipher, load_or_create_key
from bot.accounts.models import JiraIdentity, TokenRejected
from bot.accounts.service import AccountService
from bot.accounts.store import ConnectionStore
from bot.breakers import Breakers
from bot.commands.context import Deps
from bot.commands.post_buttons import issue_post_actions, with_issue_actions
from bot.commands.service import CommandService
from bot.config import Settings
from bot.gate.jsm import JsmClients
from bot.gate.outbox import CommentSender
from bot.gate.poller import GatePoller
from bot.gate.posts import GatePosts
from bot.gate.service import GateService
from bot.gate.store import GateStore
from bot.instances import InstanceDirectory
from bot.jira.client import JiraGateway
from bot.jira.credentials import ApiToken, Credentials, PersonalAccessToken
from bot.jira.errors import JiraError
from bot.jira.events import IssueEvent
from bot.mattermost.client import MattermostClient
from bot.mattermost.models import DeliveryError, PostSink
from bot.mattermost.payloads import ActionFactory
from bot.metrics import Metrics
from bot.notify.planner import NotificationPlanner
from bot.notify.sender import DirectMessageSender
from bot.pipeline.delivery import DeliveryWorker
from bot.pipeline.issue_fetch import IssueFetcher
from bot.pipeline.jira_names import JiraNamesCache
from bot.pipeline.jql_check import JqlChecker
from bot.pipeline.processor import EventProcessor
from bot.pipeline.subscriptions import SubscriptionCache
from bot.security.signing import ContextSigner, derive_key
from bot.store.db import Database
from bot.store.interfaces import GATE_COMMENT, GATE_POST
from bot.store.leases import Duty
from bot.web.gate_api import GateApi

log = logging.getLogger(__name__)


def webhook_secret(settings: Settings) -> str:
    """The configured secret, else one generated once and kept in the data directory, so that a
    first run is never open to anyone who finds the URL."""
    if settings.jira.webhook_secret is not None and settings.jira.webhook_secret.get_secret_value():
        return settings.jira.webhook_secret.get_secret_value()
    return _kept_secret(settings, "webhook-secret")


def _kept_secret(settings: Settings, name: str) -> str:
    """A secret generated once into the data directory (mode 0600) and read back after."""
    path = Path(settings.data_dir) / name
    if path.exists():
        return path.read_text(encoding="utf-8").strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(24)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(value + "\n")
    return value


def command_tokens(settings: Settings) -> list[str]:
    """The slash command tokens accepted. Without Mattermost and without configured tokens, one
    generated into <data_dir>/command-token, so that the commands can be tried with `curl` on a
    first run and are still closed to anyone who merely finds the port."""
    configured = [t.get_secret_value() for t in settings.mattermost.command_tokens if t.get_secret_value()]
    if configured or settings.mattermost.url:
        return configured
    return [_kept_secret(settings, "command-token")]


def _installed_needs_public(settings: Settings, directory: InstanceDirectory) -> Callable[[str], bool]:
    """Which Jira sites the gateway reaches at public addresses only: those installed from chat
    (configured ones are the operator's choice), unless private instance URLs are allowed."""

    def needs(rest_base: str) -> bool:
        if settings.security.allow_private_instance_urls:
            return False
        inst = directory.find(rest_base)
        return inst is not None and inst.source == "installed"

    return needs


def command_service(
    settings: Settings,
    db: Database,
    directory: InstanceDirectory,
    mattermost: MattermostClient,
    subs: SubscriptionCache,
    metrics: Metrics,
    clock: Callable[[], datetime],
    gate: GateService | None = None,
    owner: str | None = None,
) -> CommandService:
    """`owner`: this process as the replicas' heartbeats name it."""
    master = load_or_create_key(settings)
    cipher = TokenCipher(master)
    gateway = JiraGateway.from_settings(
        settings.jira, public_only=_installed_needs_public(settings, directory)
    )

    async def verify(base_url: str, credentials: Credentials) -> JiraIdentity:
        inst = directory.find(base_url)
        session = gateway.session(base_url, credentials, is_cloud=inst.is_cloud if inst else True)
        try:
            me = await session.myself()
        except JiraError as e:
            if e.kind in ("auth", "forbidden"):
                raise TokenRejected(e.user_message()) from None
            raise
        return JiraIdentity(
            account_id=me.account_id or None,
            name=me.name or None,
            display_name=me.display_name,
            email=me.email or None,
        )

    accounts = AccountService.from_settings(
        settings,
        store=ConnectionStore(db.engine, cipher),
        kv=db.kv,
        cipher=cipher,
        verify=verify,
        instances=directory,
        replicas=db.replicas,
        owner=owner,
    )
    signer = ContextSigner(derive_key(master, "interactive-contexts"))

    async def notify_user(user_id: str, message: str) -> None:
        try:
            await mattermost.send_direct_message(user_id, message)
        except Exception as e:  # a DM is a courtesy; its failure must not fail the request
            log.warning("could not send a direct message to %s: %s", user_id, e)

    deps = Deps(
        settings=settings,
        db=db,
        instances=directory,
        accounts=accounts,
        jira=gateway,
        mattermost=mattermost,
        subscriptions=subs,
        signer=signer,
        actions=ActionFactory(signer, f"{settings.server.public_url}/mattermost/actions", clock=clock),
        metrics=metrics,
        clock=clock,
        notify_user=notify_user,
        webhook_secret=webhook_secret(settings),
        gate=gate,
    )
    return CommandService(deps)


CleanupContext = Callable[[web.Application], AsyncIterator[None]]


def change_gate(
    app: web.Application,
    settings: Settings,
    db: Database,
    sink: PostSink,
    clock: Callable[[], datetime],
    run_workers: bool,
    owner: str,
    delivery: DeliveryWorker,
    wake_delivery: Callable[[], None],
    breakers: Breakers | None = None,
) -> tuple[GateService, CleanupContext] | None:
    """The deployment change gate, when configured: its API, its poller, its channel posts."""
    cg = settings.change_gate
    if cg is None:
        return None
    clients = JsmClients(
        settings.jira,
        planned_start_field=cg.planned_start_field,
        planned_end_field=cg.planned_end_field,
        time_zone=cg.time_zone,
        breakers=breakers,
    )
    # Comments on the CR and the channel's gate posts go through the durable delivery queue.
    service = GateService(GateStore(db.engine), cg, clients, outbox=db.deliveries, on_queued=wake_delivery)
    delivery.senders[GATE_COMMENT] = CommentSender(clients)
    # A CR comment waits out an outage of its Jira site (that site's breaker), not Mattermost's.
    delivery.target_breakers[GATE_COMMENT] = lambda d: clients.breaker(
        str(d.payload["instance"]) if d.payload.get("instance") else None
    )
    if isinstance(sink, MattermostClient):

        async def root_post(gate_id: str) -> str | None:
            gate = await service.get(gate_id)
            return gate.root_post_id if gate is not None else None

        posts = GatePosts(
            sink,
            cg.channel,
            save_root_post=service.set_root_post,
            list_events=service.list_events,
            outbox=db.deliveries,
            get_root_post=root_post,
            on_queued=wake_delivery,
        )
        service.add_listener(posts.on_change)
        delivery.senders[GATE_POST] = posts.send
    app.add_routes(GateApi(service, clock=clock).routes())
    # One replica polls at a time; the lease outlives the gap between two of its rounds.
    interval = float(service.policy.poll_interval_seconds)
    duty = Duty(db.leases, "gate-poller", owner=owner, ttl_seconds=2 * interval, clock=clock)
    poller = GatePoller(service, clock=clock, interval_seconds=interval, duty=duty)

    async def lifecycle(_app: web.Application) -> AsyncIterator[None]:
        if run_workers:
            poller.start()
        yield
        await poller.stop()
        await clients.close()

    return service, lifecycle


def personal_features(
    commands: CommandService,
    processor: EventProcessor,
    delivery: DeliveryWorker,
    settings: Settings,
    direct_messages: bool = True,
) -> None:
    """What needs users' own Jira accounts: buttons on channel posts and personal DMs
    (`direct_messages=False`: none, there is no Mattermost to send them through)."""
    deps = commands.deps
    factory = deps.actions

    def decorate(props: Mapping[str, Any], instance_id: str, event: IssueEvent) -> dict[str, Any]:
        # Buttons only for configured instances: clicks look the instance up by URL.
        if deps.instances.find(instance_id) is None:
            return dict(props)
        return with_issue_actions(props, issue_post_actions(factory, instance_id, event.issue.key))

    processor.decorate_post = decorate

    async def resolve_mentions(instance_id: str, jira_users: list[str]) -> dict[str, str]:
        found: dict[str, str] = {}
        for jira_user in jira_users[:20]:
            mm_user = await deps.accounts.mattermost_user_for(instance_id, jira_user)
            if mm_user is None:
                continue
            try:
                found[jira_user] = str((await deps.mattermost.get_user(mm_user))["username"])
            except (DeliveryError, KeyError):
                continue  # shown by display name instead
        return found

    processor.mention_resolver = resolve_mentions
    # Cloud's thin comment events are read whole before routing (see bot/pipeline/issue_fetch).
    processor.issues = IssueFetcher(
        gateway=deps.jira,
        instances=deps.instances,
        accounts=deps.accounts,
        clock=deps.clock,
        cache_seconds=settings.jira.issue_cache_seconds,
    )
    # Subscriptions' JQL only Jira can answer (`jql_check: jira`), asked with the service account.
    processor.jql_checks = JqlChecker(
        gateway=deps.jira,
        instances=deps.instances,
        clock=deps.clock,
        cache_seconds=settings.jira.jql_check_cache_seconds,
    )
    # Custom field names and priority order for JQL, read with the service account.
    deps.subscriptions.names = JiraNamesCache(
        gateway=deps.jira,
        instances=deps.instances,
        clock=deps.clock,
        refresh_seconds=settings.jira.jql_names_refresh_seconds,
    )

    async def watchers(instance_id: str, issue_key: str) -> list[str]:
        # Jira sends no watchers with webhooks; the instance's service account, when one is
        # configured, reads them. Each watcher's own access is still checked before their DM.
        inst = deps.instances.find(instance_id)
        account = inst.service_account if inst else None
        if inst is None or account is None:
            return []
        creds: Credentials
        if account.token is not None:
            creds = PersonalAccessToken(account.token.get_secret_value())
        elif account.email and account.api_token is not None:
            creds = ApiToken(account.email, account.api_token.get_secret_value())
        else:
            return []
        try:
            return await deps.jira.session(inst.url, creds, is_cloud=inst.is_cloud).watchers(issue_key)
        except JiraError as e:
            log.warning("%s: watchers not read (%s); they get no DM for this event", issue_key, e.kind)
            return []

    if not direct_messages:
        return
    processor.notifier = NotificationPlanner(deps.accounts, watchers)
    delivery.direct_messages = DirectMessageSender(
        accounts=deps.accounts,
        instances=deps.instances,
        jira=deps.jira,
        mattermost=deps.mattermost,
        kv=deps.db.kv,
        clock=deps.clock,
        access_cache_seconds=settings.notifications.access_cache_seconds,
    )
