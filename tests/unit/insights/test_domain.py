"""The funnel arithmetic: rounding, windows, spend, order-independent merging, the report."""

from __future__ import annotations

import csv
import io
import itertools
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import pytest

from services.insights import settings as insights_settings
from services.insights.lead_facts import LeadFacts
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
from services.insights.report import ChannelFacts, build_report
from services.insights.report_csv import to_csv
from services.insights.spend import DaySpend, channel_spend
from services.insights.window import InvalidWindow, make_window
from shared.config import Channel, ChannelsConfig, ConfigError, DailySpend, load_config

TODAY = date(2026, 11, 22)


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


# Money and rates ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (Decimal("0.005"), Decimal("0.01")),
        (Decimal("2.675"), Decimal("2.68")),  # a float would give 2.67
        (Decimal("2.6749999"), Decimal("2.67")),
        (Decimal("-0.005"), Decimal("-0.01")),
        (Fraction(1, 3), Decimal("0.33")),
        (Fraction(2, 3), Decimal("0.67")),
        (7, Decimal("7.00")),
    ],
)
def test_money_rounds_half_up_to_the_cent(value: Decimal | Fraction | int, expected: Decimal):
    assert money(value) == expected
    assert str(money(value)) == str(expected)


def test_stored_units_are_exact_ten_thousandths():
    assert to_units(Decimal("12.50")) == 125_000
    assert to_units(Decimal("0.00005")) == 1  # half-up at the fifth decimal
    assert from_units(to_units(Decimal("4800.0001"))) == Fraction(Decimal("4800.0001"))


def test_rates_are_fractions_with_four_decimals():
    assert rate(1, 3) == Decimal("0.3333")
    assert rate(2, 3) == Decimal("0.6667")
    assert rate(1, 8) == Decimal("0.1250")
    assert rate(5, 0) is None
    assert rate(0, 4) == Decimal("0.0000")
    assert round_to(Fraction(1, 20000), 4) == Decimal("0.0001")


def test_cost_per_is_undefined_without_a_count_or_without_spend():
    assert cost_per(Decimal("100.00"), 3) == Decimal("33.33")
    assert cost_per(Decimal("100.00"), 0) is None
    assert cost_per(Decimal("0.00"), 5) is None  # no spend is not free


def test_median_and_nearest_rank_percentile():
    assert median([]) is None and percentile([], 90) is None
    assert median([7]) == 7 and percentile([7], 90) == 7
    assert median([1, 2, 10]) == 2
    assert median([1, 2, 3, 10]) == Fraction(5, 2)
    ten = list(range(1, 11))
    assert percentile(ten, 90) == 9
    assert percentile([*ten, 11], 90) == 10  # ceil(9.9) = 10th value
    assert percentile(ten, 100) == 10


# Windows --------------------------------------------------------------------------------


def test_dates_are_whole_days_and_until_is_inclusive():
    window = make_window("2026-11-01", "2026-11-10", TODAY)
    assert window.start == utc(2026, 11, 1)
    assert window.end == utc(2026, 11, 11)
    assert (window.first_day, window.last_day, window.days) == (
        date(2026, 11, 1),
        date(2026, 11, 10),
        10,
    )


def test_datetimes_are_instants_with_an_exclusive_end():
    window = make_window("2026-11-01T12:00:00+02:00", "2026-11-03T00:00:00Z", TODAY)
    assert window.start == utc(2026, 11, 1, 10)
    assert window.end == utc(2026, 11, 3)
    assert (window.first_day, window.last_day) == (date(2026, 11, 1), date(2026, 11, 2))
    naive = make_window("2026-11-01T08:30:00", None, TODAY)
    assert naive.start == utc(2026, 11, 1, 8, 30)
    compact = make_window("20261101", "20261102", TODAY)  # ISO 8601 basic dates
    assert (compact.start, compact.end) == (utc(2026, 11, 1), utc(2026, 11, 3))


def test_the_default_window_is_this_month_to_date():
    window = make_window(None, None, TODAY)
    assert (window.first_day, window.last_day) == (date(2026, 11, 1), TODAY)
    only_until = make_window(None, "2026-02-14", TODAY)
    assert (only_until.first_day, only_until.last_day) == (date(2026, 2, 1), date(2026, 2, 14))


