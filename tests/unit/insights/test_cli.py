"""`leadflow report channels` as a table: what a reader sees for each channel."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from fractions import Fraction

import pytest

from services.insights.cli import print_report
from services.insights.money import to_units
from services.insights.report import ChannelFacts, build_report
from services.insights.spend import DaySpend
from services.insights.window import make_window
from shared.config import Channel, ChannelsConfig


def _table(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> list[str]:
    monkeypatch.setenv("COLUMNS", "200")
    window = make_window("2026-12-01", "2026-12-01", date(2026, 12, 1))
    channels = ChannelsConfig(channels={"search": Channel(label="Search")})
    facts = {
        "search": ChannelFacts(
            leads=4,
            sales_ready=2,
            converted=1,
            revenue_units=to_units(Decimal("900")),
            other_revenue_units={"EUR": to_units(Decimal("250.01"))},
        ),
        "direct": ChannelFacts(leads=3, sales_ready=1),
    }
    posted = {"search": [DaySpend(date(2026, 12, 1), Fraction(100))]}
    report = build_report(window, channels, facts, posted)
    print_report(report.model_dump(mode="json"))
    return capsys.readouterr().out.splitlines()


def _cells(lines: list[str], label: str) -> list[str]:
    line = next(line for line in lines if line.startswith(f"│ {label} "))
    return [cell.strip() for cell in line.split("│")[2:5]]


def test_the_table_shows_revenue_in_other_currencies(capsys, monkeypatch):
    lines = _table(capsys, monkeypatch)
    assert _cells(lines, "Revenue") == ["0.00", "900.00", "900.00"]  # direct, Search, Total
    assert _cells(lines, "Revenue (EUR)") == ["0.00", "250.01", "250.01"]


def test_the_table_shows_no_cost_per_lead_for_a_channel_without_spend(capsys, monkeypatch):
    lines = _table(capsys, monkeypatch)
    assert _cells(lines, "Spend") == ["0.00", "100.00", "100.00"]
    assert _cells(lines, "Cost per lead") == ["—", "25.00", "14.29"]
    assert _cells(lines, "Cost per sales-ready") == ["—", "50.00", "33.33"]
    assert any("Cheapest sales-ready lead: Search at USD 50.00" in line for line in lines)
