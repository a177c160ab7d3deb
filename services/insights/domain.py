"""The funnel arithmetic: pure functions, no I/O.

Money is exact until the last step: a channel's amounts are summed as fractions
and rounded half-up to the cent once. The totals add the channels' shown (rounded)
spend and revenue, so each column adds up. Costs per lead (per sales-ready lead,
per conversion) and ROAS are computed from the rounded amounts shown on the same
row, so a reader who divides the numbers on the page gets the same result; with
no spend there is no cost per lead (undefined, not free). Rates are fractions of
one, rounded half-up to four decimals. Speed-to-lead is the median and the
nearest-rank 90th percentile of the stored capture → routing durations.
"""

from __future__ import annotations

import calendar
import csv
import io
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer

from shared.config import Channel, ChannelsConfig

MONEY_SCALE = 10_000
"""Stored money is an integer count of ten-thousandths: exact on SQLite and PostgreSQL."""
MAX_WINDOW_DAYS = 36_600
GRADES = ("hot", "warm", "cold")

# How sure we are of a lead's channel: a lead belongs to the channel of its first touch.
RANK_NONE = 0
RANK_OTHER_EVENT = 1  # lead.scored / lead.routed name a channel before capture is seen
RANK_REPEAT_TOUCH = 2  # a repeat touch carries the person's first touch
RANK_FIRST_TOUCH = 3  # the lead.captured that created the lead


# ---------------------------------------------------------------------------
# Money, rates, percentiles
# ---------------------------------------------------------------------------


def to_units(amount: Decimal | Fraction) -> int:
    """A money amount as stored: ten-thousandths, rounded half-up."""
    return _round_half_up(Fraction(amount) * MONEY_SCALE)


def from_units(units: int) -> Fraction:
    """Stored units back to an exact amount."""
    return Fraction(units, MONEY_SCALE)


def round_to(value: Fraction | Decimal | int, places: int) -> Decimal:
    """`value` rounded half-up (away from zero on a tie) to `places` decimals."""
    scaled = _round_half_up(Fraction(value) * 10**places)
    return Decimal(scaled).scaleb(-places)


def money(value: Fraction | Decimal | int) -> Decimal:
    """Rounded half-up to the cent."""
    return round_to(value, 2)


def rate(numerator: int | Decimal, denominator: int | Decimal | None) -> Decimal | None:
    """numerator / denominator as a fraction with 4 decimals; None when nothing to divide by."""
    if not denominator:
        return None
    return round_to(Fraction(numerator) / Fraction(denominator), 4)


def cost_per(spend: Decimal, count: int) -> Decimal | None:
    """Spend per unit, to the cent; None when the count or the spend is zero (undefined).

    A channel without spend (direct, organic) did not cost 0.00 per lead: its cost is unknown.
    """
    if count <= 0 or spend <= 0:
        return None
    return money(Fraction(spend) / count)


def median(sorted_values: Sequence[int]) -> Fraction | None:
    """The median of sorted values (the mean of the middle two when their number is even)."""
    n = len(sorted_values)
    if n == 0:
        return None
    middle = n // 2
    if n % 2:
        return Fraction(sorted_values[middle])
    return Fraction(sorted_values[middle - 1] + sorted_values[middle], 2)


def percentile(sorted_values: Sequence[int], pct: int) -> Fraction | None:
    """The nearest-rank percentile: the smallest value with at least pct% at or below it."""
    n = len(sorted_values)
    if n == 0:
        return None
    rank = max(1, math.ceil(pct * n / 100))
    return Fraction(sorted_values[rank - 1])


def _round_half_up(value: Fraction) -> int:
    whole, rest = divmod(abs(value.numerator), value.denominator)
    if 2 * rest >= value.denominator:
        whole += 1
    return whole if value >= 0 else -whole


# ---------------------------------------------------------------------------
# The report window
# ---------------------------------------------------------------------------


