"""Insights' routes: the channel report (JSON or CSV) and posted channel spend."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from services.insights import queries
from services.insights.handlers import RecordSpend
from services.insights.report import ChannelReport
from services.insights.report_csv import to_csv
from services.insights.window import InvalidWindow
from shared.db.engine import offload_statements
from shared.http import ADMIN_ERRORS, AdminDep, ApiError, BusDep

router = APIRouter()

CHANNEL_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}$"
CSV_MEDIA_TYPE = "text/csv"
MAX_COUNT = 10**15


def wants_csv(accept: str) -> bool:
    """True when the Accept header prefers text/csv over JSON."""
    weights: dict[str, float] = {}
    for part in accept.split(","):
        media, *params = (p.strip() for p in part.split(";"))
        quality = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        weights[media.lower()] = max(weights.get(media.lower(), 0.0), quality)
    csv_weight = weights.get(CSV_MEDIA_TYPE, 0.0)
    # A named type is more specific than a wildcard (RFC 9110 §12.5.1): `text/csv, */*`
    # asks for CSV, while `*/*` alone or a tie with application/json gets JSON.
    json_weight = max(weights.get("application/json", 0.0), weights.get("*/*", 0.0) / 2)
    return csv_weight > json_weight


@router.get(
    "/v1/reports/channels",
    tags=["reports"],
    summary="The per-channel funnel of leads captured in a window",
    response_model=ChannelReport,
    responses={
        200: {"content": {CSV_MEDIA_TYPE: {"schema": {"type": "string"}}}},
        422: {"description": "`since` or `until` is not a date or datetime"},
    },
)
async def channel_report(
    request: Request,
    bus: BusDep,
    since: Annotated[
        str | None,
        Query(
            description="First day (2026-11-01, inclusive) or instant (ISO 8601, inclusive); "
            "default: the first day of the current month (UTC).",
            max_length=40,
        ),
    ] = None,
    until: Annotated[
        str | None,
        Query(
            description="Last day (inclusive) or instant (exclusive); default: today (UTC).",
            max_length=40,
        ),
    ] = None,
    format: Annotated[
        Literal["json", "csv"] | None,
        Query(description="Overrides the Accept header (`Accept: text/csv` gives CSV)."),
    ] = None,
) -> Response:
    """Leads, grades, sales-ready, routed, converted, revenue, spend, costs, rates, speed."""
    # A report over a long window can read for a while: off the event loop's thread.
    with offload_statements():
        try:
            report = await queries.channel_report(
                bus.uow_factory, request.app.state.config, since, until
            )
        except InvalidWindow as exc:
            raise ApiError(422, "invalid_field", exc.message, field=exc.field) from None
    as_csv = format == "csv" or (format is None and wants_csv(request.headers.get("accept", "")))
    if as_csv:
        filename = f"leadflow-channels-{report.first_day}-{report.last_day}.csv"
        return Response(
            to_csv(report),
            media_type=f"{CSV_MEDIA_TYPE}; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{filename}"'},
        )
    return JSONResponse(report.model_dump(mode="json"))


class SpendIn(BaseModel):
    """A channel's spend (and reach) of one day."""

    model_config = ConfigDict(extra="forbid")

    date: dt.date = Field(description="The day (UTC).", examples=["2026-11-03"])
    amount: Decimal = Field(
        ge=0,
        max_digits=18,
        decimal_places=4,
        description="Spend of that day in the report currency.",
        examples=["125.40"],
    )
    impressions: int | None = Field(default=None, ge=0, le=MAX_COUNT, examples=[18250])
    clicks: int | None = Field(default=None, ge=0, le=MAX_COUNT, examples=[412])


class SpendOut(BaseModel):
    """The stored day."""

    channel: str
    date: dt.date
    amount: str = Field(examples=["125.40"])
    impressions: int | None
    clicks: int | None


@router.post(
    "/v1/channels/{channel}/spend",
    tags=["spend"],
    summary="Set a channel's spend of one day (replaces an earlier post for that day)",
    response_model=SpendOut,
    responses=ADMIN_ERRORS,
)
async def post_spend(
    _: AdminDep,
    bus: BusDep,
    channel: Annotated[
        str, Path(pattern=CHANNEL_PATTERN, description="The channel name, as in the report.")
    ],
    body: SpendIn,
) -> dict[str, Any]:
    """Posted spend overrides the config's spend of that day."""
    if body.impressions is not None and body.clicks is not None and body.clicks > body.impressions:
        raise ApiError(422, "invalid_field", "clicks cannot exceed impressions", field="clicks")
    await bus.handle(RecordSpend(channel, body.date, body.amount, body.impressions, body.clicks))
    return {
        "channel": channel,
        "date": body.date,
        "amount": _amount_text(body.amount),
        "impressions": body.impressions,
        "clicks": body.clicks,
    }


def _amount_text(amount: Decimal) -> str:
    cents = amount.quantize(Decimal("0.01"))
    return f"{cents}" if cents == amount else f"{amount.normalize():f}"
