"""Calling the destinations of a delivery round: every destination at once, each in chunks
of its batch size, at most its concurrency in flight, each call bounded in time."""

from __future__ import annotations

import asyncio
import logging
import time

from services.router.destinations.base import RETRY, DeliveryResult, Destination, Item
from shared import metrics

log = logging.getLogger(__name__)


async def send(
    destinations: dict[str, Destination], claimed: dict[str, list[Item]], timeout: float
) -> dict[str, DeliveryResult]:
    """Deliver the claimed items; how each ended, by delivery id (a call that raised or
    took longer than `timeout` is a retry for each of its items)."""
    results: dict[str, DeliveryResult] = {}

    async def one_destination(name: str, items: list[Item]) -> None:
        destination = destinations[name]
        size = destination.max_batch
        chunks = [items[i : i + size] for i in range(0, len(items), size)]
        limiter = asyncio.Semaphore(destination.concurrency)

        async def one_chunk(chunk: list[Item]) -> None:
            async with limiter:
                if destination.pause is not None:
                    # An earlier answer asked us to wait: the rest waits too, no attempt used.
                    waiting = DeliveryResult(
                        RETRY,
                        "the destination asked to wait (rate limit)",
                        retry_after=destination.pause.seconds,
                        counts_as_attempt=False,
                    )
                    results.update((item.delivery_id, waiting) for item in chunk)
                    return
                started = time.perf_counter()
                try:
                    answers = await asyncio.wait_for(destination.deliver_batch(chunk), timeout)
                except Exception as exc:
                    if not isinstance(exc, TimeoutError):
                        log.exception("destination failed", extra={"destination": name})
                    error = f"{type(exc).__name__}: {exc}"[:300]
                    answers = [DeliveryResult(RETRY, error) for _ in chunk]
                metrics.delivery_duration_seconds.labels(name).observe(
                    time.perf_counter() - started
                )
                for item, answer in zip(chunk, answers, strict=True):
                    results[item.delivery_id] = answer

        await asyncio.gather(*(one_chunk(chunk) for chunk in chunks))

    await asyncio.gather(*(one_destination(n, items) for n, items in claimed.items()))
    return results
