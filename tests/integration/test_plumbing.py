"""The event plumbing's guarantees on the real broker and both databases.

- a redelivered event (consumer died after its DB commit, before its offset commit)
  changes nothing;
- a poison message goes to the topic's .dlq with error, handler and attempt count,
  the partition keeps moving, and a re-drive is handled once the handler is fixed;
- with the broker unreachable, capture keeps answering 202, and every lead flows once
  when it is back.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa
from aiokafka import AIOKafkaProducer

from shared.db import Database, UnitOfWork, add_plumbing_tables, make_metadata
from shared.events import Envelope, LeadCaptured, LeadErased, decode, encode
from shared.events.topics import LEADS_CAPTURED, LEADS_ERASURE, dlq_topic
from shared.kafka.consumer import EventConsumer
from shared.kafka.dlq import read_dead_letters, redrive
from tests.conftest import consume_all, eventually

metadata = make_metadata()
outbox, inbox = add_plumbing_tables(metadata)
effects = sa.Table(
    "effects",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("lead_id", sa.String(64), nullable=False),
)


class Probe:
    """A minimal service: one table of effects, one handler."""

    def __init__(self, settings: Any) -> None:
        self.settings = settings
        self.db = Database(
            settings.database_url_for("probe"), service="probe", schema=settings.schema_for("probe")
        )
        self.fail_on: set[str] = set()

    async def setup(self) -> None:
        await self.db.ensure_schema()
        async with self.db.engine.begin() as conn:
            await conn.run_sync(metadata.create_all)

    def uow(self) -> UnitOfWork:
        return UnitOfWork(self.db, outbox, inbox, source="leadflow/probe")

    async def handle_lead_erased(self, envelope: Envelope[Any], uow: UnitOfWork) -> None:
        if envelope.subject in self.fail_on:
            raise ValueError("cannot handle this lead")
        await uow.session.execute(sa.insert(effects).values(lead_id=envelope.subject))

    async def handle_lead_captured(self, envelope: Envelope[Any], uow: UnitOfWork) -> None:
        await uow.session.execute(sa.insert(effects).values(lead_id=envelope.subject))

    def consumer(self, topic: str = LEADS_ERASURE) -> EventConsumer:
        return EventConsumer(
            service="probe",
            group_id=self.settings.group_id("probe"),
            topics=[topic],
            handlers={
                LeadErased.TYPE: self.handle_lead_erased,
                LeadCaptured.TYPE: self.handle_lead_captured,
            },
            uow_factory=self.uow,
            settings=self.settings,
            retry_delay=0.01,
        )

    async def effect_leads(self) -> list[str]:
        async with self.db.engine.connect() as conn:
            return list((await conn.execute(sa.select(effects.c.lead_id))).scalars())

    async def publish_outbox_once(self, bootstrap: str) -> int:
        """Move outbox rows (dead letters) to Kafka."""
        from shared.kafka.client import make_producer
        from shared.kafka.outbox import OutboxRelay

        relay = OutboxRelay(
            self.db, outbox, lambda: make_producer(self.settings, "probe"), service="probe"
        )
        try:
            return await relay.publish_batch()
        finally:
            if relay.producer is not None:
                await relay.producer.stop()


async def _produce(
    bootstrap: str,
    envelopes: list[Envelope[Any]],
    raw: list[tuple[bytes, bytes, list[tuple[str, bytes]]]] | None = None,
) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for envelope in envelopes:
            key, value, headers = encode(envelope)
            await producer.send_and_wait(envelope.topic, value=value, key=key, headers=headers)
        for key, value, headers in raw or []:
            await producer.send_and_wait(LEADS_ERASURE, value=value, key=key, headers=headers)
    finally:
        await producer.stop()


def _erased(lead_id: str) -> Envelope[Any]:
    return Envelope(data=LeadErased(lead_id=lead_id, erased_at=datetime.now(UTC)), source="test")


async def test_redelivery_after_a_crash_before_the_offset_commit_changes_nothing(
    backend, broker, settings_factory
):
    settings = settings_factory(backend, kafka_bootstrap=broker.bootstrap)
    probe = Probe(settings)
    await probe.setup()
    leads = [f"lead-{i}-{uuid.uuid4().hex[:6]}" for i in range(20)]
    await _produce(broker.bootstrap, [_erased(lead) for lead in leads])

    crashed = probe.consumer()
    await crashed.start()
    assert crashed._consumer is not None
    never = asyncio.Event()

    async def die_before_offset_commit(*_: Any, **__: Any) -> None:
        await never.wait()  # the process "dies" here: effects committed, offsets not

    crashed._consumer.commit = die_before_offset_commit  # type: ignore[method-assign]
    await eventually(lambda: _count(probe, 20), timeout=15)
    crashed._task.cancel()  # type: ignore[union-attr]
    await asyncio.gather(crashed._task, return_exceptions=True)  # type: ignore[arg-type]
    await crashed._consumer.stop()

    restarted = probe.consumer()
    await restarted.start()
    try:
        await eventually(lambda: restarted.last_batch_at is not None, timeout=15)
        await asyncio.sleep(0.5)
    finally:
        await restarted.stop()
    assert sorted(await probe.effect_leads()) == sorted(leads)


async def _count(probe: Probe, expected: int) -> bool:
    return len(await probe.effect_leads()) >= expected


async def test_poison_message_is_dead_lettered_and_the_partition_keeps_moving(
    backend, broker, settings_factory
):
    settings = settings_factory(backend, kafka_bootstrap=broker.bootstrap)
    probe = Probe(settings)
    await probe.setup()
    suffix = uuid.uuid4().hex[:6]
    # One key → one partition: the good event after the poison one must still be handled.
    good_before, poison, good_after = (f"k-{suffix}", f"k-{suffix}", f"k-{suffix}")
    envelopes = [_erased(good_before), _erased(poison), _erased(good_after)]
    poison_event_id = envelopes[1].id
    probe.fail_on = set()
    garbage = (
        b"k-garbage",
        b"{not json",
        [
            ("ce_type", b"leadflow.lead.erased.v1"),
            ("ce_id", b"garbage-1"),
            ("ce_source", b"x"),
            ("ce_specversion", b"1.0"),
        ],
    )

    handled: list[str] = []
    original = probe.handle_lead_erased

    async def fail_on_the_poison_event(envelope: Envelope[Any], uow: UnitOfWork) -> None:
        if envelope.id == poison_event_id:
            raise ValueError("cannot handle this lead")
        handled.append(envelope.id)
        await original(envelope, uow)

    consumer = probe.consumer()
    consumer.handlers[LeadErased.TYPE] = fail_on_the_poison_event
    await _produce(broker.bootstrap, envelopes, raw=[garbage])
    await consumer.start()
    try:
        await eventually(lambda: _count(probe, 2), timeout=15)
    finally:
        await consumer.stop()
    assert handled == [envelopes[0].id, envelopes[2].id]
    assert await probe.publish_outbox_once(broker.bootstrap) == 2
    letters = await read_dead_letters(settings, dlq_topic(LEADS_ERASURE))
    by_id = {letter.event_id: letter for letter in letters}
    assert set(by_id) == {poison_event_id, "garbage-1"}
    assert by_id[poison_event_id].attempts == 3
    assert by_id[poison_event_id].handler == "fail_on_the_poison_event"
    assert "cannot handle this lead" in (by_id[poison_event_id].error or "")
    assert by_id["garbage-1"].handler == "decode"

    # Fix the handler, re-drive: the poison event is handled exactly once now.
    await redrive(settings, [by_id[poison_event_id]])
    fixed = probe.consumer()
    await fixed.start()
    try:
        await eventually(lambda: _count(probe, 3), timeout=15)
        await asyncio.sleep(0.5)
    finally:
        await fixed.stop()
    assert len(await probe.effect_leads()) == 3


@pytest.mark.slow
async def test_capture_keeps_accepting_with_the_broker_down_and_every_lead_flows_once(
    backend, broker, settings_factory, running_service
):
    settings = settings_factory(backend, kafka_bootstrap=broker.bootstrap)
    probe = Probe(settings)
    await probe.setup()
    emails = [f"down-{i}-{uuid.uuid4().hex[:6]}@example.com" for i in range(5)]
    async with running_service("capture", settings) as capture:
        await capture.client.post("/v1/forms/newsletter", json={"email": "warm@example.com"})
        broker.pause()
        try:
            statuses = []
            for email in emails:
                response = await capture.client.post("/v1/forms/newsletter", json={"email": email})
                statuses.append(response.status_code)
            assert statuses == [202] * 5
            ready = await capture.client.get("/readyz")
            assert ready.status_code == 503
        finally:
            broker.resume()
        records = await consume_all(broker.bootstrap, LEADS_CAPTURED, 6, timeout=40)
    captured = {decode(r.value, r.headers).data.contact.email for r in records}  # type: ignore[union-attr]
    assert set(emails) <= captured
    consumer = probe.consumer(LEADS_CAPTURED)
    await consumer.start()
    try:
        await eventually(lambda: _count(probe, 6), timeout=15)
        await asyncio.sleep(0.5)
    finally:
        await consumer.stop()
    assert len(await probe.effect_leads()) == 6  # at-least-once on the wire, once in effect
