"""The per-channel report: counted facts and spend in, one row per channel and totals out.

The totals add the channels' shown (rounded) spend and revenue, so each column adds
up. Costs per lead (per sales-ready lead, per conversion) and ROAS are computed from
the rounded amounts shown on the same row, so a reader who divides the numbers on the
page gets the same result; with no spend there is no cost per lead (undefined, not
free). Speed-to-lead is the median and the nearest-rank 90th percentile of the stored
capture → routing durations.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from fractions import Fraction
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer

from services.insights.money import (
    cost_per,
    from_units,
    median,
    money,
    percentile,
    rate,
    round_to,
    to_units,
)
from services.insights.spend import DaySpend, SpendTotal, channel_spend, sum_known
from services.insights.window import Window
from shared.config import ChannelsConfig

GRADES = ("hot", "warm", "cold")
#: Counted facts a report row shows as they are (and the totals row sums).
COUNTS = (
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
)


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
        for name in (*COUNTS, "lead_cost_units", "revenue_units"):
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
    hot: int = Field(description="Leads graded hot by their newest score.")
    warm: int = Field(description="Leads graded warm by their newest score.")
    cold: int = Field(description="Leads graded cold by their newest score.")
    ungraded: int = Field(description="Leads not scored yet.")
    sales_ready: int = Field(description="Leads that became sales-ready.")
    routed: int = Field(description="Leads assigned to a rep.")
    converted: int = Field(description="Leads the CRM reports as won.")
    disqualified: int = Field(description="Leads the CRM says will not buy.")
    engaged: int = Field(description="Leads that opened, clicked or replied to nurture email.")
    unsubscribed: int = Field(description="Leads that asked for no more marketing email.")
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
        **{name: getattr(facts, name) for name in COUNTS},
        **{grade: grades.get(grade, 0) for grade in GRADES},
        ungraded=facts.leads - graded,
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
        impressions=sum_known(total_impressions),
        clicks=sum_known(total_clicks),
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
