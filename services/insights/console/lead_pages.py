"""The leads pages: search (keyset pages) and one lead's profile, timeline and story."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any
from urllib.parse import urlencode

import orjson
from fastapi import APIRouter, Query
from fastapi.responses import Response

from services.insights.console import queries
from services.insights.console.pages import PageDep, Refused
from services.insights.console.store import LeadSearch
from shared.db.engine import offload_statements

router = APIRouter()

LEAD_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
GRADES = ("hot", "warm", "cold")


def _day(value: str, field: str, end: bool = False) -> datetime | None:
    if not value:
        return None
    try:
        day = date.fromisoformat(value)
    except ValueError:
        raise Refused(400, f"{field}: expected a date such as 2026-11-01") from None
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    return start + timedelta(days=1) if end else start


def _cursor(value: str) -> tuple[datetime, str] | None:
    if not value:
        return None
    at, sep, lead_id = value.partition("|")
    try:
        moment = datetime.fromisoformat(at)
    except ValueError:
        moment = None
    if not sep or moment is None or moment.tzinfo is None or not LEAD_ID.match(lead_id):
        raise Refused(400, "after: not a position of this list")
    return moment, lead_id


@router.get("/leads")
async def leads(
    page: PageDep,
    q: Annotated[str, Query(max_length=200)] = "",
    channel: Annotated[str, Query(max_length=100)] = "",
    grade: Annotated[str, Query(max_length=8)] = "",
    since: Annotated[str, Query(max_length=10)] = "",
    until: Annotated[str, Query(max_length=10)] = "",
    sort: Annotated[str, Query(max_length=8)] = "newest",
    after: Annotated[str, Query(max_length=120)] = "",
) -> Response:
    if grade and grade not in GRADES:
        raise Refused(400, "grade: expected hot, warm or cold")
    if sort not in ("newest", "oldest"):
        raise Refused(400, "sort: expected newest or oldest")
    search = LeadSearch(
        q=q,
        channel=channel.strip(),
        grade=grade,
        since=_day(since, "since"),
        until=_day(until, "until", end=True),
        newest_first=sort == "newest",
        after=_cursor(after),
    )
    with offload_statements():
        rows = await queries.search_leads(page.console.bus.uow_factory, search)
    more = len(rows) > search.limit
    rows = rows[: search.limit]
    filters = {
        "q": q,
        "channel": channel,
        "grade": grade,
        "since": since,
        "until": until,
        "sort": sort,
    }
    next_url = None
    if more:
        last = rows[-1]
        position = f"{last.captured_at.isoformat()}|{last.lead_id}"
        next_url = "/console/leads?" + urlencode(
            {**{k: v for k, v in filters.items() if v}, "after": position}
        )
    context = {
        "rows": rows,
        "filters": filters,
        "next_url": next_url,
        "first_url": "/console/leads?" + urlencode({k: v for k, v in filters.items() if v})
        if after
        else None,
        "channels": sorted(page.console.config.channels.channels),
        "grades": GRADES,
    }
    return page.render("leads.html", context)


@router.get("/leads/{lead_id}")
async def lead(lead_id: str, page: PageDep) -> Response:
    if not LEAD_ID.match(lead_id):
        raise Refused(404, "No such lead.")
    console = page.console
    found = await queries.lead_page(console.bus.uow_factory, lead_id)
    profile, entries = found.profile, found.entries
    if profile is None:
        raise Refused(404, "No such lead (or insights has not seen it yet).")
    erased = profile.erased_at is not None
    story: dict[str, Any] = {}
    if not erased:
        story = await console.services.lead_story(lead_id)
    context = {
        "lead": profile,
        "erased": erased,
        "entries": [] if erased else [_entry(e) for e in entries],
        "story": story,
        "assignments": _assignments(story.get("assignments")),
        "enrollments": story["enrollments"].body if story and story["enrollments"].ok else [],
        "consents": (story["consents"].body or {}).get("consents", [])
        if story and story["consents"].ok
        else [],
    }
    return page.render("lead.html", context)


def _entry(row: Any) -> dict[str, Any]:
    data = row.data if isinstance(row.data, dict) else orjson.loads(row.data)
    return {"kind": row.kind, "at": row.at, "data": data, "event_id": row.event_id}


def _assignments(answer: Any) -> list[dict[str, Any]]:
    if answer is None or not answer.ok:
        return []
    out = []
    for item in (answer.body or {}).get("assignments", []):
        reason = item.get("reason") or {}
        if isinstance(reason, str):
            reason = {"explanation": reason}
        out.append({**item, "why": reason, "summary": routing_summary(reason)})
    return out


def routing_summary(reason: dict[str, Any]) -> str:
    """`matched rule X, round robin among A, B; A out of office` from a router decision."""
    parts = [f"matched rule {reason.get('rule_id') or '?'}"]
    pool = reason.get("pool") or []
    if pool:
        strategy = str(reason.get("strategy") or "assignment").replace("_", " ")
        parts.append(f"{strategy} among {', '.join(pool)}")
    text = ", ".join(parts)
    skipped = [
        f"{c['rep_id']} {c['reason']}"
        for c in reason.get("candidates") or []
        if isinstance(c, dict) and not c.get("eligible") and c.get("rep_id")
    ]
    if skipped:
        text += "; " + "; ".join(skipped)
    if reason.get("chosen"):
        text += f" → {reason['chosen']}"
    elif reason.get("queue"):
        text += f" → queue {reason['queue']}"
    return text
