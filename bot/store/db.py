"""Engine creation and the `Database` facade holding the repositories."""

from __future__ import annotations

import asyncio
import ctypes
import functools
import sqlite3
import sys
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from bot.store.deliveries import SqlDeliveryRepository
from bot.store.inbox import SqlInboxRepository
from bot.store.interfaces import (
    DeliveryRepository,
    InboxRepository,
    KeyValueRepository,
    LeaseRepository,
    ReplicaRepository,
    SubscriptionRepository,
    ThreadRepository,
)
from bot.store.kv import SqlKeyValueRepository
from bot.store.leases import SqlLeaseRepository
from bot.store.migrations import migrate
from bot.store.replicas import SqlReplicaRepository
from bot.store.sql_access import WRITE_OPTION, SqlAccess
from bot.store.subscriptions import SqlSubscriptionRepository
from bot.store.threads import SqlThreadRepository

# Applied to every SQLite connection: busy_timeout makes a writer wait for the lock instead of failing
# at once; NORMAL sync is safe with WAL (a power loss may lose the last commits, never corrupt the file).
SQLITE_PRAGMAS = (
    "PRAGMA busy_timeout=5000",
    "PRAGMA foreign_keys=ON",
    "PRAGMA synchronous=NORMAL",
    # Checkpoints run in the background rather than in whichever commit finds the log full (see
    # bot.store.sql_access.SqliteWal); SQLite still checkpoints when the last connection closes. After a
    # checkpoint the log file is cut back to this size.
    "PRAGMA wal_autocheckpoint=0",
    "PRAGMA journal_size_limit=67108864",
    # Each pooled connection has a page cache of its own (2 MB by default); the operating
    # system caches the file anyway, and webhook bodies are read once.
    "PRAGMA cache_size=-512",
)
# Switching a file to WAL (readers run while one writer writes) needs a moment with no other connection
# in a transaction, and SQLite does not wait for it: retried for up to this long.
SQLITE_WAL_RETRY_SECONDS = 5.0

# A readiness probe must answer quickly even when the database hangs.
PING_TIMEOUT_SECONDS = 2.0


def normalise_database_url(database_url: str) -> URL:
    """Pick the async driver: sqlite:// -> sqlite+aiosqlite://, postgres(ql):// -> postgresql+asyncpg://."""
    try:
        url = make_url(database_url.strip())
    except ArgumentError as exc:
        raise ValueError(
            f"invalid database URL {database_url!r}; use sqlite:///path/to/bot.db or "
            "postgresql://user:password@host:5432/dbname"
        ) from exc
    backend, _, driver = url.drivername.partition("+")
    if backend == "sqlite" and driver in ("", "aiosqlite"):
        return url.set(drivername="sqlite+aiosqlite")
    if backend in ("postgresql", "postgres") and driver in ("", "asyncpg"):
        return url.set(drivername="postgresql+asyncpg")
    raise ValueError(
        f"unsupported database URL scheme {url.drivername!r}; use sqlite:///path/to/bot.db or "
        "postgresql://user:password@host:5432/dbname"
    )


def _is_sqlite_memory(url: URL) -> bool:
    return url.database in (None, "", ":memory:") or url.query.get("mode") == "memory"


