"""Command line: `jira-chatops serve`, plus admin commands for the webhook URL and dead letters."""

from __future__ import annotations

import argparse
import asyncio
import functools
import gc
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from types import FrameType
from urllib.parse import quote

from aiohttp import web

from bot.config import ConfigError, Settings, config_location, empty_secrets, load_settings
from bot.jira.instances import encode_instance_id
from bot.logs import setup_logging
from bot.pipeline.config_subscriptions import located_subscription_problems
from bot.supervisor import workers_problem


def _load(path: str | None, *, serving: bool = False) -> Settings:
    """The settings, checked as `serve` checks them when `serving` (then empty secrets that
    serve needs are errors; elsewhere they are left to the environment of `serve`)."""
    settings = load_settings(path)
    # Named where they were written, as load_settings names its own.
    problems = [
        config_location(loc, path) + problem for loc, problem in located_subscription_problems(settings)
    ]
    if serving:
        problems += empty_secrets(settings)[0]
    if problems:
        raise ConfigError("invalid configuration:\n" + "\n".join(f"  {p}" for p in problems))
    return settings


# From SIGTERM to exit, whatever is being processed (`docker stop` waits as long before SIGKILL):
# the default of server.shutdown_grace_seconds.
SHUTDOWN_GRACE_SECONDS = 10.0
# Of the grace period: this share for the posts in flight (then claims are released to the other
# replicas), and at most REQUEST_DRAIN_SECONDS (and this share) for in-flight requests; the
# rest is for closing connections.
POSTS_DRAIN_SHARE = 0.5
REQUEST_DRAIN_SECONDS = 5.0
REQUEST_DRAIN_SHARE = 0.3


def arm_shutdown_watchdog(grace: float, signals: Sequence[int] = (signal.SIGTERM, signal.SIGINT)) -> None:
    """On the first of `signals`, start a clock: if the process has not exited `grace` seconds
    later, it exits anyway.

    The graceful shutdown runs on the event loop, which a stuck callback could hold. The
    handler set here runs in the main thread between any two bytecodes, loop or not, and the
    clock runs in a thread of its own. Installed over the event loop's own handler, which keeps
    working: the loop is told of signals through its wake-up descriptor, not this handler.
    Nothing is lost by exiting: unfinished webhooks and posts stay leased in the store.
    """
    started = threading.Event()

    def expire() -> None:
        logging.getLogger("bot").error("shutdown took longer than %g s; exiting now", grace)
        logging.shutdown()
        os._exit(1)

    def install(sig: int) -> None:
        previous = signal.getsignal(sig)

        def on_signal(signum: int, frame: FrameType | None) -> None:
            if not started.is_set():
                started.set()
                timer = threading.Timer(grace, expire)
                timer.daemon = True
                timer.start()
            if callable(previous):
                previous(signum, frame)

        signal.signal(sig, on_signal)

    for sig in signals:
        install(sig)


def cmd_serve_workers(settings: Settings, workers: int, config: str | None) -> int:
    """`serve --workers N`: N worker processes on the port, watched by this one (bot.supervisor)."""
    from bot.supervisor import Supervisor
    from bot.wiring import command_tokens, webhook_secret

    setup_logging(settings.logging.level, settings.logging.format)
    problem = workers_problem(workers, settings.database_url)
    if problem:
        print(f"jira-chatops: {problem}", file=sys.stderr)
        return 2
    # Generated files in data_dir are made once here, not raced for by the workers.
    webhook_secret(settings)
    command_tokens(settings)
    logging.getLogger("bot").info(
        "starting %d workers on %s:%d (SO_REUSEPORT); database: %s",
        workers,
        settings.server.host,
        settings.server.port,
        settings.database_url.split("@")[-1],
    )
    command = [sys.executable, "-m", "bot", "serve", *(["--config", config] if config else [])]
    return Supervisor(command, workers, settings.server.shutdown_grace_seconds).run()


