"""The delivery worker: claims due deliveries, sends them, records how each ended.

One round:
1. in a short transaction, due rows are claimed and leased (`delivery_claims`);
2. outside any transaction (SQLite's write lock is never held while a CRM
   thinks), the destinations are called (`destinations.sending`);
3. in a second transaction each row is marked delivered, rescheduled or failed
   (`delivery_results`).

A crash between 2 and 3 leaves the row leased; when the lease runs out it is
claimed again (claims > 1). On SQLite, where one process owns the database, the
restarted worker frees such rows before its first round instead of waiting.
Destinations are idempotent on such a re-claim: CRMs upsert on email, the file
destination looks for the delivery id, webhooks carry it as Idempotency-Key.

The worker is woken right after a routing transaction commits (under load, rounds
start at most every `min_interval`, so leads routed close together share one);
polling is only the fallback.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime, timedelta

from services.router import messagebus, queries
from services.router.commands import (
    ClaimDueDeliveries,
    RecordDeliveryResults,
    ReleaseStaleClaims,
)
from services.router.delivery_claims import lease_seconds
from services.router.destinations import DeliveryResult, Destination, Item
from services.router.destinations.sending import send
from services.router.settings import RoutingConfig
from shared import metrics
from shared.clock import Clock, utc_now
from shared.db.uow import UnitOfWork
from shared.runtime.worker import PollingWorker, retry_while_transient

log = logging.getLogger(__name__)

GAUGE_SECONDS = 5.0


class DeliveryWorker(PollingWorker):
    """Runs delivery rounds; `wake()` starts one at once (at most one every 25 ms)."""

    name = "delivery"
    min_interval = 0.025

    def __init__(
        self,
        uow_factory: Callable[[], UnitOfWork],
        config: RoutingConfig,
        destinations: dict[str, Destination],
        ack_url: Callable[[str], str],
        clock: Clock = utc_now,
    ) -> None:
        super().__init__(clock)
        self.config = config
        self.destinations = destinations
        self.bus = messagebus.delivery_bus(uow_factory, config, destinations, ack_url)
        self._last_gauges = 0.0
        # When the next delivery is due, as the last round's record read it (a 1-tuple;
        # None: unknown, read it again).
        self._next_due: tuple[datetime | None] | None = None
        self._started = False

    async def round(self) -> float:
        """A round, the queue gauges now and then; at once again after a full round, else
        when the next delivery is due (at most `delivery.poll_seconds`)."""
        processed = await self.run_once()
        await self._refresh_gauges()
        if processed >= self.config.delivery.batch_size:
            return 0.0  # more may be due at once
        return await self._idle_seconds()

    async def run_once(self) -> int:
        """One round: claim, deliver, record. Returns how many deliveries it handled."""
        now = self.clock()
        self._next_due = None
        claimed = await self._claim(now)
        if not claimed:
            return 0
        results = await self._deliver(claimed)
        self._next_due = (await self._record_until_stored(claimed, results, now),)
        return sum(len(items) for items in claimed.values())

    async def _claim(self, now: datetime) -> dict[str, list[Item]]:
        if not self._started:
            # Before this worker's first claim, the claims of a killed predecessor go.
            released: int = await self.bus.handle(ReleaseStaleClaims())
            self._started = True
            if released:
                log.info("released %d delivery claim(s) of a previous process", released)
        claimed: dict[str, list[Item]] = await self.bus.handle(ClaimDueDeliveries(now))
        return claimed

    async def _deliver(self, claimed: dict[str, list[Item]]) -> dict[str, DeliveryResult]:
        return await send(self.destinations, claimed, self.config.delivery.timeout_seconds * 4)

    async def _record_until_stored(
        self,
        claimed: dict[str, list[Item]],
        results: dict[str, DeliveryResult],
        claimed_at: datetime,
    ) -> datetime | None:
        # The destinations have answered: losing those answers to a database outage would
        # mean sending everything again once the lease runs out. Keep trying while it holds.
        total = sum(len(items) for items in claimed.values())
        give_up = claimed_at + timedelta(seconds=lease_seconds(self.config, total))
        next_due: datetime | None = await retry_while_transient(
            lambda: self.bus.handle(RecordDeliveryResults(claimed, results, self.clock())),
            lambda: (give_up - self.clock()).total_seconds(),
            "recording deliveries",
            log,
        )
        return next_due

    async def _idle_seconds(self) -> float:
        poll = self.config.delivery.poll_seconds
        known = self._next_due

        async def next_due() -> datetime | None:
            # Rows queued since are announced by `wake()`; the poll bounds the rest.
            if known is not None:
                return known[0]
            return await queries.next_due_at(self.bus.uow_factory)

        return await self.seconds_until_due(next_due, poll)

    async def _refresh_gauges(self) -> None:
        if time.monotonic() - self._last_gauges < GAUGE_SECONDS:
            return
        self._last_gauges = time.monotonic()
        try:
            depth = await queries.queue_depth(self.bus.uow_factory)
        except Exception:
            log.debug("queue depth refresh failed", exc_info=True)
            return
        for name in set(depth) | set(self.destinations):
            metrics.delivery_queue_depth.labels(name).set(depth.get(name, 0))