class InvalidWindow(ValueError):
    """A `since` / `until` that cannot be a report window; `field` names which."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


@dataclass(frozen=True)
class Window:
    """Leads captured in [start, end); spend of the days first_day … last_day."""

    start: datetime
    end: datetime

    @property
    def first_day(self) -> date:
        return self.start.date()

    @property
    def last_day(self) -> date:
        return (self.end - timedelta(microseconds=1)).date()

    @property
    def days(self) -> int:
        return (self.last_day - self.first_day).days + 1


def parse_bound(text: str, field: str, *, end: bool) -> datetime:
    """A date (whole day, UTC) or an ISO 8601 datetime (naive means UTC) as a UTC instant.

    A date as `until` includes that whole day: the bound is the next midnight.
    """
    text = text.strip()
    try:
        if not any(mark in text for mark in ("T", "t", " ", ":")):
            day = date.fromisoformat(text)
            if end:
                day = day + timedelta(days=1)
            return datetime.combine(day, time(), UTC)
        moment = datetime.fromisoformat(text)
    except (ValueError, OverflowError):
        raise InvalidWindow(
            field, f"{field} must be a date (2026-11-01) or an ISO 8601 datetime, got {text!r}"
        ) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def make_window(since: str | None, until: str | None, today: date) -> Window:
    """The report window; by default the current month up to and including today (UTC)."""
    end = (
        parse_bound(until, "until", end=True)
        if until
        else datetime.combine(today + timedelta(days=1), time(), UTC)
    )
    if since:
        start = parse_bound(since, "since", end=False)
    else:
        first = (end - timedelta(microseconds=1)).date().replace(day=1)
        start = datetime.combine(first, time(), UTC)
    if start >= end:
        raise InvalidWindow("until", "until must be later than since")
    window = Window(start, end)
    if window.days > MAX_WINDOW_DAYS:
        raise InvalidWindow("since", f"the window may span at most {MAX_WINDOW_DAYS} days")
    return window


# ---------------------------------------------------------------------------
# Spend
# ---------------------------------------------------------------------------


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
        impressions=_sum_known(d.impressions for d in days.values()),
        clicks=_sum_known(d.clicks for d in days.values()),
    )


def _months(first_day: date, last_day: date) -> Iterable[tuple[date, date]]:
    """The part of each calendar month inside first_day … last_day."""
    start = first_day
    while start <= last_day:
        month_days = calendar.monthrange(start.year, start.month)[1]
        end = min(start.replace(day=month_days), last_day)
        yield start, end
        start = end + timedelta(days=1)


def _sum_known(values: Iterable[int | None]) -> int | None:
    known = [v for v in values if v is not None]
    return sum(known) if known else None


# ---------------------------------------------------------------------------
# One lead's facts, merged from events in any order
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class LeadFacts:
    """What the read model knows of one lead: ids, channel, grade, milestones. No PII.

    Every merge is order-independent (earliest time wins, newest score wins, a
    surer channel source wins), so events of one lead may arrive across topics
    in any order and the result is the same.
    """

    channel: str | None = None
    channel_rank: int = RANK_NONE
    captured_at: datetime | None = None
    is_test: bool = False
    grade: str | None = None
    graded_at: datetime | None = None
    sales_ready_at: datetime | None = None
    routed_at: datetime | None = None
    speed_to_lead_ms: int | None = None
    converted_at: datetime | None = None
    disqualified_at: datetime | None = None
    engaged_at: datetime | None = None
    unsubscribed_at: datetime | None = None
    delivery_failed_at: datetime | None = None
    erased_at: datetime | None = None

    def _with(self, **changes: Any) -> LeadFacts:
        # dataclasses.replace without running __init__ again (a tenth of its cost): the
        # consumer folds every event of every lead through these merges.
        facts = object.__new__(LeadFacts)
        facts.__dict__.update(self.__dict__, **changes)
        return facts

    def with_channel(self, channel: str, rank: int) -> LeadFacts:
        """Take `channel` if its source is surer than the one we have."""
        if rank <= self.channel_rank:
            return self
        return self._with(channel=channel, channel_rank=rank)

    def captured(
        self,
        *,
        first_touch_channel: str,
        is_new_lead: bool,
        is_test: bool,
        captured_at: datetime,
    ) -> LeadFacts:
        """A submission of this person (the first, or a repeat touch)."""
        facts = self.with_channel(
            first_touch_channel, RANK_FIRST_TOUCH if is_new_lead else RANK_REPEAT_TOUCH
        )
        if is_new_lead:
            facts = facts._with(is_test=is_test)
        return facts._with(captured_at=_earliest(facts.captured_at, captured_at))

    def scored(
        self,
        *,
        channel: str,
        grade: str,
        sales_ready: bool,
        is_test: bool,
        captured_at: datetime,
        scored_at: datetime,
    ) -> LeadFacts:
        """A (re)score: the newest grade is the lead's grade; sales-ready once is enough."""
        facts = self.with_channel(channel, RANK_OTHER_EVENT)
        if facts.channel_rank < RANK_FIRST_TOUCH:
            facts = facts._with(is_test=is_test)
        if facts.graded_at is None or scored_at >= facts.graded_at:
            facts = facts._with(grade=grade, graded_at=scored_at)
        if sales_ready:
            facts = facts._with(sales_ready_at=_earliest(facts.sales_ready_at, scored_at))
        return facts._with(captured_at=_earliest(facts.captured_at, captured_at))

    def routed(self, *, channel: str, captured_at: datetime, routed_at: datetime) -> LeadFacts:
        """An assignment to a rep; the first one sets speed-to-lead. Routed implies sales-ready."""
        facts = self.with_channel(channel, RANK_OTHER_EVENT)
        facts = facts._with(
            captured_at=_earliest(facts.captured_at, captured_at),
            sales_ready_at=_earliest(facts.sales_ready_at, routed_at),
        )
        if facts.routed_at is None or routed_at < facts.routed_at:
            elapsed = routed_at - captured_at
            facts = facts._with(
                routed_at=routed_at,
                speed_to_lead_ms=max(0, round(elapsed.total_seconds() * 1000)),
            )
        return facts

    def converted(self, occurred_at: datetime) -> LeadFacts:
        return self._with(converted_at=_earliest(self.converted_at, occurred_at))

    def disqualified(self, occurred_at: datetime) -> LeadFacts:
        return self._with(disqualified_at=_earliest(self.disqualified_at, occurred_at))

    def engaged(self, occurred_at: datetime) -> LeadFacts:
        return self._with(engaged_at=_earliest(self.engaged_at, occurred_at))

    def unsubscribed(self, occurred_at: datetime) -> LeadFacts:
        return self._with(unsubscribed_at=_earliest(self.unsubscribed_at, occurred_at))

    def delivery_failed(self, failed_at: datetime) -> LeadFacts:
        return self._with(delivery_failed_at=_earliest(self.delivery_failed_at, failed_at))

    def erased(self, erased_at: datetime) -> LeadFacts:
        return self._with(erased_at=_earliest(self.erased_at, erased_at))


