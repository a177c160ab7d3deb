"""`leadflow report …`: the per-channel funnel in the terminal.

By default the report is asked of a running insights service over HTTP
(LEADFLOW_INSIGHTS_URL, default http://127.0.0.1:8005); `--direct` computes it
from the insights database named by the LEADFLOW_* settings instead.
"""

from __future__ import annotations

import enum
import sys
from typing import Annotated, Any

import httpx
import orjson
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

COMMAND_NAME = "report"
DEFAULT_URL = "http://127.0.0.1:8005"

app = typer.Typer(help="Reports: the per-channel funnel.", no_args_is_help=True)


class Format(enum.StrEnum):
    table = "table"
    json = "json"
    csv = "csv"


# (row label, field, kind) of the table, top to bottom.
TABLE_ROWS: tuple[tuple[str, str, str], ...] = (
    ("Impressions", "impressions", "count"),
    ("Clicks", "clicks", "count"),
    ("CTR", "ctr", "rate"),
    ("Leads (new)", "leads", "count"),
    ("Repeat touches", "repeat_touches", "count"),
    ("Hot", "hot", "count"),
    ("Warm", "warm", "count"),
    ("Cold", "cold", "count"),
    ("Sales-ready", "sales_ready", "count"),
    ("Routed", "routed", "count"),
    ("Converted", "converted", "count"),
    ("Revenue", "revenue", "money"),
    ("Spend", "spend", "money"),
    ("Cost per lead", "cost_per_lead", "money"),
    ("Cost per sales-ready", "cost_per_sales_ready", "money"),
    ("Cost per conversion", "cost_per_conversion", "money"),
    ("ROAS", "roas", "ratio"),
    ("Click → lead", "click_to_lead", "rate"),
    ("Lead → sales-ready", "lead_to_sales_ready", "rate"),
    ("Sales-ready → routed", "sales_ready_to_routed", "rate"),
    ("Routed → converted", "routed_to_converted", "rate"),
    ("Lead → converted", "lead_to_converted", "rate"),
    ("Speed-to-lead median", "speed_to_lead_median_seconds", "seconds"),
    ("Speed-to-lead p90", "speed_to_lead_p90_seconds", "seconds"),
)


@app.command("channels")
def channels(
    since: Annotated[
        str | None,
        typer.Option(help="First day (2026-11-01) or ISO datetime; default: start of this month."),
    ] = None,
    until: Annotated[
        str | None, typer.Option(help="Last day (inclusive) or ISO datetime; default: today.")
    ] = None,
    format: Annotated[Format, typer.Option("--format", help="table, json or csv.")] = Format.table,
    direct: Annotated[
        bool, typer.Option("--direct", help="Compute from the insights database, not over HTTP.")
    ] = False,
    url: Annotated[
        str, typer.Option(envvar="LEADFLOW_INSIGHTS_URL", help="The insights service.")
    ] = DEFAULT_URL,
) -> None:
    """Per channel: leads, grades, sales-ready, routed, converted, spend and what each costs."""
    csv_text: str | None
    if direct:
        report, csv_text = _direct(since, until)
    else:
        report, csv_text = _over_http(url, since, until, as_csv=format is Format.csv)
    if format is Format.csv:
        sys.stdout.write(csv_text or "")
        return
    if format is Format.json:
        sys.stdout.write(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode() + "\n")
        return
    print_report(report)


def _over_http(
    url: str, since: str | None, until: str | None, *, as_csv: bool
) -> tuple[dict[str, Any], str | None]:
    params = {k: v for k, v in (("since", since), ("until", until)) if v}
    accept = "text/csv" if as_csv else "application/json"
    try:
        response = httpx.get(
            f"{url.rstrip('/')}/v1/reports/channels",
            params=params,
            headers={"Accept": accept},
            timeout=30,
            trust_env=False,
        )
    except httpx.HTTPError as exc:
        _err().print(
            f"[red]the insights service is not reachable at {url}[/red] ({type(exc).__name__}); "
            "start it, set LEADFLOW_INSIGHTS_URL, or use --direct"
        )
        raise typer.Exit(1) from None
    if response.status_code != 200:
        _fail(response)
    if as_csv:
        return {}, response.text
    return response.json(), None


