"""A consumer batch routed whole ends exactly as the same events routed one by one.

The same records go through the router's real consumer three ways: as one batch (the
batch hook, one read per table, one write per table), one by one in savepoints (the
consumer's fallback path, no hook) and as batches of one. Leads, assignments,
deliveries, strategy state, the outbox and the inbox must match, ids and clock
readings aside. Both databases.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
import sqlalchemy as sa
from aiokafka.structs import ConsumerRecord

from services.router import consumers, messagebus, store
from services.router.commands import RecordOutcome
from services.router.settings import RoutingConfig
from shared.db.uow import UnitOfWork
from shared.events import LeadErased
from shared.events.envelope import Envelope
from shared.service import ServiceRuntime
from tests.integration.router.support import consumer_of, route, router_uows, scored
from tests.records import record_of

CAPTURED = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)


def _config(routed: Path) -> RoutingConfig:
    return RoutingConfig.model_validate(
        {
            "reps": {"a": {"max_open_per_day": 2}, "b": {}, "c": {"weight": 3}},
            "rules": [
                {
                    "id": "uk",
                    "match": {"country": ["GB"]},
                    "reps": ["a", "b"],
                    "destinations": ["file", "hook"],
                },
                {
                    "id": "france",
                    "match": {"country": ["FR"]},
                    "reps": ["a", "b"],
                    "strategy": "capacity",
                    "destinations": ["file"],
                },
                {
                    "id": "germany",
                    "match": {"country": ["DE"]},
                    "reps": ["b", "c"],
                    "strategy": "weighted",
                    "destinations": ["hook"],
                },
            ],
            "fallback": {"queue": "triage", "destinations": []},
            "destinations": {
                "file": {"type": "file", "path": str(routed)},
                "hook": {"type": "webhook", "url": "http://127.0.0.1:9/hook"},
            },
        }
    )


def _lead_ids() -> dict[str, str]:
    return {name: str(uuid.uuid4()) for name in ("uk1", "uk2", "fr1", "fr2", "de", "us", "old")}


def _events(ids: dict[str, str]) -> list[Envelope[Any]]:
    """Every path of the handler: new, repeat, not sales-ready, test, erased, seen before."""

    def lead(name: str, country: str, **options: Any) -> Any:
        return scored(lead_id=ids[name], country=country, captured_at=CAPTURED, **options)

    def erased(name: str) -> LeadErased:
        return LeadErased(lead_id=ids[name], erased_at=CAPTURED + timedelta(hours=1))

    data = [
        lead("uk1", "GB"),
        lead("uk2", "GB"),
        lead("fr1", "FR"),
        scored(country="GB", sales_ready=False),
        scored(country="GB", is_test=True),
        lead("de", "DE"),
        lead("uk1", "GB", company="Difference Engines"),  # already has an owner
        lead("us", "US"),  # no rule: the fallback queue, nothing to deliver
        erased("uk2"),
        lead("uk2", "GB", company="After Erasure"),
        lead("fr2", "FR"),
        lead("old", "GB", company="Seen Before"),  # stored, its assignment closed
        scored(country="DE"),
        scored(country="FR"),
    ]
    return [
        Envelope(data=d, source="leadflow/test", id=f"event-{n}", time=CAPTURED)
        for n, d in enumerate(data)
    ]


def _records(envelopes: Sequence[Envelope[Any]]) -> list[ConsumerRecord[bytes, bytes]]:
    return [record_of(envelope, offset) for offset, envelope in enumerate(envelopes)]


async def _seed(uows: Callable[[], UnitOfWork], config: RoutingConfig, ids: dict[str, str]) -> None:
    """A lead routed before, whose assignment was closed by a CRM outcome."""
    await route(uows, config, scored(lead_id=ids["old"], captured_at=CAPTURED), CAPTURED)
    await messagebus.bus(uows, config, clock=lambda: CAPTURED).handle(
        RecordOutcome(
            lead_id=ids["old"],
            outcome="disqualified",
            outcome_id=f"outcome-{ids['old']}",
            occurred_at=CAPTURED,
        )
    )


def _consumer(settings: Any, config: RoutingConfig, uows: Callable[[], UnitOfWork]) -> Any:
    runtime = ServiceRuntime("router", settings, store.outbox, store.inbox)
    wakes: list[int] = []
    consumers.register(runtime, config, lambda: wakes.append(1))
    return consumer_of(runtime, settings, uows), wakes


def _jsonish(value: Any) -> Any:
    return orjson.loads(orjson.dumps(value)) if value is not None else None


async def _snapshot(uows: Callable[[], UnitOfWork], ids: dict[str, str]) -> dict[str, Any]:
    """Everything routing wrote, with generated ids replaced and times made relative."""
    names = {lead_id: name for name, lead_id in ids.items()}
    async with uows() as uow:
        session = uow.session

        async def rows(table: sa.Table) -> list[Any]:
            return list((await session.execute(sa.select(table))).all())

        assignments = await rows(store.assignments)
        deliveries = await rows(store.deliveries)
        leads = await rows(store.leads)
        states = await rows(store.routing_state)
        outbox = (await session.execute(sa.select(store.outbox).order_by(store.outbox.c.id))).all()
        inbox = await rows(store.inbox)

    def cause(row: Any) -> str:
        # The seeded assignment's event id is random; the batch's events are numbered.
        return row.cause_event_id if row.cause_event_id.startswith("event-") else "seed"

    events = {a.assignment_id: cause(a) for a in assignments}

    def who(lead_id: str) -> str:
        return names.get(lead_id, "other")

    def since(row: Any, value: datetime | None) -> float | None:
        return None if value is None else (value - row.created_at).total_seconds()

    published = []
    for row in outbox:
        body = orjson.loads(row.value)
        body.pop("routed_at", None)
        body["assignment_id"] = events.get(body.get("assignment_id", ""), "-")
        body["lead_id"] = who(body["lead_id"])
        published.append((row.topic, who(row.key), body))
    return {
        "leads": sorted(
            (
                who(r.lead_id),
                r.email,
                _jsonish(r.contact),
                _jsonish(r.fields),
                r.channel,
                r.form_id,
                r.form_type,
                r.score,
                r.grade,
                bool(r.is_test),
                r.captured_at,
                r.erased_at,
            )
            for r in leads
        ),
        "assignments": sorted(
            (
                who(r.lead_id),
                cause(r),
                r.rep_id,
                r.queue,
                r.rule_id,
                r.status,
                _jsonish(r.reason),
                r.reassignments,
                r.captured_at,
                since(r, r.sla_due_at),
                since(r, r.delivered_at),
                r.closed_at is not None,
            )
            for r in assignments
        ),
        "deliveries": sorted(
            (
                who(r.lead_id),
                events[r.assignment_id],
                r.destination,
                r.kind,
                r.purpose,
                r.status,
                r.attempts,
                r.claims,
                r.last_error,
                _jsonish(r.progress),
                r.redrives,
                since(r, r.next_attempt_at),
                r.claimed_until,
            )
            for r in deliveries
        ),
        "states": {r.key: _jsonish(r.state) for r in states if r.key != store.LOCK_KEY},
        "outbox": published,
        "inbox": sorted((r.consumer.rsplit("-", 1)[-1], r.event_id) for r in inbox),
    }


async def _run(
    backend: str,
    settings_factory: Any,
    tmp_path: Path,
    ids: dict[str, str],
    events: list[Envelope[Any]],
    feed: Callable[[Any, list[Any]], Any],
) -> tuple[dict[str, Any], int]:
    settings = settings_factory(backend)
    config = _config(tmp_path / f"routed-{uuid.uuid4().hex[:6]}.jsonl")
    async with router_uows(settings) as uows:
        await _seed(uows, config, ids)
        consumer, wakes = _consumer(settings, config, uows)
        await feed(consumer, _records(events))
        return await _snapshot(uows, ids), len(wakes)


async def _whole(consumer: Any, records: list[Any]) -> None:
    await consumer._process_batch(records)


async def _one_by_one(consumer: Any, records: list[Any]) -> None:
    await consumer._process_one_by_one(records)


async def _batches_of_one(consumer: Any, records: list[Any]) -> None:
    for record in records:
        await consumer._process_batch([record])


async def test_a_batch_routes_exactly_as_one_by_one(backend, settings_factory, tmp_path):
    ids = _lead_ids()
    events = _events(ids)
    whole, whole_wakes = await _run(backend, settings_factory, tmp_path, ids, events, _whole)
    one_by_one, _ = await _run(backend, settings_factory, tmp_path, ids, events, _one_by_one)
    singles, single_wakes = await _run(
        backend, settings_factory, tmp_path, ids, events, _batches_of_one
    )
    assert whole == one_by_one
    assert whole == singles
    # The paths the events were meant to take were taken.
    routed = [a for a in whole["assignments"] if a[1] != "seed"]
    assert sorted(a[0] for a in routed) == sorted(
        ["uk1", "uk2", "fr1", "fr2", "de", "us", "old", "other", "other"]
    )
    erased = {lead[0]: lead for lead in whole["leads"]}["uk2"]
    assert erased[1] is None and erased[2] == {} and erased[-1] is not None
    assert {lead[0]: lead for lead in whole["leads"]}["old"][2]["company"] == "Seen Before"
    uk2 = [d for d in whole["deliveries"] if d[0] == "uk2"]
    assert {d[5] for d in uk2} == {store.CANCELLED}
    us = [a for a in routed if a[0] == "us"]
    assert us[0][3] == "triage" and us[0][10] == 0.0  # nothing to deliver: delivered at once
    assert whole_wakes == 1 and single_wakes == 9


@pytest.mark.parametrize("fail_at", [3, 9])
async def test_a_failing_batch_is_routed_one_by_one_with_the_same_result(
    backend, settings_factory, tmp_path, monkeypatch, fail_at
):
    """A handler failing mid-batch rolls the batch back; the fallback gives the same end."""
    ids = _lead_ids()
    events = _events(ids)
    expected, _ = await _run(backend, settings_factory, tmp_path, ids, events, _one_by_one)

    async def flaky(consumer: Any, records: list[Any]) -> None:
        handlers = consumer.handlers
        name = next(iter(handlers))
        real = handlers[name]
        calls = 0

        async def once_failing(envelope: Any, uow: Any) -> None:
            nonlocal calls
            calls += 1
            if calls == fail_at:
                raise RuntimeError("a passing failure")
            await real(envelope, uow)

        handlers[name] = once_failing
        consumer.retry_delay = 0
        await consumer.process(records)

    got, _ = await _run(backend, settings_factory, tmp_path, ids, events, flaky)
    assert got == expected