def _earliest(current: datetime | None, candidate: datetime) -> datetime:
    return candidate if current is None or candidate < current else current


# ---------------------------------------------------------------------------
# The report
# ---------------------------------------------------------------------------


@dataclass
class ChannelFacts:
    """Counted facts of one channel in a window, as read from the store."""

    leads: int = 0
    repeat_touches: int = 0
    grades: dict[str, int] = field(default_factory=dict)
    sales_ready: int = 0
    routed: int = 0
    converted: int = 0
    disqualified: int = 0
    engaged: int = 0
    unsubscribed: int = 0
    delivery_failed: int = 0
    erased: int = 0
    lead_cost_units: int = 0
    revenue_units: int = 0
    other_revenue_units: dict[str, int] = field(default_factory=dict)
    speed_to_lead_ms: list[int] = field(default_factory=list)

    def add(self, other: ChannelFacts) -> None:
        """Fold another channel's facts into this one (for the totals)."""
        for name in (
            "leads",
            "repeat_touches",
            "sales_ready",
            "routed",
            "converted",
            "disqualified",
            "engaged",
            "unsubscribed",
            "delivery_failed",
            "erased",
            "lead_cost_units",
            "revenue_units",
        ):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for grade, count in other.grades.items():
            self.grades[grade] = self.grades.get(grade, 0) + count
        for currency, units in other.other_revenue_units.items():
            self.other_revenue_units[currency] = self.other_revenue_units.get(currency, 0) + units
        self.speed_to_lead_ms.extend(other.speed_to_lead_ms)


# JSON: rates and seconds are numbers; money is a string with two decimals (exact).
Rate = Annotated[
    Decimal | None,
    PlainSerializer(lambda v: None if v is None else float(v), return_type=float | None),
]
Seconds = Rate
Money = Annotated[Decimal, PlainSerializer(lambda v: f"{v:.2f}", return_type=str)]
OptionalMoney = Annotated[
    Decimal | None,
    PlainSerializer(lambda v: None if v is None else f"{v:.2f}", return_type=str | None),
]


