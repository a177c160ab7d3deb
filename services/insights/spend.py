"""A channel's spend over the days of a window: posted days, configured days, monthly spread."""

from __future__ import annotations

import calendar
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from fractions import Fraction

from shared.config import Channel


@dataclass(frozen=True)
class DaySpend:
    """Spend and reach of one channel on one day."""

    day: date
    amount: Fraction
    impressions: int | None = None
    clicks: int | None = None


@dataclass(frozen=True)
class SpendTotal:
    """A channel's spend and reach over a window."""

    amount: Fraction = Fraction(0)
    impressions: int | None = None
    clicks: int | None = None


def channel_spend(
    config: Channel | None,
    posted: Iterable[DaySpend],
    first_day: date,
    last_day: date,
    today: date | None = None,
) -> SpendTotal:
    """Spend of the days first_day … last_day.

    A day's spend is, first match wins: the amount posted for that day, the
    config's `spend` entry for that day, else the config's `monthly_spend`
    spread evenly over the days of its month. The monthly spread accrues day by
    day: days after `today` have none yet (day entries count whatever their date).
    Impressions and clicks come only from day entries (posted or configured);
    None when no day had them.
    """
    days: dict[date, DaySpend] = {}
    if config is not None:
        for entry in config.spend:
            if first_day <= entry.date <= last_day:
                days[entry.date] = DaySpend(
                    entry.date, Fraction(entry.amount), entry.impressions, entry.clicks
                )
    for day_spend in posted:
        if first_day <= day_spend.day <= last_day:
            days[day_spend.day] = day_spend
    amount = sum((d.amount for d in days.values()), Fraction(0))
    accrued_until = last_day if today is None else min(last_day, today)
    if config is not None and config.monthly_spend:
        monthly = Fraction(config.monthly_spend)
        for month_start, month_end in _months(first_day, accrued_until):
            in_month = (month_end - month_start).days + 1
            overridden = sum(1 for d in days if month_start <= d <= month_end)
            month_days = calendar.monthrange(month_start.year, month_start.month)[1]
            amount += monthly * (in_month - overridden) / month_days
    return SpendTotal(
        amount=amount,
        impressions=sum_known(d.impressions for d in days.values()),
        clicks=sum_known(d.clicks for d in days.values()),
    )


def _months(first_day: date, last_day: date) -> Iterable[tuple[date, date]]:
    """The part of each calendar month inside first_day … last_day."""
    start = first_day
    while start <= last_day:
        month_days = calendar.monthrange(start.year, start.month)[1]
        end = min(start.replace(day=month_days), last_day)
        yield start, end
        start = end + timedelta(days=1)


def sum_known(values: Iterable[int | None]) -> int | None:
    known = [v for v in values if v is not None]
    return sum(known) if known else None
