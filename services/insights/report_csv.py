"""The report as CSV: one header line and one line per channel."""

from __future__ import annotations

import csv
import io
from typing import Any

from services.insights.report import ChannelReport, ChannelRow

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
