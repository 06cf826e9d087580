"""The composition root: build the application from settings.

Everything with a lifecycle (database, Mattermost session, workers) starts and stops in
aiohttp cleanup contexts, in dependency order; nothing lives in module globals.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import secrets
import socket
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from bot.accounts.crypto import TokenCipher, load_or_create_key
from bot.accounts.models import JiraIdentity, TokenRejected
from bot.accounts.service import AccountService
from bot.accounts.store import ConnectionStore
from bot.breakers import MATTERMOST, Breakers
from bot.chat.listener import build_chat_listener
from bot.commands.context import Deps
from bot.commands.post_buttons import issue_post_actions, with_issue_actions
from bot.commands.service import CommandService
from bot.commands.table import COMMANDS
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
from bot.mattermost.console import ConsoleSink
from bot.mattermost.models import DeliveryError, PostSink
from bot.mattermost.offline import OfflineMattermost
from bot.mattermost.payloads import ActionFactory, response_url_allowed
from bot.metrics import Metrics
from bot.notify.planner import NotificationPlanner
from bot.notify.sender import DirectMessageSender
from bot.pipeline.config_subscriptions import sync_config_subscriptions
from bot.pipeline.delivery import DeliveryWorker
from bot.pipeline.housekeeping import Housekeeping
from bot.pipeline.intake import Intake
from bot.pipeline.issue_fetch import IssueFetcher
from bot.pipeline.issue_memory import IssueMemory
from bot.pipeline.processor import EventProcessor
from bot.pipeline.replica import ReplicaLifecycle
from bot.pipeline.subscriptions import SubscriptionCache
from bot.security.signing import ContextSigner, derive_key
from bot.security.urls import UrlPolicy
from bot.store.db import Database, make_engine
from bot.store.interfaces import GATE_COMMENT, GATE_POST
from bot.store.leases import Duty
from bot.store.nonces import StoreNonces
from bot.web.gate_api import GateApi
from bot.web.health import HealthHandler
from bot.web.jira_webhook import JiraWebhookHandler
from bot.web.mm_command import SlashCommandHandler
from bot.web.mm_interactive import InteractiveHandler
from bot.web.oauth import OAuthHandler
from bot.web.responses import json_response
from bot.web.server import body_deadline

log = logging.getLogger(__name__)


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Services:
    """What the running application is made of; available to tests through SERVICES."""

    settings: Settings
    db: Database
    sink: PostSink
    metrics: Metrics
    subscriptions: SubscriptionCache
    intake: Intake
    processor: EventProcessor
    delivery: DeliveryWorker
    owner: str
    webhook_secret: str
    instances: InstanceDirectory
    commands: CommandService | None = None
    process_wake: asyncio.Event = field(default_factory=asyncio.Event)
    delivery_wake: asyncio.Event = field(default_factory=asyncio.Event)
    replica: ReplicaLifecycle | None = None


SERVICES = web.AppKey("services", Services)


async def begin_shutdown(app: web.Application, grace: float) -> None:
    """The clean stop of a replica (bot.pipeline.replica), while the server still answers: 503
    from /readyz and the intake at once, posts in flight given `grace` seconds, then every claim
    released to the other replicas."""
    replica = app[SERVICES].replica
    if replica is not None:
        await replica.drain(grace)


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


def describe_features(settings: Settings) -> list[str]:
    """What this configuration turns on and off, and why: one line each, for the start-up log."""
    mm = settings.mattermost
    data = settings.data_dir
    lines = []
    if mm.url:
        lines.append(f"channel posts: on, to Mattermost at {mm.url}")
    else:
        lines.append("channel posts: printed on the console (no mattermost.url / MATTERMOST_URL)")
    if mm.command_tokens:
        lines.append("slash commands: on at /mattermost/command (mattermost.command_tokens)")
    elif mm.url:
        lines.append(
            "slash commands: off, every request refused (no mattermost.command_tokens / "
            "MATTERMOST_COMMAND_TOKENS)"
        )
    else:
        lines.append(
            f"slash commands: on at /mattermost/command, answered over HTTP; token in {data}/command-token"
        )
    if mm.url:
        lines.append("dialogs, direct messages: on")
        if not settings.chat.listen:
            lines.append("chat (websocket): off (chat.listen is false)")
        else:
            lines.append("chat (websocket): on")
    else:
        lines.append("dialogs, direct messages, chat (websocket): off (they need mattermost.url)")
    if settings.jira.instances:
        names = ", ".join(i.alias or i.url for i in settings.jira.instances)
        lines.append(f"Jira instances: {names}")
    else:
        lines.append("Jira instances: none configured (jira.instances), none installed from chat yet")
    lines.append("change gate: " + ("on" if settings.change_gate else "off (no change_gate section)"))
    return lines


def make_sink(settings: Settings) -> PostSink:
    mm = settings.mattermost
    if mm.url and mm.bot_token is not None:
        return MattermostClient(
            url=mm.url, token=mm.bot_token.get_secret_value(), timeout=mm.request_timeout_seconds
        )
    return ConsoleSink(stream=sys.stdout)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A bug must never show a stack trace to a caller; it is logged and answered briefly."""
    try:
        return await handler(request)
    except web.HTTPException:
        raise
    except asyncio.CancelledError:
        raise
    except ConnectionError as e:
        # The client went away (e.g. mid-upload): nothing to answer, nothing to fix.
        log.debug("%s %s: client disconnected (%s)", request.method, request.path, type(e).__name__)
        return web.Response(status=400)
    except RecursionError:
        # Input nested deeper than any parser's recursion limit: bad input, not a bug.
        log.info("%s %s: request nested too deeply", request.method, request.path)
        return json_response(
            {"status": "bad_request", "reason": "the request is nested too deeply"}, status=400
        )
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return web.Response(
            status=500,
            body=b'{"status": "error", "reason": "internal error"}',
            headers={"Content-Type": "application/json"},
        )


