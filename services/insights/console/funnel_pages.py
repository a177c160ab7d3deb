"""The funnel page: the per-channel report as charts and a table, and its CSV."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any, NamedTuple
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response

from services.insights import queries as reports
from services.insights.console import charts, queries
from services.insights.console.pages import Console, PageDep, Refused
from services.insights.report_csv import to_csv
from services.insights.window import InvalidWindow
from shared.db.engine import offload_statements

router = APIRouter()


class AskedWindow(NamedTuple):
    """The report's window as the page asks for it; None when unset."""

    since: str | None
    until: str | None


def asked_window(
    since: Annotated[str | None, Query(max_length=40)] = None,
    until: Annotated[str | None, Query(max_length=40)] = None,
) -> AskedWindow:
    """The report the page asks for: its window from the query (empty means unset)."""
    return AskedWindow(since or None, until or None)


AskedDep = Annotated[AskedWindow, Depends(asked_window)]


async def _report(console: Console, asked: AskedWindow) -> Any:
    with offload_statements():
        return await reports.channel_report(
            console.bus.uow_factory, console.config, asked.since, asked.until
        )


def _days(report: Any, counts: dict[str, int]) -> list[tuple[str, int]]:
    first, last = report.first_day, report.last_day
    if (last - first).days > 366:  # long windows: one point a month
        months: dict[str, int] = {}
        day = first
        while day <= last:
            months.setdefault(day.isoformat()[:7], 0)
            day = (day.replace(day=1) + timedelta(days=32)).replace(day=1)
        for key, n in counts.items():
            if key[:7] in months:
                months[key[:7]] += n
        return list(months.items())
    return [
        (
            (first + timedelta(days=i)).isoformat(),
            counts.get((first + timedelta(days=i)).isoformat(), 0),
        )
        for i in range((last - first).days + 1)
    ]


@router.get("/funnel")
async def funnel(page: PageDep, asked: AskedDep) -> Response:
    since, until, console = asked.since, asked.until, page.console
    try:
        report = await _report(console, asked)
    except InvalidWindow as exc:
        context = {
            "error": f"{exc.field}: {exc.message}",
            "since": since,
            "until": until,
            "report": None,
        }
        return page.render("funnel.html", context, status=422)
    per_day = await queries.leads_per_day(console.bus.uow_factory, report.since, report.until)
    rows = report.channels
    bars = charts.channel_bars(
        [(r.label or r.channel, (r.hot, r.warm, r.cold, r.ungraded)) for r in rows if r.leads]
    )
    t = report.totals
    stages = [
        ("Leads", t.leads),
        ("Sales-ready", t.sales_ready),
        ("Routed", t.routed),
        ("Converted", t.converted),
    ]
    query = urlencode({k: v for k, v in (("since", since), ("until", until)) if v})
    context = {
        "report": report,
        "since": since or report.first_day.isoformat(),
        "until": until or report.last_day.isoformat(),
        "bars": bars,
        "funnel": charts.funnel(stages),
        "timeline": charts.leads_over_time(_days(report, per_day)),
        "csv_url": "/console/funnel.csv" + (f"?{query}" if query else ""),
        "error": None,
    }
    return page.render("funnel.html", context)


@router.get("/funnel.csv")
async def funnel_csv(page: PageDep, asked: AskedDep) -> Response:
    try:
        report = await _report(page.console, asked)
    except InvalidWindow as exc:
        raise Refused(422, f"{exc.field}: {exc.message}") from None
    filename = f"leadflow-channels-{report.first_day}-{report.last_day}.csv"
    return Response(
        to_csv(report),
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="{filename}"',
            "Cache-Control": "no-store",
        },
    )