def _fail(response: httpx.Response) -> None:
    try:
        error = response.json()["error"]
        message = error.get("message", "")
    except Exception:
        message = response.text[:200]
    _err().print(f"[red]error {response.status_code}[/red]: {escape(message)}", highlight=False)
    raise typer.Exit(2 if response.status_code == 422 else 1)


def _direct(since: str | None, until: str | None) -> tuple[dict[str, Any], str]:
    from services.insights import queries, store
    from services.insights import settings as insights_settings
    from services.insights.report_csv import to_csv
    from services.insights.window import InvalidWindow
    from shared.cli import run_with_uows
    from shared.config import ConfigError, load_config
    from shared.settings import Settings

    settings = Settings()
    try:
        config = insights_settings.load(load_config(settings.config))
    except ConfigError as exc:
        _err().print(f"[red]config error[/red]\n{exc}")
        raise typer.Exit(2) from None

    try:
        report = run_with_uows(
            "insights",
            store.outbox,
            store.inbox,
            lambda uows: queries.channel_report(uows, config, since, until),
        )
    except InvalidWindow as exc:
        _err().print(f"[red]error[/red]: {exc.message}", highlight=False)
        raise typer.Exit(2) from None
    return report.model_dump(mode="json"), to_csv(report)


def _err() -> Console:
    return Console(stderr=True)


def _cell(value: Any, kind: str) -> str:
    if value is None:
        return "—"
    if kind == "money":
        return str(value)
    if kind == "rate":
        return f"{float(value) * 100:.2f}%"
    if kind == "ratio":
        return f"{float(value):.2f}x"
    if kind == "seconds":
        return _duration(float(value))
    return f"{value:,}" if isinstance(value, int) else str(value)


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f}s"
    if seconds < 3600:
        return f"{seconds / 60:.1f}m"
    return f"{seconds / 3600:.1f}h"


def _other_revenue(row: dict[str, Any]) -> dict[str, str]:
    return row.get("revenue_other_currencies") or {}


def _other_currencies(rows: list[dict[str, Any]]) -> list[str]:
    return sorted({currency for row in rows for currency in _other_revenue(row)})


def print_report(report: dict[str, Any]) -> None:
    """The report as a table: one column per channel, then the totals."""
    console = Console()
    currency = report["currency"]
    rows = report["channels"]
    table = Table(
        title=f"Channels, leads captured {report['first_day']} … {report['last_day']} ({currency})",
        title_justify="left",
    )
    table.add_column("")
    for row in rows:
        table.add_column(row["label"] or row["channel"], justify="right")
    table.add_column("Total", justify="right", style="bold")
    columns = [*rows, report["totals"]]
    for label, key, kind in TABLE_ROWS:
        table.add_row(label, *(_cell(row[key], kind) for row in columns))
        if key == "revenue":
            # Revenue in another currency is never converted: a row of its own per currency.
            for other in _other_currencies(columns):
                amounts = [_other_revenue(row).get(other, "0.00") for row in columns]
                table.add_row(f"Revenue ({other})", *amounts)
    console.print(table)
    # Channels without spend (direct, organic) have no cost per lead; compare the paid ones.
    priced = [r for r in rows if r["cost_per_sales_ready"] is not None and float(r["spend"]) > 0]
    if priced:
        best = min(priced, key=lambda r: (float(r["cost_per_sales_ready"]), r["channel"]))
        console.print(
            f"Cheapest sales-ready lead: [bold]{best['label'] or best['channel']}[/bold] "
            f"at {currency} {best['cost_per_sales_ready']}"
        )
    else:
        console.print("No paid channel has a sales-ready lead in this window.")