def _installed_needs_public(settings: Settings, directory: InstanceDirectory) -> Callable[[str], bool]:
    """Which Jira sites the gateway reaches at public addresses only: those installed from chat
    (configured ones are the operator's choice), unless private instance URLs are allowed."""

    def needs(rest_base: str) -> bool:
        if settings.security.allow_private_instance_urls:
            return False
        inst = directory.find(rest_base)
        return inst is not None and inst.source == "installed"

    return needs


def _command_service(
    settings: Settings,
    db: Database,
    directory: InstanceDirectory,
    mattermost: MattermostClient,
    subs: SubscriptionCache,
    metrics: Metrics,
    clock: Callable[[], datetime],
    gate: GateService | None = None,
) -> CommandService:
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


def _change_gate(
    app: web.Application,
    settings: Settings,
    db: Database,
    sink: PostSink,
    clock: Callable[[], datetime],
    run_workers: bool,
    owner: str,
    delivery: DeliveryWorker,
    wake_delivery: Callable[[], None],
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
    )
    # Comments on the CR and the channel's gate posts go through the durable delivery queue.
    service = GateService(GateStore(db.engine), cg, clients, outbox=db.deliveries, on_queued=wake_delivery)
    delivery.senders[GATE_COMMENT] = CommentSender(clients)
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


