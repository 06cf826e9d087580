"""Connected accounts and user preferences in SQL (SQLite and PostgreSQL).

Credentials are sealed by `TokenCipher` before they reach a statement and opened after a row is
read, bound to the row's user and instance: the database holds no plaintext token, and a sealed
value copied into another row does not open.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.accounts.crypto import DecryptionError, TokenCipher
from bot.accounts.models import (
    Connection,
    JiraIdentity,
    NotificationSettings,
    Secret,
    UserPrefs,
    secret_auth_type,
    secret_from_dict,
    secret_to_dict,
)
from bot.store.schema import connections, user_prefs
from bot.store.sql_access import SqlAccess

log = logging.getLogger(__name__)


class _Unset:
    """Marks a preference the caller leaves as it is."""


UNSET: Any = _Unset()


def _context(mm_user_id: str, instance_id: str) -> str:
    return f"connection\n{mm_user_id}\n{instance_id}"


class ConnectionStore:
    """Repository of `connections` and `user_prefs`."""

    def __init__(self, engine: AsyncEngine, cipher: TokenCipher) -> None:
        self._db = SqlAccess(engine)
        self._cipher = cipher

    # ---------------------------------------------------------------------------------- rows

    def _seal(self, mm_user_id: str, instance_id: str, secret: Secret) -> str:
        return self._cipher.encrypt(secret_to_dict(secret), context=_context(mm_user_id, instance_id))

    def _connection(self, row: Row[Any]) -> Connection | None:
        try:
            data = self._cipher.decrypt(row.credentials, context=_context(row.mm_user_id, row.instance_id))
            secret = secret_from_dict(row.auth_type, data)
        except (DecryptionError, KeyError, ValueError) as exc:
            # A row sealed with a key that is no longer configured is as good as absent: the
            # user connects again. Logged without the value.
            log.warning(
                "cannot open the credentials of %s on %s (%s); treating as not connected",
                row.mm_user_id,
                row.instance_id,
                exc,
            )
            return None
        return Connection(
            mm_user_id=row.mm_user_id,
            instance_id=row.instance_id,
            identity=JiraIdentity(
                account_id=row.jira_account_id,
                name=row.jira_name,
                display_name=row.display_name,
                email=row.email,
            ),
            secret=secret,
            connected_at=row.connected_at,
            updated_at=row.updated_at,
            notifications=NotificationSettings.from_json(row.settings),
            revision=row.revision,
        )

    async def _select(self, *where: sa.ColumnElement[bool], order: Any = None) -> list[Connection]:
        stmt = sa.select(connections).where(*where)
        if order is not None:
            stmt = stmt.order_by(*order)
        async with self._db.read() as conn:
            rows = (await conn.execute(stmt)).all()
        return [c for c in (self._connection(r) for r in rows) if c is not None]

    @staticmethod
    def _key(mm_user_id: str, instance_id: str) -> sa.ColumnElement[bool]:
        return sa.and_(connections.c.mm_user_id == mm_user_id, connections.c.instance_id == instance_id)

    # ------------------------------------------------------------------------------ queries

    async def get(self, mm_user_id: str, instance_id: str) -> Connection | None:
        found = await self._select(self._key(mm_user_id, instance_id))
        return found[0] if found else None

    async def list_for_user(self, mm_user_id: str) -> list[Connection]:
        return await self._select(
            connections.c.mm_user_id == mm_user_id,
            order=[connections.c.connected_at, connections.c.instance_id],
        )

    async def list_for_instance(self, instance_id: str) -> list[Connection]:
        return await self._select(connections.c.instance_id == instance_id, order=[connections.c.mm_user_id])

    async def find_by_jira_user(self, instance_id: str, account_id_or_name: str) -> Connection | None:
        """The Mattermost user connected as this Jira user (accountId on Cloud, username on Server).
        When several Mattermost users connected the same Jira account, the latest connection wins."""
        if not account_id_or_name:
            return None
        c = connections.c
        found = await self._select(
            c.instance_id == instance_id,
            sa.or_(c.jira_account_id == account_id_or_name, c.jira_name == account_id_or_name),
            order=[c.updated_at.desc(), c.mm_user_id],
        )
        return found[0] if found else None

    async def count(self, instance_id: str | None = None) -> int:
        stmt = sa.select(sa.func.count()).select_from(connections)
        if instance_id is not None:
            stmt = stmt.where(connections.c.instance_id == instance_id)
        async with self._db.read() as conn:
            return int(await conn.scalar(stmt) or 0)

    # ------------------------------------------------------------------------------ changes

    async def upsert(self, connection: Connection, *, now: datetime) -> Connection:
        """Store a new connection, or replace the user's connection to that instance (a reconnect);
        returns it as stored (revision and timestamps set)."""
        row = {
            "mm_user_id": connection.mm_user_id,
            "instance_id": connection.instance_id,
            "jira_account_id": connection.identity.account_id,
            "jira_name": connection.identity.name,
            "display_name": connection.identity.display_name,
            "email": connection.identity.email,
            "credentials": self._seal(connection.mm_user_id, connection.instance_id, connection.secret),
            "auth_type": secret_auth_type(connection.secret).value,
            "settings": connection.notifications.to_json(),
            "revision": 1,
            "connected_at": now,
            "updated_at": now,
        }
        stmt = self._db.insert(connections).values(**row)
        excluded = stmt.excluded
        stmt = stmt.on_conflict_do_update(
            index_elements=[connections.c.mm_user_id, connections.c.instance_id],
            set_={
                **{k: excluded[k] for k in row if k not in ("mm_user_id", "instance_id", "revision")},
                "revision": connections.c.revision + 1,
            },
        ).returning(connections.c.revision)
        async with self._db.write() as conn:
            revision = (await conn.execute(stmt)).scalar_one()
        return Connection(
            mm_user_id=connection.mm_user_id,
            instance_id=connection.instance_id,
            identity=connection.identity,
            secret=connection.secret,
            connected_at=now,
            updated_at=now,
            notifications=connection.notifications,
            revision=int(revision),
        )

    async def replace_secret(
        self, mm_user_id: str, instance_id: str, secret: Secret, *, revision: int, now: datetime
    ) -> bool:
        """Store new credentials only if the row is still at `revision` (nobody refreshed or
        reconnected meanwhile). False: the row changed or is gone; read it again."""
        stmt = (
            sa.update(connections)
            .where(self._key(mm_user_id, instance_id), connections.c.revision == revision)
            .values(
                credentials=self._seal(mm_user_id, instance_id, secret),
                auth_type=secret_auth_type(secret).value,
                revision=connections.c.revision + 1,
                updated_at=now,
            )
            .returning(connections.c.revision)
        )
        async with self._db.write() as conn:
            return (await conn.execute(stmt)).first() is not None

    async def set_notifications(
        self, mm_user_id: str, instance_id: str, settings: NotificationSettings, *, now: datetime
    ) -> bool:
        stmt = (
            sa.update(connections)
            .where(self._key(mm_user_id, instance_id))
            # No revision bump: a refresh running meanwhile must still be able to store its token.
            .values(settings=settings.to_json(), updated_at=now)
            .returning(connections.c.revision)
        )
        async with self._db.write() as conn:
            return (await conn.execute(stmt)).first() is not None

    async def delete(self, mm_user_id: str, instance_id: str, *, revision: int | None = None) -> bool:
        """Remove the connection; with `revision`, only if the row is still that version."""
        where = [self._key(mm_user_id, instance_id)]
        if revision is not None:
            where.append(connections.c.revision == revision)
        stmt = sa.delete(connections).where(*where).returning(connections.c.mm_user_id)
        async with self._db.write() as conn:
            return (await conn.execute(stmt)).first() is not None

    async def reseal_all(self, *, now: datetime) -> int:
        """Seal again, with the current key, every row sealed with an older one (after a key
        rotation); returns how many rows changed. Rows that do not open are left alone."""
        async with self._db.read() as conn:
            rows = (await conn.execute(sa.select(connections))).all()
        changed = 0
        for row in rows:
            if self._cipher.is_current(row.credentials):
                continue
            found = self._connection(row)
            if found is not None and await self.replace_secret(
                found.mm_user_id, found.instance_id, found.secret, revision=found.revision, now=now
            ):
                changed += 1
        return changed

    # ------------------------------------------------------------------------------- prefs

    async def get_prefs(self, mm_user_id: str) -> UserPrefs:
        """The user's preferences (all unset when they have none)."""
        async with self._db.read() as conn:
            row = (
                await conn.execute(sa.select(user_prefs).where(user_prefs.c.mm_user_id == mm_user_id))
            ).first()
        if row is None:
            return UserPrefs(mm_user_id=mm_user_id)
        return UserPrefs(
            mm_user_id=mm_user_id,
            default_instance=row.default_instance,
            last_project=row.last_project,
            updated_at=row.updated_at,
        )

    async def set_prefs(
        self,
        mm_user_id: str,
        *,
        now: datetime,
        default_instance: str | None = UNSET,
        last_project: str | None = UNSET,
    ) -> UserPrefs:
        """Change the given preferences (None clears one); the others stay as they are."""
        changes: dict[str, Any] = {"updated_at": now}
        if default_instance is not UNSET:
            changes["default_instance"] = default_instance
        if last_project is not UNSET:
            changes["last_project"] = last_project
        stmt = self._db.insert(user_prefs).values(mm_user_id=mm_user_id, **changes)
        stmt = stmt.on_conflict_do_update(
            index_elements=[user_prefs.c.mm_user_id], set_={k: stmt.excluded[k] for k in changes}
        )
        async with self._db.write() as conn:
            await conn.execute(stmt)
        return await self.get_prefs(mm_user_id)
