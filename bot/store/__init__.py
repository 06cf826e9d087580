"""Persistence: webhook inbox, deliveries (with dead letters), subscriptions, issue threads, small values.

`Database.open(url)` gives the SQL implementation (SQLite or PostgreSQL); `bot.store.interfaces`
holds the protocols and row types the rest of the bot depends on.
"""

from bot.store.db import Database, make_engine, normalise_database_url
from bot.store.interfaces import (
    Delivery,
    DeliveryRepository,
    DeliveryStatus,
    InboxItem,
    InboxRepository,
    InboxStatus,
    KeyValueRepository,
    NewDelivery,
    Store,
    SubscriptionRecord,
    SubscriptionRepository,
    SubscriptionSource,
    ThreadRepository,
)
from bot.store.migrations import LATEST_VERSION, SchemaTooNewError, migrate
from bot.store.subscriptions import config_subscription_id

__all__ = [
    "LATEST_VERSION",
    "Database",
    "Delivery",
    "DeliveryRepository",
    "DeliveryStatus",
    "InboxItem",
    "InboxRepository",
    "InboxStatus",
    "KeyValueRepository",
    "NewDelivery",
    "SchemaTooNewError",
    "Store",
    "SubscriptionRecord",
    "SubscriptionRepository",
    "SubscriptionSource",
    "ThreadRepository",
    "config_subscription_id",
    "make_engine",
    "migrate",
    "normalise_database_url",
]
