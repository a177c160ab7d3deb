"""Posted channel spend: one row per channel and day, overriding the config for that day."""

from __future__ import annotations

from collections import defaultdict
from datetime import date

import sqlalchemy as sa

from services.insights.money import from_units, to_units
from services.insights.spend import DaySpend
from services.insights.store import channel_spend
from shared.clock import Clock, utc_now
from shared.db import UnitOfWork
from shared.db.statements import upsert


class SpendRepository:
    """Reads and writes posted spend in a unit of work (never commits)."""

    def __init__(self, uow: UnitOfWork, clock: Clock = utc_now) -> None:
        self.uow = uow
        self.clock = clock

    async def put(self, channel: str, spend: DaySpend) -> None:
        """Store (or replace) a channel's spend of one day."""
        changes = {
            "amount_units": to_units(spend.amount),
            "impressions": spend.impressions,
            "clicks": spend.clicks,
            "updated_at": self.clock(),
        }
        values = {"channel": channel, "day": spend.day, **changes}
        statement = upsert(channel_spend, self.uow.dialect, ["channel", "day"], values, changes)
        await self.uow.session.execute(statement)

    async def posted(
        self, first_day: date, last_day: date, channel: str | None = None
    ) -> dict[str, list[DaySpend]]:
        """Posted spend per channel for the days first_day … last_day."""
        query = sa.select(channel_spend).where(channel_spend.c.day.between(first_day, last_day))
        if channel is not None:
            query = query.where(channel_spend.c.channel == channel)
        out: dict[str, list[DaySpend]] = defaultdict(list)
        for row in (await self.uow.session.execute(query.order_by(channel_spend.c.day))).all():
            out[row.channel].append(
                DaySpend(row.day, from_units(row.amount_units), row.impressions, row.clicks)
            )
        return dict(out)
