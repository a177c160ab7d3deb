"""The speed-to-lead checker: every `sla.check_seconds`, assignments nobody acknowledged
in time are reassigned (or kept with their rep) and escalated."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from services.router import messagebus
from services.router.commands import CheckSla
from services.router.settings import RoutingConfig
from shared.clock import Clock, utc_now
from shared.db.uow import UnitOfWork
from shared.runtime.worker import PollingWorker


class SlaWorker(PollingWorker):
    """Looks for unacknowledged assignments past their SLA every `sla.check_seconds`."""

    name = "sla"

    def __init__(
        self,
        uow_factory: Callable[[], UnitOfWork],
        config: RoutingConfig,
        on_breach: Callable[[], None],
        clock: Clock = utc_now,
    ) -> None:
        super().__init__(clock)
        self.config = config
        self.on_breach = on_breach
        self.bus = messagebus.bus(uow_factory, config, clock=clock)

    async def check(self, now: datetime | None = None) -> list[str]:
        """One check at `now`: reassign and escalate what breached; returns their ids."""
        breached: list[str] = await self.bus.handle(CheckSla(now or self.clock()))
        if breached:
            self.on_breach()
        return breached

    async def round(self) -> float:
        await self.check()
        return self.config.sla.check_seconds