def cmd_serve(settings: Settings, ready_fd: int | None = None) -> int:
    """One serving process; with `ready_fd`, one worker of `serve --workers N` (bot.supervisor)."""
    from bot.app import begin_shutdown, create_app, describe_features
    from bot.supervisor import notify_listening
    from bot.web.server import serve
    from bot.wiring import command_tokens, webhook_secret

    setup_logging(settings.logging.level, settings.logging.format)
    log = logging.getLogger("bot")
    secret_source = (
        "configured" if settings.jira.webhook_secret else f"kept in {settings.data_dir}/webhook-secret"
    )
    webhook_secret(settings)
    log.info(
        "starting%s on %s:%d; Mattermost: %s; database: %s; webhook secret %s",
        f" worker pid {os.getpid()}" if ready_fd is not None else "",
        settings.server.host,
        settings.server.port,
        settings.mattermost.url or "console (no mattermost.url configured)",
        settings.database_url.split("@")[-1],
        secret_source,
    )
    command_tokens(settings)
    for line in describe_features(settings):
        log.info("feature %s", line)
    app = create_app(settings)
    grace = settings.server.shutdown_grace_seconds

    async def watchdog(_app: web.Application) -> None:
        # At start-up, after serve has set the event loop's signal handlers.
        arm_shutdown_watchdog(grace)
        # What start-up allocated (modules, the app, settings) lives as long as the process: move
        # it out of the collector's reach, so that full collections during a render stay short.
        gc.collect()
        gc.freeze()

    app.on_startup.append(watchdog)
    # As web.run_app, plus request head and size checks at the connection (bot/web/server.py).
    serve(
        app,
        settings.server,
        shutdown_timeout=min(REQUEST_DRAIN_SECONDS, grace * REQUEST_DRAIN_SHARE),
        before_stop=functools.partial(begin_shutdown, app, grace * POSTS_DRAIN_SHARE),
        reuse_port=ready_fd is not None,
        listening=None if ready_fd is None else functools.partial(notify_listening, ready_fd),
    )
    # Everything with state is closed by now. A thread still running is a call waiting on its
    # network timeout (a Jira request in the gateway's pool, say), which the interpreter would
    # wait for at exit, past the grace period.
    busy = [t for t in threading.enumerate() if t is not threading.main_thread() and not t.daemon]
    if busy:
        log.info(
            "stopped; not waiting for %d blocked call(s): %s", len(busy), ", ".join(t.name for t in busy)
        )
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    return 0


def cmd_webhook_url(settings: Settings, team: str | None, channel: str | None) -> int:
    from bot.wiring import webhook_secret

    base = settings.server.public_url
    secret = quote(webhook_secret(settings), safe="")
    print(f"firehose:  {base}/plugins/jira/api/v2/webhook?secret={secret}")
    for inst in settings.jira.instances:
        path = f"/plugins/jira/instance/{encode_instance_id(inst.url)}/api/v2/webhook"
        print(f"  {inst.alias or inst.url}: {base}{path}?secret={secret}")
    print(
        f"legacy:    {base}/plugins/jira/webhook?secret={secret}"
        f"&team={quote(team or 'TEAM')}&channel={quote(channel or 'CHANNEL')}"
    )
    return 0


def _issue_key(body: bytes) -> str | None:
    from bot.jira.models import WebhookParseError, peek_webhook

    try:
        issue = peek_webhook(body).issue
    except (WebhookParseError, ValueError, RecursionError):
        return None
    return issue.key if issue is not None else None


async def _dead_letters(
    settings: Settings, replay: Sequence[int] | None, replay_all: bool, replay_webhooks: Sequence[int] | None
) -> int:
    from bot.store.db import Database

    db = await Database.open(settings.database_url)
    try:
        not_found: list[str] = []
        if replay_webhooks:
            failed = {item.id for item in await db.inbox.list_failed(limit=1_000_000)}
            not_found += [f"webhook {i}" for i in replay_webhooks if i not in failed]
            found = [i for i in replay_webhooks if i in failed]
            n = await db.inbox.replay_failed(found, datetime.now(UTC)) if found else 0
            print(f"{n} failed webhook(s) queued for processing again")
        if replay_all or replay:
            ids: list[int] | None = None
            if not replay_all:
                dead = {d.id for d in await db.deliveries.list_dead(limit=1_000_000)}
                not_found += [f"post {i}" for i in replay or [] if i not in dead]
                ids = [i for i in replay or [] if i in dead]
            n = await db.deliveries.replay(ids, datetime.now(UTC)) if ids is None or ids else 0
            print(f"{n} dead letter(s) queued for delivery again")
        if not_found:
            print(f"jira-chatops: not dead letters, nothing done: {', '.join(not_found)}", file=sys.stderr)
            return 1
        if replay_webhooks or replay_all or replay:
            return 0
        listed = 0
        for d in await db.deliveries.list_dead(limit=1000):
            listed += 1
            print(
                json.dumps(
                    {
                        # channel_post, direct_message, gate_comment, gate_post, ...
                        # (the kinds of bot.store.interfaces)
                        "kind": d.kind,
                        "id": d.id,
                        "channel_id": d.channel_id,
                        "issue_key": d.payload.get("issue_key"),
                        "gate_id": d.payload.get("gate_id"),
                        "attempts": d.attempts,
                        "error": d.last_error,
                    }
                )
            )
        # Webhooks whose processing kept failing: nothing was posted for them.
        for item in await db.inbox.list_failed(limit=1000):
            listed += 1
            print(
                json.dumps(
                    {
                        "kind": "webhook",
                        "id": item.id,
                        "issue_key": _issue_key(item.body),
                        "received_at": item.received_at.isoformat(),
                        "attempts": item.attempts,
                        "error": (item.outcome or "").removeprefix("failed: "),
                    }
                )
            )
        if not listed:
            print("no dead letters: every post was delivered and every webhook processed", file=sys.stderr)
        return 0
    finally:
        await db.close()


