"""The composition root: build the application from settings.

Everything with a lifecycle (database, Mattermost session, workers) starts and stops in
aiohttp cleanup contexts, in dependency order; nothing lives in module globals.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import socket
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from aiohttp import web
from aiohttp.typedefs import Handler

from bot.breakers import MATTERMOST, Breakers
from bot.chat.listener import build_chat_listener
from bot.commands.service import CommandService
from bot.commands.table import COMMANDS
from bot.config import Settings
from bot.instances import InstanceDirectory
from bot.mattermost.client import MattermostClient
from bot.mattermost.console import ConsoleSink
from bot.mattermost.models import PostSink
from bot.mattermost.offline import OfflineMattermost
from bot.mattermost.payloads import response_url_allowed
from bot.metrics import Metrics
from bot.pipeline.config_subscriptions import sync_config_subscriptions
from bot.pipeline.delivery import DeliveryWorker
from bot.pipeline.housekeeping import Housekeeping
from bot.pipeline.intake import Intake
from bot.pipeline.issue_memory import IssueMemory
from bot.pipeline.processor import EventProcessor
from bot.pipeline.replica import ReplicaLifecycle
from bot.pipeline.subscriptions import SubscriptionCache
from bot.security.urls import UrlPolicy
from bot.store.db import Database, make_engine
from bot.store.nonces import StoreNonces
from bot.web.health import HealthHandler
from bot.web.jira_webhook import JiraWebhookHandler
from bot.web.mm_command import SlashCommandHandler
from bot.web.mm_interactive import InteractiveHandler
from bot.web.oauth import OAuthHandler
from bot.web.responses import json_response
from bot.web.server import body_deadline
from bot.wiring import change_gate, command_service, command_tokens, personal_features, webhook_secret

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

    gate = change_gate(
        app, settings, db, the_sink, clock, run_workers, owner, delivery, wake_delivery, breakers=breakers
    )
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
        commands = command_service(
            settings, db, directory, chat_client, subs, metrics, clock, gate_service, owner=owner
        )
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
        personal_features(commands, processor, delivery, settings, direct_messages=not offline)

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
        # Its claims carry the replica's id: a post claimed by a replica that died is taken over
        # once that replica's heartbeat is stale.
        chat = build_chat_listener(settings, commands, owner=owner, replicas=db.replicas)
        if chat is not None:
            app.cleanup_ctx.append(chat.lifecycle)
    return app