def make_engine(database_url: str, *, pg_schema: str | None = None, echo: bool = False) -> AsyncEngine:
    """An async engine for a SQLite or PostgreSQL URL.

    SQLite: the file's directory is created; every connection gets SQLITE_PRAGMAS, and transactions are
    started by us (BEGIN, or BEGIN IMMEDIATE for writes) rather than by the driver. `Database.open` also
    switches the file to WAL (`enable_sqlite_wal`). `sqlite://` alone means an in-memory database on a
    single shared connection: for trying things out, not for concurrent workers.
    PostgreSQL: `pg_schema` sets the connection's search_path (tables live in that schema).
    """
    url = normalise_database_url(database_url)
    kwargs: dict[str, Any] = {"echo": echo}
    if url.get_backend_name() == "sqlite":
        if not _is_sqlite_memory(url) and url.database:
            Path(url.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        limit_malloc_arenas()
        shorten_gil_switch_interval()
        engine = create_async_engine(url, **kwargs)
        _install_sqlite_hooks(engine)
        return engine
    connect_args: dict[str, Any] = {
        "server_settings": {
            "application_name": "jira-chatops",
            # asyncpg prepares every statement; after five runs PostgreSQL may switch a prepared
            # statement to a generic plan, which for the queue's claim queries (parameters decide
            # which index is selective) is far slower than planning each run.
            "plan_cache_mode": "force_custom_plan",
        }
    }
    if pg_schema:
        connect_args["server_settings"]["search_path"] = pg_schema
    # pool_pre_ping: a replica outliving a database restart gets a fresh connection instead of an error.
    return create_async_engine(url, connect_args=connect_args, pool_pre_ping=True, **kwargs)


# glibc's mallopt parameter number for the arena limit (malloc.h: M_ARENA_MAX).
_M_ARENA_MAX = -8
SQLITE_MALLOC_ARENAS = 2


@functools.cache
def limit_malloc_arenas(arenas: int = SQLITE_MALLOC_ARENAS) -> bool:
    """Cap glibc's malloc arenas for the process; True when applied.

    Each SQLite connection runs in a thread of its own (aiosqlite), and glibc gives every such
    thread an arena of its own, which keeps its high-water mark: about 20 MB of resident memory
    for a handful of connections moving webhook bodies. Two arenas serve them as well. Only
    arenas created afterwards are affected, hence the call before the first connection.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(_M_ARENA_MAX, arenas))
    except (OSError, AttributeError):  # not glibc (musl has no arenas to cap)
        return False


# Longest a thread waiting for the GIL waits while another one runs Python code (default 5 ms).
SQLITE_SWITCH_INTERVAL = 0.0005


def shorten_gil_switch_interval(seconds: float = SQLITE_SWITCH_INTERVAL) -> None:
    """Let the SQLite driver's threads get the GIL back sooner (never lengthens it).

    aiosqlite runs each connection in a thread; once SQLite has done its work (without the GIL),
    the thread needs the GIL to hand the result to the event loop, and while the loop is busy
    with webhooks it waits up to the switch interval: 5 ms added to every commit under load,
    with every webhook of the batch waiting on it.
    """
    if sys.getswitchinterval() > seconds:
        sys.setswitchinterval(seconds)


def _install_sqlite_hooks(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Autocommit at the driver: the "begin" hook below emits BEGIN itself, so DDL is transactional
        # and a write transaction can take the write lock first.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            for pragma in SQLITE_PRAGMAS:
                cursor.execute(pragma)
        finally:
            cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        # A deferred transaction that reads and then writes fails at once ("database is locked") when
        # another writer committed meanwhile; IMMEDIATE waits for the lock (busy_timeout) up front.
        immediate = conn.get_execution_options().get(WRITE_OPTION, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


async def enable_sqlite_wal(engine: AsyncEngine) -> None:
    """Put a SQLite file in WAL mode (persistent in the file); nothing for PostgreSQL or memory."""
    if engine.dialect.name != "sqlite" or _is_sqlite_memory(engine.url):
        return
    loop = asyncio.get_running_loop()
    deadline = loop.time() + SQLITE_WAL_RETRY_SECONDS
    delay = 0.01
    while True:
        try:
            async with engine.connect() as conn:
                # The driver connection directly: the pragma must run outside a transaction.
                driver = (await conn.get_raw_connection()).driver_connection
                assert driver is not None  # a checked-out connection always has one
                cursor = await driver.execute("PRAGMA journal_mode=WAL")
                await cursor.close()
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or loop.time() + delay > deadline:
                raise
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.2)


class Database:
    """The engine and its repositories; satisfies `bot.store.interfaces.Store`."""

    inbox: InboxRepository
    deliveries: DeliveryRepository
    subscriptions: SubscriptionRepository
    threads: ThreadRepository
    kv: KeyValueRepository
    leases: LeaseRepository
    replicas: ReplicaRepository

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        access = self._access = SqlAccess(engine)
        self.inbox = SqlInboxRepository(access)
        self.deliveries = SqlDeliveryRepository(access)
        self.subscriptions = SqlSubscriptionRepository(access)
        self.threads = SqlThreadRepository(access)
        self.kv = SqlKeyValueRepository(access)
        self.leases = SqlLeaseRepository(access)
        self.replicas = SqlReplicaRepository(access)

    @classmethod
    async def open(
        cls, database_url: str, *, pg_schema: str | None = None, run_migrations: bool = True
    ) -> Database:
        """Create the engine and, by default, bring the schema up to date."""
        db = cls(make_engine(database_url, pg_schema=pg_schema))
        try:
            if run_migrations:
                await db.migrate()
            else:
                await enable_sqlite_wal(db.engine)
        except BaseException:
            await db.close()
            raise
        return db

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    async def migrate(self) -> int:
        """Prepare the database (SQLite: WAL mode) and apply missing migration steps; returns how many."""
        await enable_sqlite_wal(self.engine)
        return await migrate(self.engine)

    async def ping(self) -> bool:
        """Whether the database answers (readiness)."""
        try:
            async with asyncio.timeout(PING_TIMEOUT_SECONDS), self.engine.connect() as conn:
                await conn.execute(sa.text("SELECT 1"))
        except (SQLAlchemyError, OSError, TimeoutError):
            return False
        return True

    async def close(self) -> None:
        await self._access.settle()
        await self.engine.dispose()