def _personal_features(
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


def create_app(
    settings: Settings,
    *,
    sink: PostSink | None = None,
    clock: Callable[[], datetime] = utc_now,
    run_workers: bool = True,
    database: Database | None = None,
) -> web.Application:
    """Build the application. `sink`, `clock` and `database` replace the ones the settings
    describe (tests use them); `run_workers=False` leaves processing to the caller."""
    app = web.Application(
        client_max_size=settings.server.max_body_bytes,
        middlewares=[error_middleware, body_deadline(settings.server.body_read_timeout_seconds)],
    )
    metrics = Metrics()
    owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    secret = webhook_secret(settings)
    the_sink = sink if sink is not None else make_sink(settings)
    db = database if database is not None else Database(make_engine(settings.database_url))
    subs = SubscriptionCache(db.subscriptions, db.kv)
    directory = InstanceDirectory(
        settings.jira.instances,
        db.kv,
        check_url=UrlPolicy(allow_private=settings.security.allow_private_instance_urls).check,
    )

    services: Services | None = None

    def wake_processor() -> None:
        if services is not None:
            services.process_wake.set()

    def wake_delivery() -> None:
        if services is not None:
            services.delivery_wake.set()

    intake = Intake(
        inbox=db.inbox,
        stats=db.deliveries,
        sink=the_sink,
        metrics=metrics,
        clock=clock,
        instances=directory.urls,
        max_backlog=settings.delivery.max_backlog,
        on_accepted=wake_processor,
    )
    processor = EventProcessor(
        inbox=db.inbox,
        subscriptions=subs,
        memory=IssueMemory(db.kv),
        settings=settings.channel_posts,
        metrics=metrics,
        clock=clock,
        owner=owner,
        lease_seconds=settings.delivery.lease_seconds,
        on_planned=wake_delivery,
        busy=intake.busy,
        max_attempts=settings.delivery.max_attempts,
        processing_timeout=settings.delivery.processing_timeout_seconds,
        backoff_base=settings.delivery.backoff_base_seconds,
        backoff_max=settings.delivery.backoff_max_seconds,
    )
    delivery = DeliveryWorker(
        deliveries=db.deliveries,
        threads=db.threads,
        sink=the_sink,
        settings=settings.delivery,
        posts=settings.channel_posts,
        metrics=metrics,
        clock=clock,
        owner=owner,
        busy=intake.busy,
    )
    # One circuit breaker per outbound target for the whole process, seen by the other replicas
    # through the key-value store (bot/breakers.py); its metric series exist from the start.
    breakers = Breakers(clock=clock, metrics=metrics, shared=db.kv)
    if isinstance(the_sink, MattermostClient):
        the_sink.breaker = delivery.breaker = breakers.get(MATTERMOST)
    services = Services(
        settings=settings,
        db=db,
        sink=the_sink,
        metrics=metrics,
        subscriptions=subs,
        intake=intake,
        processor=processor,
        delivery=delivery,
        owner=owner,
        webhook_secret=secret,
        instances=directory,
    )
    app[SERVICES] = services
    replica = services.replica = ReplicaLifecycle(
        replicas=db.replicas,
        inbox=db.inbox,
        deliveries=db.deliveries,
        owner=owner,
        clock=clock,
        wakes=(services.process_wake, services.delivery_wake),
    )

    webhook = JiraWebhookHandler(
        intake,
        secrets=[secret, *(s.get_secret_value() for s in settings.jira.previous_webhook_secrets)],
        signing_secret=(
            settings.jira.webhook_signing_secret.get_secret_value()
            if settings.jira.webhook_signing_secret
            else None
        ),
        max_body_bytes=settings.server.max_body_bytes,
        stopping=lambda: replica.stopping,
    )

    async def refresh_backlog() -> None:
        metrics.backlog.set(await db.deliveries.backlog())

    health = HealthHandler(
        checks={"database": db.ping, "mattermost": the_sink.ping},
        metrics=metrics,
        refresh_metrics=refresh_backlog,
        stopping=lambda: replica.stopping,
    )
    app.add_routes(webhook.routes() + health.routes())

    gate = _change_gate(app, settings, db, the_sink, clock, run_workers, owner, delivery, wake_delivery)
    gate_service = gate[0] if gate else None

    # Slash commands answer over HTTP, so they work without Mattermost too: then what needs the
    # server (dialogs, direct messages, the websocket) answers with a sentence saying so.
    commands: CommandService | None = None
    chat_client: MattermostClient | None = None
    if isinstance(the_sink, MattermostClient):
        chat_client = the_sink
    elif not settings.mattermost.url:
        chat_client = OfflineMattermost(the_sink)
    if chat_client is not None:
        offline = isinstance(chat_client, OfflineMattermost)
        commands = _command_service(settings, db, directory, chat_client, subs, metrics, clock, gate_service)
        commands.deps.jira.breakers = breakers
        slash = SlashCommandHandler(
            commands,
            tokens=command_tokens(settings),
            autocomplete=COMMANDS.autocomplete,
            response_url_allowed=functools.partial(
                response_url_allowed,
                mattermost_url=settings.mattermost.url,
                allowed_hosts=settings.mattermost.response_url_allowed_hosts,
            ),
        )

        interactive = InteractiveHandler(
            commands, commands.deps.signer, remember=StoreNonces(db.kv, clock), clock=clock
        )
        oauth = OAuthHandler(commands.deps.accounts, clock=clock)
        app.add_routes(slash.routes() + interactive.routes() + oauth.routes())
        services.commands = commands
        _personal_features(commands, processor, delivery, settings, direct_messages=not offline)

        async def command_lifecycle(_app: web.Application) -> AsyncIterator[None]:
            yield
            await slash.close()
            assert commands is not None
            await commands.deps.accounts.close()
            await commands.deps.jira.close()

        app.cleanup_ctx.append(command_lifecycle)

    async def storage(_app: web.Application) -> AsyncIterator[None]:
        await db.migrate()
        await directory.load(clock())
        yield
        await db.close()

    async def mattermost(_app: web.Application) -> AsyncIterator[None]:
        start = getattr(the_sink, "start", None)
        if start is not None:
            await start()
        yield
        await the_sink.close()

    async def config_subscriptions(_app: web.Application) -> AsyncIterator[None]:
        await sync_config_subscriptions(settings, db.subscriptions, the_sink, clock())
        await subs.changed()
        yield

    housekeeping = Housekeeping(
        db,
        owner=owner,
        keep=timedelta(days=settings.database.keep_days),
        interval_seconds=settings.database.purge_interval_minutes * 60,
        clock=clock,
    )

    async def workers(_app: web.Application) -> AsyncIterator[None]:
        await replica.start(
            [
                (
                    "event-processor",
                    processor.run(
                        services.process_wake, settings.delivery.poll_interval_seconds, replica.stop
                    ),
                ),
                ("delivery", delivery.run(services.delivery_wake, replica.stop)),
            ]
        )
        housekeeping.start()
        yield
        await housekeeping.stop()  # releases its lease: another replica purges from now on
        # Already done when SIGTERM came through `begin_shutdown`. An interrupted delivery is
        # sent again with the same pending_post_id: stopping mid-send loses and doubles nothing.
        await replica.drain(settings.server.shutdown_grace_seconds / 2)

    app.cleanup_ctx.append(storage)
    app.cleanup_ctx.append(mattermost)
    app.cleanup_ctx.append(config_subscriptions)
    if run_workers:
        app.cleanup_ctx.append(workers)
    if gate is not None:
        app.cleanup_ctx.append(gate[1])  # after storage: the poller reads the gates table
    if commands is not None and isinstance(the_sink, MattermostClient):
        # After storage: the listener reads its catch-up watermark from the store.
        chat = build_chat_listener(settings, commands)
        if chat is not None:
            app.cleanup_ctx.append(chat.lifecycle)
    return app