class ChannelRow(BaseModel):
    """One channel's funnel over the window (also the shape of the totals row)."""

    model_config = ConfigDict(frozen=True)

    channel: str = Field(examples=["google_ads"])
    label: str | None = Field(default=None, examples=["Google Ads"])
    impressions: int | None = Field(description="Posted or configured; null when unknown.")
    clicks: int | None = None
    ctr: Rate = Field(description="clicks / impressions.")
    leads: int = Field(description="New leads whose first touch is this channel.")
    repeat_touches: int = Field(description="Submissions through this channel by known people.")
    hot: int
    warm: int
    cold: int
    ungraded: int = Field(description="Leads not scored yet.")
    sales_ready: int = Field(description="Leads that became sales-ready.")
    routed: int = Field(description="Leads assigned to a rep.")
    converted: int = Field(description="Leads the CRM reports as won.")
    disqualified: int
    engaged: int = Field(description="Leads that opened, clicked or replied to nurture email.")
    unsubscribed: int
    delivery_failed: int = Field(description="Leads with a failed CRM or rep delivery.")
    erased: int = Field(description="Leads whose person was forgotten (still counted).")
    revenue: Money = Field(description="Won value in the report currency.")
    revenue_other_currencies: dict[str, Money] = Field(
        default_factory=dict, description="Won value reported in another currency (not summed)."
    )
    spend: Money = Field(description="Media spend of the window's days plus per-lead costs.")
    cost_per_lead: OptionalMoney
    cost_per_sales_ready: OptionalMoney
    cost_per_conversion: OptionalMoney
    roas: Rate = Field(description="revenue / spend.")
    click_to_lead: Rate = Field(description="leads / clicks.")
    lead_to_sales_ready: Rate
    sales_ready_to_routed: Rate
    routed_to_converted: Rate
    lead_to_converted: Rate
    speed_to_lead_median_seconds: Seconds = Field(
        description="Median time from capture to assignment."
    )
    speed_to_lead_p90_seconds: Seconds = Field(description="Nearest-rank 90th percentile.")


class ChannelReport(BaseModel):
    """The per-channel funnel of leads captured in the window."""

    since: datetime = Field(description="Start of the window (inclusive).")
    until: datetime = Field(description="End of the window (exclusive).")
    first_day: date = Field(description="First day whose spend is counted.")
    last_day: date = Field(description="Last day whose spend is counted.")
    currency: str = Field(examples=["USD"])
    channels: list[ChannelRow]
    totals: ChannelRow


def channel_row(
    channel: str,
    label: str | None,
    facts: ChannelFacts,
    spend: SpendTotal,
) -> ChannelRow:
    """One report row from counted facts and spend."""
    media = money(spend.amount + from_units(facts.lead_cost_units))
    revenue = money(from_units(facts.revenue_units))
    durations = sorted(facts.speed_to_lead_ms)
    grades = facts.grades
    graded = sum(grades.get(g, 0) for g in GRADES)
    return ChannelRow(
        channel=channel,
        label=label,
        impressions=spend.impressions,
        clicks=spend.clicks,
        ctr=rate(spend.clicks, spend.impressions) if spend.clicks is not None else None,
        leads=facts.leads,
        repeat_touches=facts.repeat_touches,
        hot=grades.get("hot", 0),
        warm=grades.get("warm", 0),
        cold=grades.get("cold", 0),
        ungraded=facts.leads - graded,
        sales_ready=facts.sales_ready,
        routed=facts.routed,
        converted=facts.converted,
        disqualified=facts.disqualified,
        engaged=facts.engaged,
        unsubscribed=facts.unsubscribed,
        delivery_failed=facts.delivery_failed,
        erased=facts.erased,
        revenue=revenue,
        revenue_other_currencies={
            currency: money(from_units(units))
            for currency, units in sorted(facts.other_revenue_units.items())
        },
        spend=media,
        cost_per_lead=cost_per(media, facts.leads),
        cost_per_sales_ready=cost_per(media, facts.sales_ready),
        cost_per_conversion=cost_per(media, facts.converted),
        roas=rate(revenue, media),
        click_to_lead=rate(facts.leads, spend.clicks) if spend.clicks else None,
        lead_to_sales_ready=rate(facts.sales_ready, facts.leads),
        sales_ready_to_routed=rate(facts.routed, facts.sales_ready),
        routed_to_converted=rate(facts.converted, facts.routed),
        lead_to_converted=rate(facts.converted, facts.leads),
        speed_to_lead_median_seconds=_seconds(median(durations)),
        speed_to_lead_p90_seconds=_seconds(percentile(durations, 90)),
    )


