"""The connections and user_prefs tables on SQLite and PostgreSQL, and no plaintext token in them."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import sqlalchemy as sa

from bot.accounts.crypto import TokenCipher
from bot.accounts.models import (
    AuthType,
    Connection,
    JiraIdentity,
    NotificationSettings,
    OAuth2Secret,
    PatSecret,
)
from bot.accounts.store import ConnectionStore
from bot.store.db import Database
from tests.accounts.conftest import CLOUD_URL, SERVER_URL
from tests.store.conftest import T0, Backend, at

ACCESS = "access-token-3c9e1f0a77"
REFRESH = "refresh-token-b7d20e4c19"
PAT = "pat-token-91af02cd5e"


def cloud_connection(mm_user_id: str = "alice", account_id: str = "acc-alice") -> Connection:
    return Connection(
        mm_user_id=mm_user_id,
        instance_id=CLOUD_URL,
        identity=JiraIdentity(account_id=account_id, display_name="Alice", email="alice@example.com"),
        secret=OAuth2Secret(ACCESS, REFRESH, T0 + timedelta(hours=1), "cloud-1", "read:jira-work"),
        connected_at=T0,
        updated_at=T0,
    )


def server_connection(mm_user_id: str = "bob", name: str = "bob") -> Connection:
    return Connection(
        mm_user_id=mm_user_id,
        instance_id=SERVER_URL,
        identity=JiraIdentity(name=name, display_name="Bob"),
        secret=PatSecret(PAT),
        connected_at=T0,
        updated_at=T0,
    )


async def test_connections_round_trip_and_lookups(db: Database, cipher: TokenCipher) -> None:
    store = ConnectionStore(db.engine, cipher)
    stored = await store.upsert(cloud_connection(), now=at(0))
    await store.upsert(server_connection(), now=at(1))
    await store.upsert(server_connection("alice", "alice.s"), now=at(2))

    got = await store.get("alice", CLOUD_URL)
    assert got == stored
    assert got is not None and got.auth_type is AuthType.OAUTH2
    assert got.notifications == NotificationSettings()  # every switch on by default
    assert [c.instance_id for c in await store.list_for_user("alice")] == [CLOUD_URL, SERVER_URL]
    assert [c.mm_user_id for c in await store.list_for_instance(SERVER_URL)] == ["alice", "bob"]
    assert await store.count() == 3 and await store.count(SERVER_URL) == 2

    # Jira users map back to Mattermost users: accountId on Cloud, username on Server.
    found_cloud = await store.find_by_jira_user(CLOUD_URL, "acc-alice")
    found_server = await store.find_by_jira_user(SERVER_URL, "bob")
    assert found_cloud is not None and found_cloud.mm_user_id == "alice"
    assert found_server is not None and found_server.mm_user_id == "bob"
    assert await store.find_by_jira_user(SERVER_URL, "acc-alice") is None
    assert await store.find_by_jira_user(CLOUD_URL, "") is None

    assert await store.delete("bob", SERVER_URL)
    assert not await store.delete("bob", SERVER_URL)
    assert await store.get("bob", SERVER_URL) is None


async def test_reconnect_replaces_and_revision_guards_writers(db: Database, cipher: TokenCipher) -> None:
    store = ConnectionStore(db.engine, cipher)
    first = await store.upsert(cloud_connection(), now=at(0))
    renewed = OAuth2Secret("access-2", "refresh-2", at(7200), "cloud-1")
    assert await store.replace_secret("alice", CLOUD_URL, renewed, revision=first.revision, now=at(10))
    # A second writer holding the old revision changes nothing.
    stale = OAuth2Secret("access-3", "refresh-3", at(7200), "cloud-1")
    assert not await store.replace_secret("alice", CLOUD_URL, stale, revision=first.revision, now=at(11))
    current = await store.get("alice", CLOUD_URL)
    assert current is not None and current.secret == renewed and current.revision == first.revision + 1
    assert current.connected_at == at(0) and current.updated_at == at(10)

    # Notification switches do not bump the revision (a refresh meanwhile still lands).
    quiet = NotificationSettings().with_kind("watching", False)
    assert await store.set_notifications("alice", CLOUD_URL, quiet, now=at(12))
    after = await store.get("alice", CLOUD_URL)
    assert after is not None and after.notifications == quiet and after.revision == current.revision

    assert not await store.delete("alice", CLOUD_URL, revision=first.revision)
    assert await store.delete("alice", CLOUD_URL, revision=current.revision)


async def test_user_prefs_partial_updates(db: Database, cipher: TokenCipher) -> None:
    store = ConnectionStore(db.engine, cipher)
    empty = await store.get_prefs("alice")
    assert (empty.default_instance, empty.last_project, empty.updated_at) == (None, None, None)
    await store.set_prefs("alice", default_instance=CLOUD_URL, now=at(0))
    prefs = await store.set_prefs("alice", last_project="OPS", now=at(5))
    assert (prefs.default_instance, prefs.last_project, prefs.updated_at) == (CLOUD_URL, "OPS", at(5))
    cleared = await store.set_prefs("alice", default_instance=None, now=at(6))
    assert (cleared.default_instance, cleared.last_project) == (None, "OPS")


async def test_credentials_copied_into_another_row_do_not_open(db: Database, cipher: TokenCipher) -> None:
    store = ConnectionStore(db.engine, cipher)
    await store.upsert(cloud_connection("alice"), now=at(0))
    await store.upsert(cloud_connection("mallory", "acc-mallory"), now=at(0))
    table = sa.table("connections", sa.column("mm_user_id"), sa.column("credentials"))
    async with db.engine.begin() as conn:
        alice_sealed = await conn.scalar(sa.select(table.c.credentials).where(table.c.mm_user_id == "alice"))
        await conn.execute(
            sa.update(table).where(table.c.mm_user_id == "mallory").values(credentials=alice_sealed)
        )
    assert await store.get("mallory", CLOUD_URL) is None
    assert await store.get("alice", CLOUD_URL) is not None


async def test_rotation_reseals_rows_with_the_current_key(db: Database) -> None:
    old_key, new_key = os.urandom(32), os.urandom(32)
    await ConnectionStore(db.engine, TokenCipher(old_key)).upsert(cloud_connection(), now=at(0))
    rotated = ConnectionStore(db.engine, TokenCipher(new_key, old_keys=[old_key]))
    assert await rotated.reseal_all(now=at(1)) == 1
    assert await rotated.reseal_all(now=at(2)) == 0
    # Only the new key is needed from now on.
    only_new = ConnectionStore(db.engine, TokenCipher(new_key))
    got = await only_new.get("alice", CLOUD_URL)
    assert got is not None and isinstance(got.secret, OAuth2Secret) and got.secret.refresh_token == REFRESH


async def raw_database_text(db: Database, backend: Backend) -> bytes:
    """Everything the database holds, as bytes: the SQLite files (WAL included), or every
    PostgreSQL row of the bot's tables rendered as text."""
    if backend.name == "sqlite":
        await db.close()  # flush, so nothing sits only in memory
        folder = Path(db.engine.url.database or "").parent
        return b"".join(p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file())
    chunks: list[bytes] = []
    async with db.engine.connect() as conn:
        tables = await conn.execute(
            sa.text("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")
        )
        for (name,) in tables.all():
            rows = await conn.execute(sa.text(f'SELECT t::text FROM "{name}" t'))
            chunks.extend(r[0].encode() for r in rows)
    return b"\n".join(chunks)


async def test_no_plaintext_token_in_the_database(backend: Backend, cipher: TokenCipher) -> None:
    db = await backend.open()
    try:
        store = ConnectionStore(db.engine, cipher)
        await store.upsert(cloud_connection(), now=at(0))
        await store.upsert(server_connection(), now=at(0))
        got = await store.get("bob", SERVER_URL)
        assert got is not None and got.secret == PatSecret(PAT)
        raw = await raw_database_text(db, backend)
        assert b"acc-alice" in raw  # the scan does see the rows
        for token in (ACCESS, REFRESH, PAT):
            assert token.encode() not in raw
    finally:
        await db.close()
