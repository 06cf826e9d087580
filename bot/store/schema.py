"""The database schema (SQLAlchemy Core), shared by SQLite and PostgreSQL.

Every timestamp is a timezone-aware UTC datetime in Python. PostgreSQL stores it as `timestamptz`;
SQLite has no such type, so `UTCDateTime` stores naive UTC text (which sorts chronologically) and
gives an aware datetime back.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Dialect


class UTCDateTime(sa.types.TypeDecorator[datetime]):
    """A datetime column that only accepts aware datetimes and always returns aware UTC ones."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            # A naive datetime is ambiguous; refusing it keeps every stored instant comparable.
            raise ValueError(f"naive datetime given to the store: {value!r} (pass a UTC-aware datetime)")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


# JSONB on PostgreSQL (compact, comparable); plain JSON text elsewhere.
JSONType: sa.types.TypeEngine[Any] = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")

# The WHERE of a partial index over pending rows. A query uses such an index only when its own
# WHERE says the same with a literal (`PENDING` below), not a bound parameter.
_PENDING_ONLY: dict[str, Any] = {
    "sqlite_where": sa.text("status = 'pending'"),
    "postgresql_where": sa.text("status = 'pending'"),
}
# `status = PENDING` in a query that should use a partial index above.
PENDING: sa.ColumnElement[str] = sa.literal_column("'pending'", sa.String)
# The inbox's pending rows in id order, which its claim walks (bot.store.inbox).
PENDING_ID_INDEX = "ix_webhook_inbox_pending_id"

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "pk": "pk_%(table_name)s",
    }
)

schema_version = sa.Table(
    "schema_version",
    metadata,
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("applied_at", UTCDateTime, nullable=False),
)

