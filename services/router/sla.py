"""The speed-to-lead checker: every `sla.check_seconds`, assignments nobody acknowledged
in time are reassigned (or kept with their rep) and escalated."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from services.router import messagebus
from services.router.commands import CheckSla
from services.router.settings import RoutingConfig
from shared.clock import Clock, utc_now
from shared.db.uow import UnitOfWork
from shared.runtime.worker import PollingWorker


@dataclass(eq=False)
class SlaWorker(PollingWorker):
    """Looks for unacknowledged assignments past their SLA every `sla.check_seconds`."""

    name = "sla"

    uow_factory: Callable[[], UnitOfWork]
    config: RoutingConfig
    on_breach: Callable[[], None]
    clock: Clock = utc_now

    def __post_init__(self) -> None:
        super().__post_init__()
        self.bus = messagebus.bus(self.uow_factory, self.config, clock=self.clock)

    async def check(self, now: datetime | None = None) -> list[str]:
        """One check at `now`: reassign and escalate what breached; returns their ids."""
        breached: list[str] = await self.bus.handle(CheckSla(now or self.clock()))
        if breached:
            self.on_breach()
        return breached

    async def round(self) -> float:
        await self.check()
        return self.config.sla.check_seconds
