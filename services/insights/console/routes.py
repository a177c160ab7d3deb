"""The console's pages: login, funnel, leads, a lead's timeline, quarantine, dead letters, health.

Pages need a signed-in session (else a 303 to the login page); every POST needs
the session's CSRF token and a same-origin request (else 403).
"""

from __future__ import annotations

import asyncio
import math
import re
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any
from urllib.parse import quote, urlencode

import orjson
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import RedirectResponse, Response
from starlette.datastructures import FormData

from services.insights.console import charts
from services.insights.console import store as console_store
from services.insights.console.app import (
    COOKIE,
    Console,
    Refused,
    csrf_form,
    current_user,
    get_console,
    start_session,
)
from services.insights.handlers import ReportQuery, handle_channel_report
from services.insights.report_csv import to_csv
from services.insights.window import InvalidWindow
from shared.db.engine import offload_statements
from shared.events.topics import TOPICS, dlq_topic
from shared.kafka.dlq import DeadLetter, read_dead_letters, redrive

router = APIRouter(prefix="/console", include_in_schema=False)

UserDep = Annotated[str, Depends(current_user)]
ConsoleDep = Annotated[Console, Depends(get_console)]
FormDep = Annotated[FormData, Depends(csrf_form)]

LEAD_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
GRADES = ("hot", "warm", "cold")


def _see_other(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


def _safe_next(target: str | None) -> str:
    """Only a console path: never an open redirect."""
    if target and target.startswith("/console") and not target.startswith("//"):
        return target
    return "/console/funnel"


# Login -----------------------------------------------------------------------------------


@router.get("")
async def home(_: UserDep) -> RedirectResponse:
    return _see_other("/console/funnel")


@router.get("/login")
async def login_page(request: Request, console: ConsoleDep, next: str | None = None) -> Response:
    return console.render(request, "login.html", {"next": _safe_next(next), "error": None})


@router.post("/login")
async def login(request: Request, console: ConsoleDep, form: FormDep) -> Response:
    name = str(form.get("username", ""))[:200]
    password = str(form.get("password", ""))[:1000]
    target = _safe_next(str(form.get("next", "")))
    address = request.client.host if request.client else None
    wait = console.throttle.retry_after(name, address)
    if wait is not None:
        minutes = math.ceil(wait / 60)
        context = {
            "next": target,
            "error": "Too many failed sign-ins: try again in "
            + (f"{minutes} minutes." if minutes > 1 else "a minute."),
        }
        response = console.render(request, "login.html", context, status=429)
        response.headers["Retry-After"] = str(wait)
        return response
    attempt = console.throttle.attempt(name, address)
    # scrypt takes a while: off the event loop.
    if not await asyncio.to_thread(console.auth.check, name, password):
        context = {"next": target, "error": "Wrong user name or password."}
        if not console.auth.configured:
            context["error"] = (
                "No console user is configured: set LEADFLOW_ADMIN_TOKEN, "
                "LEADFLOW_CONSOLE_PASSWORD or LEADFLOW_CONSOLE_USERS."
            )
        return console.render(request, "login.html", context, status=401)
    console.throttle.succeeded(name, address, attempt)
    response = _see_other(target)
    start_session(console, response, name, https=request.url.scheme == "https")
    return response


@router.post("/logout")
async def logout(_: FormDep) -> Response:
    response = _see_other("/console/login")
    response.delete_cookie(COOKIE, path="/console")
    return response


# Funnel ----------------------------------------------------------------------------------


async def _report(console: Console, since: str | None, until: str | None) -> Any:
    with offload_statements():
        async with console.runtime.uow() as uow:
            return await handle_channel_report(ReportQuery(since, until), uow, console.config)


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
async def funnel(
    request: Request,
    user: UserDep,
    console: ConsoleDep,
    since: Annotated[str | None, Query(max_length=40)] = None,
    until: Annotated[str | None, Query(max_length=40)] = None,
) -> Response:
    since, until = since or None, until or None
    try:
        report = await _report(console, since, until)
    except InvalidWindow as exc:
        context = {
            "user": user,
            "error": f"{exc.field}: {exc.message}",
            "since": since,
            "until": until,
            "report": None,
        }
        return console.render(request, "funnel.html", context, status=422)
    async with console.runtime.uow() as uow:
        per_day = await console_store.leads_per_day(
            uow.session, uow.dialect, report.since, report.until
        )
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
        "user": user,
        "report": report,
        "since": since or report.first_day.isoformat(),
        "until": until or report.last_day.isoformat(),
        "bars": bars,
        "funnel": charts.funnel(stages),
        "timeline": charts.leads_over_time(_days(report, per_day)),
        "csv_url": "/console/funnel.csv" + (f"?{query}" if query else ""),
        "error": None,
    }
    return console.render(request, "funnel.html", context)


