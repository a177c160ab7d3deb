"""The outbox relay on the real broker and both databases: every row once, in order.

On SQLite the relay reads past the last id it sent and deletes what Kafka has later,
in one write: nothing may be sent twice by a running relay, nothing skipped, and the
outbox empties once the rows are deleted.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from shared.events import LeadErased, decode
from shared.events.topics import LEADS_ERASURE
from shared.kafka.client import make_producer
from shared.kafka.outbox import OutboxRelay
from tests.conftest import consume_all
from tests.integration.test_plumbing import Probe, outbox


async def _publish(probe: Probe, leads: list[str]) -> None:
    async with probe.uow() as uow:
        for lead in leads:
            uow.publish(LeadErased(lead_id=lead, erased_at=datetime.now(UTC)))
        await uow.commit()


async def _outbox_rows(probe: Probe) -> int:
    async with probe.db.engine.connect() as conn:
        return int((await conn.execute(sa.select(sa.func.count()).select_from(outbox))).scalar())


async def test_every_row_is_published_once_in_order_and_then_deleted(
    backend: str, broker: Any, settings_factory: Any
) -> None:
    settings = settings_factory(backend, kafka_bootstrap=broker.bootstrap)
    probe = Probe(settings)
    await probe.setup()
    relay = OutboxRelay(probe.db, outbox, lambda: make_producer(settings, "probe"), service="probe")
    tag = uuid.uuid4().hex[:6]
    first = [f"first-{tag}-{i}" for i in range(30)]
    second = [f"second-{tag}-{i}" for i in range(12)]
    third = [f"third-{tag}-{i}" for i in range(5)]
    try:
        await _publish(probe, first)
        assert await relay.publish_batch() == 30
        assert await relay.publish_batch() == 0  # nothing sent twice; the sent are deleted
        await _publish(probe, second)  # new rows after a delete are not skipped
        assert await relay.publish_batch() == 12
        await relay.delete_sent()
        await _publish(probe, third)
        assert await relay.publish_batch() == 5
        assert await relay.publish_batch() == 0
        await relay.delete_sent()
        assert await _outbox_rows(probe) == 0
        # A relay started afresh (a restart) finds nothing left to send.
        again = OutboxRelay(
            probe.db, outbox, lambda: make_producer(settings, "probe"), service="probe"
        )
        assert await again.publish_batch() == 0
    finally:
        if relay.producer is not None:
            await relay.producer.stop()
        await probe.db.dispose()

    everything = first + second + third
    records = await consume_all(broker.bootstrap, LEADS_ERASURE, len(everything))
    seen = [decode(r.value, r.headers).subject for r in records]  # type: ignore[union-attr]
    mine = [lead for lead in seen if tag in lead]
    assert sorted(mine) == sorted(everything)
    assert len(mine) == len(set(mine))
    # One lead's events share a partition; within the relay's batches, id order is kept.
    by_partition: dict[int, list[str]] = {}
    for record, lead in zip(records, seen, strict=True):
        if tag in lead:
            by_partition.setdefault(record.partition, []).append(lead)
    order = {lead: i for i, lead in enumerate(everything)}
    for leads in by_partition.values():
        assert [order[lead] for lead in leads] == sorted(order[lead] for lead in leads)