@pytest.mark.parametrize(
    ("since", "until", "field"),
    [
        ("last tuesday", None, "since"),
        ("2026-13-01", None, "since"),
        ("2026-11-01", "soon", "until"),
        ("2026-11-10", "2026-11-01", "until"),
        ("2026-11-01T10:00:00Z", "2026-11-01T10:00:00Z", "until"),
        ("1900-01-01", "2026-11-01", "since"),
    ],
)
def test_a_bad_window_names_its_field(since: str, until: str | None, field: str):
    with pytest.raises(InvalidWindow) as caught:
        make_window(since, until, TODAY)
    assert caught.value.field == field


# Spend ----------------------------------------------------------------------------------


def test_monthly_spend_is_spread_evenly_over_the_days_of_its_month():
    channel = Channel(monthly_spend=Decimal("2800.00"))
    february = channel_spend(channel, [], date(2026, 2, 1), date(2026, 2, 7))
    assert february.amount == 700  # 28 days in February 2026
    across = channel_spend(channel, [], date(2026, 1, 31), date(2026, 2, 1))
    assert across.amount == Fraction(2800, 31) + 100
    assert (across.impressions, across.clicks) == (None, None)


def test_a_posted_day_overrides_the_config_which_overrides_the_monthly_spread():
    channel = Channel(
        monthly_spend=Decimal("3000"),
        spend=[
            DailySpend(date=date(2026, 11, 2), amount=Decimal("80"), impressions=1000),
            DailySpend(date=date(2026, 11, 3), amount=Decimal("70"), clicks=9),
            DailySpend(date=date(2026, 12, 1), amount=Decimal("999")),
        ],
    )
    posted = [
        DaySpend(date(2026, 11, 3), Fraction("20.25"), impressions=500, clicks=10),
        DaySpend(date(2026, 10, 31), Fraction(5000)),  # outside the window
    ]
    total = channel_spend(channel, posted, date(2026, 11, 1), date(2026, 11, 4))
    assert total.amount == 100 + 80 + Fraction("20.25") + 100
    assert (total.impressions, total.clicks) == (1500, 10)


def test_monthly_spend_accrues_day_by_day_up_to_today():
    channel = Channel(
        monthly_spend=Decimal("3000"),
        spend=[DailySpend(date=date(2026, 11, 25), amount=Decimal("7"))],
    )
    month = channel_spend(channel, [], date(2026, 11, 1), date(2026, 11, 30), TODAY)
    assert month.amount == 22 * 100 + 7  # 1 … 22 November, plus the planned day entry
    future = channel_spend(channel, [], date(2026, 12, 1), date(2026, 12, 31), TODAY)
    assert future.amount == 0


def test_a_channel_without_config_spends_only_what_is_posted():
    posted = [DaySpend(date(2026, 11, 5), Fraction(12))]
    assert channel_spend(None, posted, date(2026, 11, 1), date(2026, 11, 30)).amount == 12
    assert channel_spend(None, [], date(2026, 11, 1), date(2026, 11, 30)).amount == 0


# Merging a lead's events in any order --------------------------------------------------

CAPTURED = utc(2026, 11, 2, 9)
CHANGES: list[Callable[[LeadFacts], LeadFacts]] = [
    lambda f: f.captured(
        first_touch_channel="google_ads", is_new_lead=True, is_test=False, captured_at=CAPTURED
    ),
    lambda f: f.captured(
        first_touch_channel="google_ads",
        is_new_lead=False,
        is_test=True,
        captured_at=CAPTURED + timedelta(days=1),
    ),
    lambda f: f.scored(
        channel="facebook_ads",
        grade="warm",
        sales_ready=False,
        is_test=False,
        captured_at=CAPTURED,
        scored_at=CAPTURED + timedelta(seconds=5),
    ),
    lambda f: f.scored(
        channel="facebook_ads",
        grade="hot",
        sales_ready=True,
        is_test=False,
        captured_at=CAPTURED,
        scored_at=CAPTURED + timedelta(seconds=50),
    ),
    lambda f: f.routed(
        channel="facebook_ads",
        captured_at=CAPTURED,
        routed_at=CAPTURED + timedelta(seconds=61, milliseconds=250),
    ),
    lambda f: f.routed(
        channel="facebook_ads", captured_at=CAPTURED, routed_at=CAPTURED + timedelta(hours=2)
    ),
    lambda f: f.converted(CAPTURED + timedelta(days=3)),
    lambda f: f.disqualified(CAPTURED + timedelta(days=3)),
    lambda f: f.engaged(CAPTURED + timedelta(days=1)),
    lambda f: f.unsubscribed(CAPTURED + timedelta(days=2)),
    lambda f: f.delivery_failed(CAPTURED + timedelta(minutes=2)),
    lambda f: f.erased(CAPTURED + timedelta(days=4)),
]