def build_report(
    window: Window,
    channels: ChannelsConfig,
    facts: Mapping[str, ChannelFacts],
    posted_spend: Mapping[str, list[DaySpend]],
    today: date | None = None,
) -> ChannelReport:
    """The report: a row per channel with leads, configured spend or posted spend, and totals.

    The totals row adds the channels' shown (rounded) spend and revenue, so each money
    column adds up, and computes its costs and ROAS from those sums.
    """
    names = sorted(set(facts) | set(channels.channels) | set(posted_spend))
    rows: list[ChannelRow] = []
    total_facts = ChannelFacts()
    total_impressions: list[int | None] = []
    total_clicks: list[int | None] = []
    for name in names:
        config = channels.channels.get(name)
        channel_facts = facts.get(name, ChannelFacts())
        spend = channel_spend(
            config, posted_spend.get(name, []), window.first_day, window.last_day, today
        )
        row = channel_row(name, config.label if config else None, channel_facts, spend)
        rows.append(row)
        total_facts.add(channel_facts)
        total_impressions.append(row.impressions)
        total_clicks.append(row.clicks)
    # Rounded channel spends (lead costs included) add up to the total; none are added twice.
    total_facts.lead_cost_units = 0
    # Revenue too: the total is the sum of the shown channel revenues, per currency.
    total_facts.revenue_units = sum(to_units(r.revenue) for r in rows)
    total_facts.other_revenue_units = {}
    for row in rows:
        for currency, amount in row.revenue_other_currencies.items():
            units = total_facts.other_revenue_units.get(currency, 0) + to_units(amount)
            total_facts.other_revenue_units[currency] = units
    total_spend = SpendTotal(
        amount=sum((Fraction(r.spend) for r in rows), Fraction(0)),
        impressions=_sum_known(total_impressions),
        clicks=_sum_known(total_clicks),
    )
    totals = channel_row("total", None, total_facts, total_spend)
    # Only channels that report clicks can turn clicks into leads.
    leads_with_clicks = sum(r.leads for r in rows if r.clicks)
    totals = totals.model_copy(
        update={"click_to_lead": rate(leads_with_clicks, total_spend.clicks or 0)}
    )
    return ChannelReport(
        since=window.start,
        until=window.end,
        first_day=window.first_day,
        last_day=window.last_day,
        currency=channels.currency,
        channels=rows,
        totals=totals,
    )


def _seconds(milliseconds: Fraction | None) -> Decimal | None:
    return None if milliseconds is None else round_to(milliseconds / 1000, 3)


CSV_COLUMNS: tuple[str, ...] = tuple(
    name for name in ChannelRow.model_fields if name != "revenue_other_currencies"
)


def other_currencies(report: ChannelReport) -> list[str]:
    """The currencies other than the report's with revenue in the window, sorted."""
    found = {c for row in [*report.channels, report.totals] for c in row.revenue_other_currencies}
    return sorted(found)


def to_csv(report: ChannelReport) -> str:
    """One header line and one line per channel; empty cells for undefined values.

    Revenue in another currency gets a `revenue_<CUR>` column after `revenue`.
    """
    currencies = other_currencies(report)
    position = CSV_COLUMNS.index("revenue") + 1
    header = [*CSV_COLUMNS[:position], *(f"revenue_{c}" for c in currencies)]
    header += CSV_COLUMNS[position:]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(header)
    for row in report.channels:
        data: dict[str, Any] = row.model_dump(mode="json")
        for currency in currencies:
            data[f"revenue_{currency}"] = data["revenue_other_currencies"].get(currency, "0.00")
        writer.writerow(["" if data[c] is None else data[c] for c in header])
    return out.getvalue()
