"""Nurture's batch consumer on SQLite and PostgreSQL: a batch handled whole leaves the same
rows as the same events handled one at a time, or one by one after a failed batch."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa

from services.nurture import store
from services.nurture.consumers import TOPICS, handlers, load_leads
from shared.db.uow import UnitOfWork
from shared.events import (
    Event,
    LeadConverted,
    LeadDisqualified,
    LeadEngaged,
    LeadErased,
    LeadScored,
    LeadUnsubscribed,
    encode,
    new_event,
)
from shared.kafka.consumer import EventConsumer
from tests.integration.nurture.support import (
    T0,
    config_of,
    deliver_scored,
    nurture_section,
    nurture_uows,
    scored,
)
from tests.records import consumer_record

CONFIG = config_of(nurture_section(2525))  # nothing is sent: no SMTP server needed


def record(event: Event | None, offset: int, *, topic: str | None = None) -> Any:
    """A consumer record carrying `event` (None: a body that is not JSON, a poison)."""

    if event is None:
        key, value = b"poison", b"{not json"
        headers = [
            ("ce_id", uuid.uuid4().hex.encode()),
            ("ce_type", LeadScored.TYPE.encode()),
            ("ce_source", b"leadflow/test"),
            ("ce_specversion", b"1.0"),
            ("content-type", b"application/json"),
        ]
    else:
        key, value, headers = encode(new_event(event, "leadflow/test"))
    return consumer_record(
        topic or (event.TOPIC if event is not None else LeadScored.TOPIC),
        key,
        value,
        headers,
        offset=offset,
    )


def consumer(settings: Any, uows: Callable[[], UnitOfWork]) -> EventConsumer:
    """Nurture's batch consumer at T0, not connected to Kafka: batches go to `process`."""
    return EventConsumer(
        service="nurture",
        group_id="test",
        topics=TOPICS,
        handlers=handlers(CONFIG, clock=lambda: T0),
        uow_factory=uows,
        settings=settings,
        retry_delay=0,
        before_batch=load_leads,
    )


def engaged(lead_id: str, kind: str) -> LeadEngaged:
    return LeadEngaged(lead_id=lead_id, kind=kind, occurred_at=T0)  # type: ignore[arg-type]


def unsubscribed(lead_id: str, method: str) -> LeadUnsubscribed:
    return LeadUnsubscribed(lead_id=lead_id, method=method, occurred_at=T0)  # type: ignore[arg-type]


def mixed_events() -> tuple[list[LeadScored], list[Event], dict[str, str]]:
    """Leads known before the batch, the batch's events, and names of some of its leads."""
    # Known before: one in the sequence, one unsubscribed.
    enrolled, gone = scored(), scored()
    before = [enrolled, gone]
    cold, twice, hot, doi = (
        scored(),
        scored(grade="warm"),
        scored(sales_ready=True),
        scored(form_id="newsletter", double_opt_in=True),
    )
    quitter, bounced, replied, customer, dropped, forgotten = (scored() for _ in range(6))
    same_address = scored(email=quitter.contact.email)
    stranger = str(uuid.uuid4())
    events: list[Event] = [
        cold,
        twice,
        hot,
        doi,
        doi.model_copy(update={"score": 12}),  # a second submission: one confirmation
        quitter,
        bounced,
        replied,
        customer,
        dropped,
        forgotten,
        twice.model_copy(update={"grade": "hot", "sales_ready": True, "score": 80}),
        unsubscribed(quitter.lead_id, "one_click"),
        same_address,  # the address was just suppressed: no sequence
        unsubscribed(bounced.lead_id, "bounce"),
        engaged(replied.lead_id, "reply"),
        engaged(cold.lead_id, "open"),
        LeadConverted(
            lead_id=customer.lead_id, value=Decimal("10"), outcome_id="o1", occurred_at=T0
        ),
        LeadDisqualified(lead_id=dropped.lead_id, outcome_id="o2", occurred_at=T0),
        LeadErased(lead_id=forgotten.lead_id, erased_at=T0),
        LeadErased(lead_id=stranger, erased_at=T0),  # never seen
        engaged(str(uuid.uuid4()), "click"),  # never seen, nothing to do
        enrolled.model_copy(update={"score": 11}),  # already in the sequence
        gone,  # unsubscribed earlier: stays out
        unsubscribed(enrolled.lead_id, "complaint"),
        enrolled.model_copy(update={"score": 12}),
    ]
    names = {
        "cold": cold.lead_id,
        "twice": twice.lead_id,
        "hot": hot.lead_id,
        "doi": doi.lead_id,
        "same_address": same_address.lead_id,
        "forgotten": forgotten.lead_id,
        "stranger": stranger,
        "enrolled": enrolled.lead_id,
    }
    return before, events, names


async def prepare(uows: Callable[[], UnitOfWork], before: list[LeadScored]) -> None:
    """The leads known before the batch: the first enrolled, the second unsubscribed."""
    for event in before:
        await deliver_scored(uows, CONFIG, event, T0)
    async with uows() as uow:
        await store.update_lead(uow.session, before[1].lead_id, unsubscribed_at=T0)
        await uow.commit()


