"""Driving a delivery worker by hand until one delivery settles, for the outage tests."""

from __future__ import annotations

import asyncio

from bot.pipeline.delivery import DeliveryWorker
from bot.store.interfaces import DeliveryRepository, DeliveryStatus


async def run_until_settled(
    worker: DeliveryWorker,
    deliveries: DeliveryRepository,
    delivery_id: int,
    timeout: float = 30.0,  # noqa: ASYNC109
) -> None:
    """Run the worker until the delivery is delivered or dead."""
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        await worker.run_once()
        d = await deliveries.get(delivery_id)
        assert d is not None
        if d.status != DeliveryStatus.PENDING.value:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"delivery {delivery_id} still pending after {timeout} s")