webhook_inbox = sa.Table(
    "webhook_inbox",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    # X-Atlassian-Webhook-Identifier: Jira retries carry the same value, so a retry is stored once.
    sa.Column("dedupe_key", sa.String(255), nullable=True, unique=True),
    sa.Column("route", sa.String(32), nullable=False),  # "firehose" | "legacy"
    sa.Column("instance_id", sa.String(512), nullable=True),
    sa.Column("params", JSONType, nullable=False),
    sa.Column("body", sa.LargeBinary, nullable=False),
    sa.Column("received_at", UTCDateTime, nullable=False),
    # When the row may be claimed: received_at at first, later the retry time given to release().
    sa.Column("available_at", UTCDateTime, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # pending | done | ignored | failed
    sa.Column("outcome", sa.Text, nullable=True),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("lease_owner", sa.String(255), nullable=True),
    sa.Column("lease_until", UTCDateTime, nullable=True),
    sa.Column("processed_at", UTCDateTime, nullable=True),
    # Version 5: the issue the webhook is about ("instance|issue"), NULL when it names none. Rows
    # sharing it are processed one at a time in id order (see bot.store.inbox, claim).
    sa.Column("order_key", sa.String(1024), nullable=True),
    # Backlog counts and claims filter on status first.
    sa.Index(None, "status", "available_at"),
    # "Is there an earlier unfinished row of this issue?" for the per-issue order.
    sa.Index(None, "order_key", "status", "id"),
    # Version 6: claims walk the pending rows in id order and stop at their LIMIT, however long
    # the backlog (bot.store.inbox, claim); partial, so finished rows cost nothing.
    sa.Index(PENDING_ID_INDEX, "id", **_PENDING_ONLY),
)

deliveries = sa.Table(
    "deliveries",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    # No foreign key on purpose: old inbox rows are purged while their deliveries may be kept.
    sa.Column("inbox_id", sa.BigInteger, nullable=True, index=True),
    sa.Column("channel_id", sa.String(64), nullable=False),
    # Deliveries sharing an order_key (e.g. instance + issue key + channel) are posted in id order.
    sa.Column("order_key", sa.String(1024), nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),  # e.g. "channel_post"
    sa.Column("payload", JSONType, nullable=False),
    # Sent with every attempt so Mattermost drops a duplicate create after a timeout or a crash.
    sa.Column("pending_post_id", sa.String(64), nullable=False, unique=True),
    sa.Column("status", sa.String(16), nullable=False),  # pending | delivered | dead
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("next_attempt_at", UTCDateTime, nullable=False),
    sa.Column("last_error", sa.Text, nullable=True),
    sa.Column("lease_owner", sa.String(255), nullable=True),
    sa.Column("lease_until", UTCDateTime, nullable=True),
    # received_at of the webhook that caused it: delivered_at - received_at is the end-to-end latency.
    sa.Column("received_at", UTCDateTime, nullable=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("delivered_at", UTCDateTime, nullable=True),
    sa.Column("dead_at", UTCDateTime, nullable=True),
    sa.Column("post_id", sa.String(64), nullable=True),
    # Due-delivery scans and the backlog count.
    sa.Index(None, "status", "next_attempt_at"),
    # "Is there an older pending delivery with this order_key?" for the per-key ordering.
    sa.Index(None, "order_key", "status", "id"),
    # Version 6: claims walk the pending rows in (due time, id) order and stop at their LIMIT.
    sa.Index("ix_deliveries_pending_due", "next_attempt_at", "id", **_PENDING_ONLY),
)

subscriptions = sa.Table(
    "subscriptions",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("channel_id", sa.String(64), nullable=False, index=True),
    sa.Column("instance_id", sa.String(512), nullable=False, index=True),
    sa.Column("filters", JSONType, nullable=False),
    sa.Column("created_by", sa.String(64), nullable=False, server_default=""),
    sa.Column("source", sa.String(16), nullable=False),  # "db" | "config"
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
)

issue_threads = sa.Table(
    "issue_threads",
    metadata,
    sa.Column("instance_id", sa.String(512), primary_key=True),
    sa.Column("channel_id", sa.String(64), primary_key=True),
    sa.Column("issue_key", sa.String(255), primary_key=True),
    sa.Column("root_post_id", sa.String(64), nullable=False),
    sa.Column("expires_at", UTCDateTime, nullable=False, index=True),
)

kv = sa.Table(
    "kv",
    metadata,
    sa.Column("key", sa.String(255), primary_key=True),
    sa.Column("value", JSONType, nullable=True),
    sa.Column("expires_at", UTCDateTime, nullable=True, index=True),
)

# ------------------------------------------------------------------------- version 2: accounts

connections = sa.Table(
    "connections",
    metadata,
    sa.Column("mm_user_id", sa.String(64), primary_key=True),
    sa.Column("instance_id", sa.String(512), primary_key=True),
    # accountId on Jira Cloud, username on Server/Data Center: maps Jira users to Mattermost users.
    sa.Column("jira_account_id", sa.String(255), nullable=True),
    sa.Column("jira_name", sa.String(255), nullable=True),
    sa.Column("display_name", sa.String(255), nullable=False, server_default=""),
    sa.Column("email", sa.String(320), nullable=True),
    # Sealed with bot.accounts.crypto.TokenCipher: never a plaintext token.
    sa.Column("credentials", sa.Text, nullable=False),
    sa.Column("auth_type", sa.String(16), nullable=False),  # oauth2 | oauth1 | pat
    sa.Column("settings", JSONType, nullable=False),  # notification switches
    sa.Column("revision", sa.Integer, nullable=False, server_default="1"),
    sa.Column("connected_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Index(None, "instance_id", "jira_account_id"),
    sa.Index(None, "instance_id", "jira_name"),
)

user_prefs = sa.Table(
    "user_prefs",
    metadata,
    sa.Column("mm_user_id", sa.String(64), primary_key=True),
    sa.Column("default_instance", sa.String(512), nullable=True),
    sa.Column("last_project", sa.String(255), nullable=True),
    sa.Column("updated_at", UTCDateTime, nullable=False),
)

# --------------------------------------------------------------------------- version 3: change gate

gates = sa.Table(
    "gates",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    # The pipeline's Idempotency-Key: a retried POST returns the gate it opened.
    sa.Column("idempotency_key", sa.String(255), nullable=False, unique=True),
    sa.Column("body_hash", sa.String(128), nullable=False),
    sa.Column("request", JSONType, nullable=False),
    sa.Column("project", sa.String(255), nullable=False),
    sa.Column("environment", sa.String(255), nullable=False),
    sa.Column("version", sa.String(255), nullable=False),
    sa.Column("target", JSONType, nullable=False),  # instance, service desk, request type
    sa.Column("controlled", sa.Boolean, nullable=False),
    sa.Column("cr_id", sa.String(64), nullable=True),
    sa.Column("cr_key", sa.String(64), nullable=True),
    sa.Column("cr", JSONType, nullable=True),  # the latest snapshot read from Jira
    sa.Column("decision", sa.String(16), nullable=False),
    sa.Column("reason", sa.String(32), nullable=False),
    sa.Column("message", sa.Text, nullable=False),
    sa.Column("retry_after_seconds", sa.Integer, nullable=True),
    sa.Column("status", sa.String(16), nullable=False),  # active | done
    sa.Column("deployment", sa.String(32), nullable=True),  # latest deployment event kind
    sa.Column("root_post_id", sa.String(64), nullable=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Column("decided_at", UTCDateTime, nullable=True),
    sa.Column("deadline", UTCDateTime, nullable=False),
    # Bumped by every change: updates are conditional on it, and long polls watch it.
    sa.Column("revision", sa.Integer, nullable=False, server_default="1"),
    # The poller's scan: active gates by decision.
    sa.Index(None, "status", "decision"),
    sa.Index(None, "project", "environment", "version"),
    sa.Index(None, "created_at"),
)

gate_links = sa.Table(
    "gate_links",
    metadata,
    # One row per deployment (instance + project + version + environment): the CR it is linked to,
    # or, while cr_id is NULL, the gate that is looking it up or creating it (a lease, so a crashed
    # call does not block the deployment forever).
    sa.Column("instance", sa.String(512), primary_key=True),
    sa.Column("project", sa.String(255), primary_key=True),
    sa.Column("version", sa.String(255), primary_key=True),
    sa.Column("environment", sa.String(255), primary_key=True),
    sa.Column("cr_id", sa.String(64), nullable=True),  # Jira issue id: keys change when issues move
    sa.Column("cr_key", sa.String(64), nullable=True),
    sa.Column("owner", sa.String(32), nullable=True),
    sa.Column("claim_until", UTCDateTime, nullable=True),
    sa.Column("updated_at", UTCDateTime, nullable=False),
)

gate_events = sa.Table(
    "gate_events",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("gate_id", sa.String(32), nullable=False),
    # The pipeline's event id, or "comment:<kind>" for a comment the bot posted on the CR:
    # the unique pair makes a repeated report, or a second comment, a no-op.
    sa.Column("event_id", sa.String(255), nullable=False),
    sa.Column("kind", sa.String(64), nullable=False),
    sa.Column("detail", sa.Text, nullable=False, server_default=""),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.UniqueConstraint("gate_id", "event_id"),
)

# --------------------------------------------------------------------------- version 4: duty leases

leases = sa.Table(
    "leases",
    metadata,
    # A duty that one replica of several does at a time ("gate-poller", "housekeeping", …), or one
    # item of work (a Mattermost post being handled): held by `owner` until `expires_at`.
    sa.Column("name", sa.String(255), primary_key=True),
    sa.Column("owner", sa.String(255), nullable=False),
    # Raised each time the lease changes hands: a fencing token for whoever wants one.
    sa.Column("token", sa.BigInteger, nullable=False),
    sa.Column("acquired_at", UTCDateTime, nullable=False),
    sa.Column("expires_at", UTCDateTime, nullable=False, index=True),
)

# ------------------------------------------------------------------ version 5: replica heartbeats

replicas = sa.Table(
    "replicas",
    metadata,
    # A running `serve` process, by the owner id its claims carry (bot.store.replicas): rows it
    # holds are taken over once its heartbeat is older than the liveness timeout.
    sa.Column("owner", sa.String(255), primary_key=True),
    sa.Column("started_at", UTCDateTime, nullable=False),
    sa.Column("beat_at", UTCDateTime, nullable=False),
)