@router.get("/funnel.csv")
async def funnel_csv(
    user: UserDep,
    console: ConsoleDep,
    since: Annotated[str | None, Query(max_length=40)] = None,
    until: Annotated[str | None, Query(max_length=40)] = None,
) -> Response:
    try:
        report = await _report(console, since or None, until or None)
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


# Leads -----------------------------------------------------------------------------------


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
    request: Request,
    user: UserDep,
    console: ConsoleDep,
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
    search = console_store.LeadSearch(
        q=q,
        channel=channel.strip(),
        grade=grade,
        since=_day(since, "since"),
        until=_day(until, "until", end=True),
        newest_first=sort == "newest",
        after=_cursor(after),
    )
    with offload_statements():
        async with console.runtime.uow() as uow:
            rows = await console_store.search_leads(uow.session, search)
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
        "user": user,
        "rows": rows,
        "filters": filters,
        "next_url": next_url,
        "first_url": "/console/leads?" + urlencode({k: v for k, v in filters.items() if v})
        if after
        else None,
        "channels": sorted(console.config.channels.channels),
        "grades": GRADES,
    }
    return console.render(request, "leads.html", context)


@router.get("/leads/{lead_id}")
async def lead(request: Request, lead_id: str, user: UserDep, console: ConsoleDep) -> Response:
    if not LEAD_ID.match(lead_id):
        raise Refused(404, "No such lead.")
    async with console.runtime.uow() as uow:
        profile = await console_store.get_profile(uow.session, lead_id)
        entries = await console_store.lead_timeline(uow.session, lead_id)
    if profile is None:
        raise Refused(404, "No such lead (or insights has not seen it yet).")
    erased = profile.erased_at is not None
    story: dict[str, Any] = {}
    if not erased:
        story = await console.services.lead_story(lead_id)
    context = {
        "user": user,
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
    return console.render(request, "lead.html", context)


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


# Quarantine ------------------------------------------------------------------------------


@router.get("/quarantine")
async def quarantine(
    request: Request,
    user: UserDep,
    console: ConsoleDep,
    before: Annotated[str, Query(max_length=40)] = "",
    notice: Annotated[str, Query(max_length=20)] = "",
    id: Annotated[str, Query(max_length=100)] = "",
) -> Response:
    answer = await console.services.quarantine(before or None)
    context = {
        "user": user,
        "answer": answer,
        "items": (answer.body or {}).get("items", []) if answer.ok else [],
        "next_before": (answer.body or {}).get("next_before") if answer.ok else None,
        "notice": _notice(notice, id),
    }
    return console.render(request, "quarantine.html", context)


NOTICES = {
    "released": "Released submission {id}: it is a lead now.",
    "rejected": "Rejected submission {id}.",
    "redriven": "Re-drove {id}.",
}


def _notice(code: str, item: str) -> str | None:
    template = NOTICES.get(code)
    return template.format(id=item) if template else None


@router.post("/quarantine/{submission_id}/{action}")
async def quarantine_action(
    _: FormDep,
    request: Request,
    submission_id: str,
    action: str,
    user: UserDep,
    console: ConsoleDep,
) -> Response:
    if action not in ("release", "reject"):
        raise Refused(404, "No such action.")
    call = console.services.release if action == "release" else console.services.reject
    answer = await call(submission_id)
    if not answer.ok:
        raise Refused(answer.status if 400 <= answer.status < 500 else 502, answer.error or "")
    done = "released" if action == "release" else "rejected"
    return _see_other(f"/console/quarantine?notice={done}&id={quote(submission_id, safe='')}")


# Dead letters and failed deliveries ------------------------------------------------------


async def _letters(console: Console, topic: str) -> list[DeadLetter] | str:
    try:
        return await asyncio.wait_for(
            read_dead_letters(console.runtime.settings, dlq_topic(topic), 200), 15
        )
    except Exception as exc:  # the broker is down or slow: say so on the page
        return f"could not read {dlq_topic(topic)} ({type(exc).__name__})"


@router.get("/dead-letters")
async def dead_letters(
    request: Request,
    user: UserDep,
    console: ConsoleDep,
    notice: Annotated[str, Query(max_length=20)] = "",
    id: Annotated[str, Query(max_length=300)] = "",
) -> Response:
    deliveries, *letters = await asyncio.gather(
        console.services.failed_deliveries(), *(_letters(console, t) for t in TOPICS)
    )
    context = {
        "user": user,
        "deliveries": deliveries,
        "topics": list(zip(TOPICS, letters, strict=True)),
        "notice": _notice(notice, id),
    }
    return console.render(request, "dead_letters.html", context)


async def _find_letter(console: Console, topic: str, partition: int, offset: int) -> DeadLetter:
    if topic not in TOPICS:
        raise Refused(404, "No such topic.")
    letters = await _letters(console, topic)
    if isinstance(letters, str):
        raise Refused(503, letters)
    for letter in letters:
        if letter.partition == partition and letter.offset == offset:
            return letter
    raise Refused(404, "No such dead letter.")


@router.get("/dead-letters/{topic}/{partition}/{offset}")
async def dead_letter(
    request: Request, topic: str, partition: int, offset: int, user: UserDep, console: ConsoleDep
) -> Response:
    letter = await _find_letter(console, topic, partition, offset)
    try:
        body = orjson.dumps(orjson.loads(letter.value), option=orjson.OPT_INDENT_2).decode()
    except orjson.JSONDecodeError:
        body = letter.value.decode("utf-8", "replace")
    headers = [(k, (v or b"").decode("utf-8", "replace")) for k, v in letter.headers]
    context = {"user": user, "letter": letter, "topic": topic, "body": body, "headers": headers}
    return console.render(request, "dead_letter.html", context)


@router.post("/dead-letters/{topic}/{partition}/{offset}/redrive")
async def redrive_letter(
    _: FormDep, topic: str, partition: int, offset: int, user: UserDep, console: ConsoleDep
) -> Response:
    letter = await _find_letter(console, topic, partition, offset)
    await redrive(console.runtime.settings, [letter])
    name = quote(f"{letter.event_id or f'{partition}@{offset}'} to {topic}", safe="")
    return _see_other(f"/console/dead-letters?notice=redriven&id={name}")


@router.post("/deliveries/{delivery_id}/redrive")
async def redrive_delivery(
    _: FormDep, delivery_id: str, user: UserDep, console: ConsoleDep
) -> Response:
    answer = await console.services.redrive_delivery(delivery_id)
    if not answer.ok:
        raise Refused(answer.status if 400 <= answer.status < 500 else 502, answer.error or "")
    return _see_other(
        f"/console/dead-letters?notice=redriven&id={quote('delivery ' + delivery_id, safe='')}"
    )


# Health ----------------------------------------------------------------------------------


def _samples(families: list[Any], name: str) -> list[Any]:
    return [s for f in families for s in f.samples if s.name == name]


@router.get("/health")
async def health(request: Request, user: UserDep, console: ConsoleDep) -> Response:
    scraped = await console.services.metrics()
    lag: dict[tuple[str, str], float] = {}
    outbox: list[tuple[str, float, float | None]] = []
    backlog: dict[str, float] = {}
    down: dict[str, str] = {}
    for service, families in scraped.items():
        if isinstance(families, str):
            down[service] = families
            continue
        for s in _samples(families, "leadflow_consumer_lag"):
            key = (s.labels.get("group", "?"), s.labels.get("topic", "?"))
            lag[key] = lag.get(key, 0) + s.value
        ages = {
            s.labels.get("service"): s.value
            for s in _samples(families, "leadflow_outbox_oldest_age_seconds")
        }
        for s in _samples(families, "leadflow_outbox_backlog"):
            name = s.labels.get("service", service)
            outbox.append((name, s.value, ages.get(name)))
        for s in _samples(families, "leadflow_delivery_queue_depth"):
            destination = s.labels.get("destination", "?")
            backlog[destination] = backlog.get(destination, 0) + s.value
    context = {
        "user": user,
        "services": sorted(scraped),
        "down": down,
        "lag": sorted(lag.items()),
        "outbox": sorted(outbox),
        "backlog": sorted(backlog.items()),
    }
    return console.render(request, "health.html", context)