def test_a_leads_facts_do_not_depend_on_the_order_its_events_arrive_in():
    results = set()
    for order in itertools.permutations(CHANGES[:6]):
        facts = LeadFacts()
        for change in order:
            facts = change(facts)
        results.add(facts)
    assert len(results) == 1
    (facts,) = results
    assert facts.channel == "google_ads"  # the first touch, however late it came
    assert facts.is_test is False  # the repeat touch's flag is about that submission
    assert facts.grade == "hot"  # the newest score
    assert facts.captured_at == CAPTURED
    assert facts.sales_ready_at == CAPTURED + timedelta(seconds=50)
    assert facts.routed_at == CAPTURED + timedelta(seconds=61, milliseconds=250)
    assert facts.speed_to_lead_ms == 61_250  # the first assignment, not the reassignment


def test_applying_an_event_twice_changes_nothing():
    facts = LeadFacts()
    for change in CHANGES:
        facts = change(facts)
        assert change(facts) == facts


def test_a_routed_lead_is_sales_ready_until_its_score_says_since_when():
    routed_at = CAPTURED + timedelta(minutes=1)
    facts = LeadFacts().routed(channel="radio", captured_at=CAPTURED, routed_at=routed_at)
    assert facts.sales_ready_at == routed_at and facts.channel == "radio"
    facts = facts.captured(
        first_touch_channel="google_ads", is_new_lead=True, is_test=True, captured_at=CAPTURED
    )
    assert (facts.channel, facts.is_test) == ("google_ads", True)


# The report -----------------------------------------------------------------------------


def test_costs_are_computed_from_the_rounded_spend_shown_on_the_row():
    window = make_window("2026-12-01", "2026-12-01", TODAY)
    channels = ChannelsConfig(
        currency="EUR",
        channels={"search": Channel(label="Search", monthly_spend=Decimal("1500"))},
    )
    facts = {"search": ChannelFacts(leads=2, grades={"hot": 1}, sales_ready=1)}
    report = build_report(window, channels, facts, {})
    (row,) = report.channels
    assert row.spend == Decimal("48.39")  # 1500 / 31 = 48.387…
    assert row.cost_per_lead == Decimal("24.20")  # 48.39 / 2 = 24.195 → half-up
    assert row.cost_per_sales_ready == Decimal("48.39")
    assert row.cost_per_conversion is None
    assert (row.hot, row.ungraded) == (1, 1)
    assert report.currency == "EUR"


def test_every_configured_channel_gets_a_row_and_the_totals_add_up():
    window = make_window("2026-12-01", "2026-12-03", TODAY)
    channels = ChannelsConfig(
        channels={
            "a": Channel(monthly_spend=Decimal("100")),  # 3 * 100/31 = 9.677… → 9.68
            "b": Channel(monthly_spend=Decimal("100")),
            "quiet": Channel(),
        }
    )
    facts = {
        "a": ChannelFacts(leads=1, lead_cost_units=to_units(Decimal("0.004"))),
        "direct": ChannelFacts(leads=3, speed_to_lead_ms=[1000, 3000]),
    }
    posted = {"c": [DaySpend(date(2026, 12, 2), Fraction("5.555"))]}
    report = build_report(window, channels, facts, posted)
    rows = {r.channel: r for r in report.channels}
    assert list(rows) == ["a", "b", "c", "direct", "quiet"]
    assert rows["a"].spend == Decimal("9.68")  # 9.677… + 0.004 lead cost
    assert rows["b"].spend == Decimal("9.68")
    assert rows["c"].spend == Decimal("5.56")
    assert rows["quiet"].spend == Decimal("0.00") and rows["quiet"].leads == 0
    assert rows["quiet"].cost_per_lead is None
    assert report.totals.spend == Decimal("24.92")  # the shown spends, added
    assert report.totals.leads == 4
    assert report.totals.speed_to_lead_median_seconds == Decimal("2.000")