async def _stats(settings: Settings) -> int:
    """What the database holds (every replica, until purged): webhooks and posts by status,
    and events dropped because their issue could not be read, by reason."""
    import sqlalchemy as sa

    from bot.store.db import Database
    from bot.store.schema import webhook_inbox

    db = await Database.open(settings.database_url)
    try:
        inbox = await db.inbox.counts()
        deliveries = await db.deliveries.counts()
        backlog = await db.deliveries.backlog()
        t = webhook_inbox
        async with db.engine.connect() as conn:
            rows = (
                await conn.execute(
                    sa.select(t.c.outcome, sa.func.count())
                    .where(t.c.outcome.like("dropped: %"))
                    .group_by(t.c.outcome)
                )
            ).all()
        dropped = {str(outcome).removeprefix("dropped: "): int(n) for outcome, n in rows}
        print(f"webhooks: {json.dumps(inbox, sort_keys=True)}")
        print(f"posts: {json.dumps(deliveries, sort_keys=True)}")
        print(f"backlog: {backlog}")
        print(f"events dropped (issue not readable): {json.dumps(dropped, sort_keys=True)}")
        return 0
    finally:
        await db.close()


def _worker_count(text: str) -> int:
    n = int(text)
    if not 1 <= n <= 64:
        raise argparse.ArgumentTypeError("takes a number from 1 to 64")
    return n


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="jira-chatops", description="Jira chat-ops bot for Mattermost")
    parser.add_argument(
        "--config", "-c", metavar="FILE", help="YAML config file (environment variables override it)"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    serve = sub.add_parser("serve", help="run the bot")
    serve.add_argument(
        "--workers",
        type=_worker_count,
        metavar="N",
        help="processes serving the port, each a replica (PostgreSQL only; default: server.workers)",
    )
    serve.add_argument("--worker-ready-fd", type=int, help=argparse.SUPPRESS)
    sub.add_parser("check-config", help="validate the configuration and exit")
    sub.add_parser("gate", help="pipeline client of the change gate (see `jira-chatops gate --help`)")
    url = sub.add_parser("webhook-url", help="print the webhook URLs to enter in Jira")
    url.add_argument("--team")
    url.add_argument("--channel")
    dead = sub.add_parser(
        "dead-letters",
        help="list posts not delivered and webhooks not processed (dead letters), or replay them",
    )
    dead.add_argument("--replay", type=int, nargs="+", metavar="ID", help="replay these dead posts")
    dead.add_argument("--replay-all", action="store_true", help="replay every dead post")
    dead.add_argument(
        "--replay-webhooks",
        type=int,
        nargs="+",
        metavar="ID",
        help="process these failed webhooks again (ids of kind webhook), with fresh attempts",
    )
    stats = sub.add_parser("stats", help="webhooks, posts and dropped events counted in the database")
    for p in (serve, url, dead, stats, sub.choices["check-config"]):
        p.add_argument(
            "--config",
            "-c",
            dest="config_sub",
            metavar="FILE",
            help="YAML config file (environment variables override it)",
        )

    words = list(sys.argv[1:] if argv is None else argv)
    if words[:1] == ["gate"]:
        # The pipeline client needs no configuration of the bot's.
        from bot.gate.cli import gate_main

        return gate_main(words[1:])
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        where = f"jira-chatops {args.command}" if args.command else "jira-chatops"
        parser.error(f"unknown option {unknown[0]!r} (see `{where} --help`)")
    if args.command is None:
        parser.error("name a command: " + ", ".join(sub.choices))
    try:
        settings = _load(getattr(args, "config_sub", None) or args.config, serving=args.command == "serve")
    except ConfigError as e:
        print(f"jira-chatops: {e}", file=sys.stderr)
        return 2
    if args.command == "serve":
        config = getattr(args, "config_sub", None) or args.config
        workers = args.workers or settings.server.workers
        if args.worker_ready_fd is None and workers > 1:
            return cmd_serve_workers(settings, workers, config)
        return cmd_serve(settings, args.worker_ready_fd)
    if args.command == "check-config":
        # `serve` refuses it (unless --workers says otherwise): said before the start.
        workers = workers_problem(settings.server.workers, settings.database_url)
        if workers:
            where = config_location(("server", "workers"), getattr(args, "config_sub", None) or args.config)
            print(f"jira-chatops: invalid configuration:\n  {where}{workers}", file=sys.stderr)
            return 2
        # Empty secrets are meant to come from the environment: warnings, not errors.
        needed, optional = empty_secrets(settings)
        for line in needed + optional:
            print(f"warning: {line}", file=sys.stderr)
        print(
            "configuration is valid"
            + (f" ({len(needed) + len(optional)} warning(s))" if needed or optional else "")
        )
        return 0
    if args.command == "webhook-url":
        return cmd_webhook_url(settings, args.team, args.channel)
    if args.command == "dead-letters":
        return asyncio.run(_dead_letters(settings, args.replay, args.replay_all, args.replay_webhooks))
    if args.command == "stats":
        return asyncio.run(_stats(settings))
    parser.error(f"unknown command {args.command}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
