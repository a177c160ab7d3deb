"""The decay sweep: a worker whose rounds hand `SweepDecay` to scoring's bus."""

from __future__ import annotations

import logging
import uuid
from dataclasses import KW_ONLY, dataclass

from services.scoring.commands import SweepDecay
from shared.clock import Clock, utc_now
from shared.messagebus import MessageBus
from shared.runtime.worker import PollingWorker

log = logging.getLogger(__name__)


@dataclass(eq=False)
class DecayWorker(PollingWorker):
    """The periodic sweep: leads whose engagement has faded past a threshold are regraded."""

    name = "decay sweep"

    bus: MessageBus
    _: KW_ONLY
    interval_seconds: float
    batch_size: int
    clock: Clock = utc_now

    async def round(self) -> float:
        """One full sweep, then wait for the next."""
        await self.sweep()
        return self.interval_seconds

    async def sweep(self) -> int:
        """One full sweep, a transaction per `batch_size` leads; returns how many leads
        changed grade or sales-readiness."""
        run_id = f"decay-{uuid.uuid4()}"
        regraded = 0
        while True:
            command = SweepDecay(now=self.clock(), limit=self.batch_size, run_id=run_id)
            seen, changed = await self.bus.handle(command)
            regraded += changed
            if seen < self.batch_size:
                break
        if regraded:
            log.info("decay sweep regraded %d lead(s)", regraded)
        return int(regraded)