async def tables(uows: Callable[[], UnitOfWork]) -> dict[str, Any]:
    """Every row nurture keeps, with generated ids replaced by what they point at."""
    async with uows() as uow:
        session = uow.session

        async def rows(table: sa.Table) -> list[dict[str, Any]]:
            return [dict(r._mapping) for r in (await session.execute(sa.select(table))).all()]

        leads = sorted(await rows(store.leads), key=lambda r: r["lead_id"])
        runs = await rows(store.enrollments)
        run_key = {r.pop("enrollment_id"): (r["lead_id"], r["sequence_id"], r["run"]) for r in runs}
        sends = await rows(store.sends)
        for send in sends:
            del send["send_id"]
            send["enrollment_id"] = run_key.get(send["enrollment_id"])
        suppressions = await rows(store.suppressions)
        inbox = {r["event_id"] for r in await rows(store.inbox) if "#dlq" not in r["event_id"]}

    def order(row: dict[str, Any]) -> str:
        return repr(sorted(row.items()))

    return {
        "leads": leads,
        "enrollments": sorted(runs, key=order),
        "sends": sorted(sends, key=order),
        "suppressions": sorted(suppressions, key=order),
        "inbox": inbox,
    }


async def outcome(settings: Any, before: list[LeadScored], batches: list[list[Any]]) -> Any:
    async with nurture_uows(settings) as uows:
        await prepare(uows, before)
        worker = consumer(settings, uows)
        for batch in batches:
            await worker.process(batch)
        return await tables(uows)


def fell_back(caplog: pytest.LogCaptureFixture) -> bool:
    """Did a batch fail and get handled again one by one (since the last look)?"""
    found = any("one by one" in r.getMessage() for r in caplog.records)
    caplog.clear()
    return found


async def test_a_batch_whole_one_at_a_time_and_one_by_one_leave_the_same_rows(
    backend, settings_factory, caplog
):
    caplog.set_level(logging.WARNING, logger="shared.kafka.consumer")
    before, events, names = mixed_events()
    records = [record(e, i) for i, e in enumerate(events)]
    poison = record(None, len(records))

    whole = await outcome(settings_factory(backend), before, [records])
    assert not fell_back(caplog)
    single = await outcome(settings_factory(backend), before, [[r] for r in records])
    assert not fell_back(caplog)
    # A poison record fails the batch: it is handled again event by event, in savepoints.
    fallback = await outcome(settings_factory(backend), before, [[*records, poison]])
    assert fell_back(caplog)

    assert whole == single
    assert whole == fallback
    assert len(whole["inbox"]) == len(records)

    leads = {row["lead_id"]: row for row in whole["leads"]}
    runs: dict[str, list[Any]] = {}
    for run in whole["enrollments"]:
        runs.setdefault(run["lead_id"], []).append(run)
    sends: dict[str, list[Any]] = {}
    for send in whole["sends"]:
        sends.setdefault(send["lead_id"], []).append(send)
    cold, twice, doi = names["cold"], names["twice"], names["doi"]
    assert [(r["sequence_id"], r["status"]) for r in runs[cold]] == [("welcome", "active")]
    assert [(s["step"], s["status"]) for s in sends[cold]] == [(1, store.SCHEDULED)]
    assert [(r["status"], r["exit_reason"]) for r in runs[twice]] == [("exited", "sales_ready")]
    assert [s["status"] for s in sends[twice]] == [store.CANCELLED]
    assert leads[names["hot"]]["sales_ready"] and names["hot"] not in runs
    assert leads[doi]["consent"] == store.CONSENT_PENDING
    assert [s["kind"] for s in sends[doi]] == [store.CONFIRM]
    assert names["same_address"] not in runs
    assert leads[names["forgotten"]]["contact"] == {} and leads[names["forgotten"]]["erased_at"]
    assert leads[names["stranger"]]["erased_at"] == T0
    assert [(r["status"], r["exit_reason"]) for r in runs[names["enrolled"]]] == [
        ("exited", "unsubscribed")
    ]
    assert {s["reason"] for s in whole["suppressions"]} == {"unsubscribed", "bounced", "complaint"}


async def test_redelivery_of_a_handled_batch_changes_nothing(backend, settings_factory):
    before, events, _ = mixed_events()
    records = [record(e, i) for i, e in enumerate(events)]
    once = await outcome(settings_factory(backend), before, [records])
    twice = await outcome(settings_factory(backend), before, [records, records])
    assert once == twice


async def test_a_batch_reads_and_writes_each_table_once(backend, settings_factory):
    settings = settings_factory(backend)
    leads = [scored() for _ in range(20)]
    statements: list[str] = []
    async with nurture_uows(settings) as uows:
        worker = consumer(settings, uows)
        engine = uows().db.engine.sync_engine

        def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
            statements.append(statement.split()[0].upper())

        sa.event.listen(engine, "before_cursor_execute", count)
        try:
            await worker.process([record(e, i) for i, e in enumerate(leads)])
        finally:
            sa.event.remove(engine, "before_cursor_execute", count)
        found = await tables(uows)
    # The inbox marks are claimed up front in one INSERT ... RETURNING; then one read each
    # of leads, enrollments and suppressions; then leads, enrollments and sends.
    assert statements.count("SELECT") == 3, statements
    assert statements.count("INSERT") == 4, statements
    assert statements.count("UPDATE") == 0, statements
    assert len(found["enrollments"]) == len(found["sends"]) == 20


async def test_a_row_the_database_refuses_fails_only_its_own_event(backend, settings_factory):
    if backend == "sqlite":
        pytest.skip("SQLite does not enforce column lengths")
    settings = settings_factory(backend)
    good, other = scored(), scored()
    too_long = scored(lead_id="x" * 100)  # lead ids are at most 64 characters
    async with nurture_uows(settings) as uows:
        worker = consumer(settings, uows)
        await worker.process([record(good, 0), record(too_long, 1), record(other, 2)])
        found = await tables(uows)
        async with uows() as uow:
            topics = (await uow.session.execute(sa.select(store.outbox.c.topic))).scalars().all()
    assert {row["lead_id"] for row in found["leads"]} == {good.lead_id, other.lead_id}
    assert len(found["enrollments"]) == 2
    assert list(topics) == ["leads.scored.dlq"]
