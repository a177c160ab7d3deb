"""The operations pages: quarantine, dead letters and failed deliveries, health.

They read and act through the other services' admin APIs and the broker; a
service or a broker that does not answer is shown as such on the page.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any
from urllib.parse import quote

import orjson
from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response

from services.insights.console.pages import Console, FormDep, PageDep, Refused, checked, see_other
from shared.events.topics import TOPICS, dlq_topic
from shared.kafka.dlq import DeadLetter, read_dead_letters, redrive

router = APIRouter()


NOTICES = {
    "released": "Released submission {id}: it is a lead now.",
    "rejected": "Rejected submission {id}.",
    "redriven": "Re-drove {id}.",
}


def notice_of(id_length: int) -> Any:
    """A page's notice after an action redirected to it (`?notice=released&id=...`): the
    text to show, or None; `id_length` bounds the id the redirect names."""

    def notice(notice: str = "", id: str = "") -> str | None:
        template = NOTICES.get(notice)
        return template.format(id=id) if template else None

    # Objects, not this module's postponed (string) annotations, which FastAPI would
    # resolve in the module's globals, where `id_length` is not.
    notice.__annotations__ = {
        "notice": Annotated[str, Query(max_length=20)],
        "id": Annotated[str, Query(max_length=id_length)],
        "return": str | None,
    }
    return Depends(notice)


@router.get("/quarantine")
async def quarantine(
    page: PageDep,
    notice: Annotated[str | None, notice_of(id_length=100)],
    before: Annotated[str, Query(max_length=40)] = "",
) -> Response:
    answer = await page.console.services.quarantine(before or None)
    context = {
        "answer": answer,
        "items": (answer.body or {}).get("items", []) if answer.ok else [],
        "next_before": (answer.body or {}).get("next_before") if answer.ok else None,
        "notice": notice,
    }
    return page.render("quarantine.html", context)


@router.post("/quarantine/{submission_id}/{action}")
async def quarantine_action(_: FormDep, submission_id: str, action: str, page: PageDep) -> Response:
    if action not in ("release", "reject"):
        raise Refused(404, "No such action.")
    services = page.console.services
    call = services.release if action == "release" else services.reject
    checked(await call(submission_id))
    done = "released" if action == "release" else "rejected"
    return see_other(f"/console/quarantine?notice={done}&id={quote(submission_id, safe='')}")


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
    page: PageDep, notice: Annotated[str | None, notice_of(id_length=300)]
) -> Response:
    console = page.console
    deliveries, *letters = await asyncio.gather(
        console.services.failed_deliveries(), *(_letters(console, t) for t in TOPICS)
    )
    context = {
        "deliveries": deliveries,
        "topics": list(zip(TOPICS, letters, strict=True)),
        "notice": notice,
    }
    return page.render("dead_letters.html", context)


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
async def dead_letter(topic: str, partition: int, offset: int, page: PageDep) -> Response:
    letter = await _find_letter(page.console, topic, partition, offset)
    try:
        body = orjson.dumps(orjson.loads(letter.value), option=orjson.OPT_INDENT_2).decode()
    except orjson.JSONDecodeError:
        body = letter.value.decode("utf-8", "replace")
    headers = [(k, (v or b"").decode("utf-8", "replace")) for k, v in letter.headers]
    context = {"letter": letter, "topic": topic, "body": body, "headers": headers}
    return page.render("dead_letter.html", context)


@router.post("/dead-letters/{topic}/{partition}/{offset}/redrive")
async def redrive_letter(
    _: FormDep, topic: str, partition: int, offset: int, page: PageDep
) -> Response:
    letter = await _find_letter(page.console, topic, partition, offset)
    await redrive(page.console.runtime.settings, [letter])
    name = quote(f"{letter.event_id or f'{partition}@{offset}'} to {topic}", safe="")
    return see_other(f"/console/dead-letters?notice=redriven&id={name}")


@router.post("/deliveries/{delivery_id}/redrive")
async def redrive_delivery(_: FormDep, delivery_id: str, page: PageDep) -> Response:
    checked(await page.console.services.redrive_delivery(delivery_id))
    return see_other(
        f"/console/dead-letters?notice=redriven&id={quote('delivery ' + delivery_id, safe='')}"
    )


# Health ----------------------------------------------------------------------------------


def _samples(families: list[Any], name: str) -> list[Any]:
    return [s for f in families for s in f.samples if s.name == name]


@router.get("/health")
async def health(page: PageDep) -> Response:
    scraped = await page.console.services.metrics()
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
        "services": sorted(scraped),
        "down": down,
        "lag": sorted(lag.items()),
        "outbox": sorted(outbox),
        "backlog": sorted(backlog.items()),
    }
    return page.render("health.html", context)