def test_csv_has_a_header_and_empty_cells_for_undefined_values():
    window = make_window("2026-12-01", "2026-12-01", TODAY)
    channels = ChannelsConfig(channels={"radio": Channel(monthly_spend=Decimal("310"))})
    report = build_report(window, channels, {"radio": ChannelFacts(leads=3)}, {})
    rows = list(csv.DictReader(io.StringIO(to_csv(report))))
    assert len(rows) == 1
    assert rows[0]["channel"] == "radio"
    assert rows[0]["spend"] == "10.00" and rows[0]["cost_per_lead"] == "3.33"
    assert rows[0]["cost_per_sales_ready"] == "" and rows[0]["lead_to_sales_ready"] == "0.0"
    assert "revenue_other_currencies" not in rows[0]


def _two_channels_with_half_cent_revenue():
    window = make_window("2026-12-01", "2026-12-01", TODAY)
    half_cent = to_units(Decimal("0.005"))
    facts = {
        name: ChannelFacts(
            leads=2,
            sales_ready=1,
            converted=1,
            revenue_units=half_cent,
            other_revenue_units={"EUR": half_cent},
        )
        for name in ("a", "b")
    }
    facts["organic"] = ChannelFacts(leads=3, sales_ready=1)
    posted = {name: [DaySpend(date(2026, 12, 1), Fraction(1))] for name in ("a", "b")}
    return build_report(window, ChannelsConfig(), facts, posted)


def test_the_totals_add_the_shown_revenue_and_roas_divides_the_shown_totals():
    report = _two_channels_with_half_cent_revenue()
    rows = {r.channel: r for r in report.channels}
    assert rows["a"].revenue == rows["b"].revenue == Decimal("0.01")  # 0.005 → half-up
    assert rows["a"].roas == Decimal("0.01")
    # The columns add up: 0.01 + 0.01, not the exact 0.010 rounded once.
    assert report.totals.revenue == Decimal("0.02")
    assert report.totals.revenue_other_currencies == {"EUR": Decimal("0.02")}
    assert report.totals.spend == Decimal("2.00")
    assert report.totals.roas == Decimal("0.01")  # 0.02 / 2.00
    assert report.totals.model_dump(mode="json")["revenue"] == "0.02"


def test_a_channel_without_spend_has_no_cost_per_lead():
    report = _two_channels_with_half_cent_revenue()
    organic = next(r for r in report.channels if r.channel == "organic")
    assert organic.spend == Decimal("0.00") and organic.leads == 3
    assert (organic.cost_per_lead, organic.cost_per_sales_ready) == (None, None)
    assert organic.cost_per_conversion is None and organic.roas is None
    data = organic.model_dump(mode="json")
    assert (data["cost_per_lead"], data["cost_per_sales_ready"]) == (None, None)
    [line] = [r for r in csv.DictReader(io.StringIO(to_csv(report))) if r["channel"] == "organic"]
    assert (line["cost_per_lead"], line["cost_per_sales_ready"]) == ("", "")
    # The totals still divide all the spend by all the leads.
    assert report.totals.cost_per_lead == Decimal("0.29")  # 2.00 / 7


def test_csv_shows_revenue_in_other_currencies_in_a_column_each():
    report = _two_channels_with_half_cent_revenue()
    text = to_csv(report)
    header = text.splitlines()[0].split(",")
    assert header[header.index("revenue") + 1] == "revenue_EUR"
    rows = {r["channel"]: r for r in csv.DictReader(io.StringIO(text))}
    assert [rows[c]["revenue_EUR"] for c in ("a", "b", "organic")] == ["0.01", "0.01", "0.00"]
    assert rows["a"]["revenue"] == "0.01"


def test_the_channels_section_is_validated_with_lines(tmp_path: Path):
    path = tmp_path / "leadflow.yaml"
    path.write_text(
        "channels:\n  channels:\n    radio:\n      monthly_spend: -5\n      budget: 3\n"
    )
    with pytest.raises(ConfigError) as caught:
        insights_settings.load(load_config(path))
    problems = {p.path: p.line for p in caught.value.problems}
    assert problems == {
        "channels.channels.radio.monthly_spend": 4,
        "channels.channels.radio.budget": 5,
    }
