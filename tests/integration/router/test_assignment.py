"""Fairness across replicas, capacity and working hours, the speed-to-lead SLA."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from aiokafka import AIOKafkaProducer

from services.router import messagebus, store
from services.router.commands import AcknowledgeAssignment
from services.router.handlers import Refused
from services.router.settings import RoutingConfig
from services.router.sla import SlaWorker
from shared import metrics
from shared.events import LeadRouted, decode, encode, new_event
from tests.conftest import PG_AVAILABLE, eventually
from tests.integration.router.support import (
    file_lines,
    route,
    router_uows,
    scored,
    settled,
    write_config,
)

WEDNESDAY_10 = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)


@pytest.mark.postgres
@pytest.mark.skipif(not PG_AVAILABLE, reason="PostgreSQL is not reachable")
async def test_300_leads_over_3_reps_across_two_replicas_split_evenly(
    broker, settings_factory, running_service, tmp_path
):
    routed_file = tmp_path / "routed.jsonl"
    config = write_config(
        tmp_path,
        {
            "reps": {"a": {}, "b": {}, "c": {}},
            "rules": [{"id": "all", "reps": ["a", "b", "c"], "destinations": ["file"]}],
            "destinations": {"file": {"type": "file", "path": str(routed_file)}},
        },
    )
    settings = settings_factory("postgres", kafka_bootstrap=broker.bootstrap, config=config)
    leads = [scored() for _ in range(300)]
    async with (
        running_service("router", settings) as one,
        running_service("router", settings, migrate=False) as two,
    ):
        await settled(one)
        await settled(two)
        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
        await producer.start()
        try:
            sent = []
            for lead in leads:
                key, value, headers = encode(new_event(lead, "leadflow/test"))
                sent.append(
                    await producer.send("leads.scored", value=value, key=key, headers=headers)
                )
            await asyncio.gather(*sent)
        finally:
            await producer.stop()
        await eventually(lambda: len(file_lines(routed_file)) >= 300, timeout=30)
        async with one.runtime.uow() as uow:
            rows = (
                await uow.session.execute(
                    sa.select(store.assignments.c.lead_id, store.assignments.c.rep_id)
                )
            ).all()
        both_consumed = [
            c.last_batch_at is not None for c in (*one.runtime.consumers, *two.runtime.consumers)
        ]
    assert Counter(rep for _, rep in rows) == {"a": 100, "b": 100, "c": 100}
    assert len({lead_id for lead_id, _ in rows}) == 300
    lines = file_lines(routed_file)
    assert len(lines) == 300 and len({line["lead_id"] for line in lines}) == 300
    assert all(both_consumed)  # both replicas took part


async def test_capacity_and_working_hours_are_respected(backend, settings_factory, tmp_path):
    config = RoutingConfig.model_validate(
        {
            "reps": {
                "a": {"max_open_per_day": 1, "timezone": "Europe/London"},
                "b": {
                    "timezone": "Europe/London",
                    "working_hours": {"start": "09:00", "end": "17:00"},
                },
            },
            "rules": [{"id": "all", "reps": ["a", "b"]}],
            "fallback": {"queue": "overnight"},
        }
    )
    settings = settings_factory(backend)
    leads = [scored() for _ in range(4)]
    times = [
        WEDNESDAY_10,
        WEDNESDAY_10 + timedelta(minutes=5),
        WEDNESDAY_10 + timedelta(hours=8),  # 18:00: b has gone home, a is full
        WEDNESDAY_10 + timedelta(days=1),  # Thursday: a's day starts afresh
    ]
    async with router_uows(settings) as uows:
        for lead, now in zip(leads, times, strict=True):
            await route(uows, config, lead, now)
        async with uows() as uow:
            got = [await store.active_assignment(uow.session, lead.lead_id) for lead in leads]
    assert [(g.rep_id, g.queue) for g in got] == [
        ("a", None),
        ("b", None),
        (None, "overnight"),
        ("a", None),
    ]
    reasons = {c["rep_id"]: c["reason"] for c in got[2].reason["candidates"]}
    assert reasons["a"] == "at capacity (1/1 today)"
    assert reasons["b"].startswith("outside working hours")
    assert got[2].status == "queued" and got[2].sla_due_at is None


async def test_unacknowledged_lead_is_reassigned_after_the_sla(backend, settings_factory, tmp_path):
    config = RoutingConfig.model_validate(
        {
            "reps": {"a": {}, "b": {}, "c": {}},
            "rules": [
                {"id": "hot", "reps": ["a", "b", "c"], "destinations": ["crm"], "sla_minutes": 5}
            ],
            "sla": {"max_reassignments": 1, "escalate_to": ["alerts"]},
            "destinations": {
                "crm": {"type": "file", "path": str(tmp_path / "crm.jsonl")},
                "alerts": {"type": "file", "path": str(tmp_path / "alerts.jsonl")},
            },
        }
    )
    settings = settings_factory(backend)
    lead = scored()
    breaches = metrics.sla_breaches_total.labels("hot")
    before = breaches._value.get()
    async with router_uows(settings) as uows:
        await route(uows, config, lead, WEDNESDAY_10)
        sla = SlaWorker(uows, config, on_breach=lambda: None)
        early = await sla.check(now=WEDNESDAY_10 + timedelta(minutes=4))
        first_breach = await sla.check(now=WEDNESDAY_10 + timedelta(minutes=6))
        async with uows() as uow:
            history = await store.lead_assignments(uow.session, lead.lead_id)
            deliveries = await store.list_deliveries(uow.session, lead_id=lead.lead_id)
            outbox = (await uow.session.execute(sa.select(store.outbox))).all()
        bus = messagebus.bus(uows, config)
        with pytest.raises(Refused) as refused:
            await bus.handle(AcknowledgeAssignment(history[0].assignment_id))
        # The second rep does not acknowledge either: nobody new is left (max 1 reassignment),
        # so the lead stays with them and the breach is escalated again.
        second_breach = await sla.check(now=WEDNESDAY_10 + timedelta(minutes=12))
        acked = await bus.handle(AcknowledgeAssignment(history[1].assignment_id))
        after_ack = await sla.check(now=WEDNESDAY_10 + timedelta(hours=1))
        async with uows() as uow:
            final = await store.lead_assignments(uow.session, lead.lead_id)
            escalations = await store.list_deliveries(uow.session, lead_id=lead.lead_id)
    assert early == []
    assert first_breach == [history[0].assignment_id]
    assert [(a.rep_id, a.status) for a in history] == [("a", "reassigned"), ("b", "open")]
    assert history[1].reassigned_from == history[0].assignment_id
    assert history[1].reason["candidates"][0]["reason"] == "had this lead already"
    assert sorted((d.destination, d.purpose) for d in deliveries) == [
        ("alerts", "escalation"),
        ("crm", "assigned"),
        ("crm", "reassigned"),
    ]
    routed = [decode(r.value, [(k, v.encode()) for k, v in r.headers]).data for r in outbox]
    assert [(e.rep_id, e.reassigned) for e in routed if isinstance(e, LeadRouted)] == [
        ("a", False),
        ("b", True),
    ]
    assert refused.value.status == 409
    assert second_breach == [history[1].assignment_id]
    assert acked.status == "acknowledged"
    assert after_ack == []
    assert [(a.rep_id, a.status) for a in final] == [("a", "reassigned"), ("b", "acknowledged")]
    assert sum(d.purpose == "escalation" for d in escalations) == 2
    assert breaches._value.get() - before == 2
