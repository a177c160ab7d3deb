"""Helpers for scoring's integration tests: events on the broker, units of work, read-back."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import yaml
from aiokafka import AIOKafkaProducer

from services.scoring import store
from shared.db.engine import Database
from shared.db.uow import UnitOfWork
from shared.events import LeadScored, decode, encode, new_event
from shared.events.contracts import Event
from tests.conftest import EXAMPLE_CONFIG, consume_all, eventually
from tests.records import record_of


async def publish(bootstrap: str, events: list[Event]) -> list[str]:
    """Publish events as capture and nurture would; returns their event ids."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    ids = []
    try:
        for data in events:
            envelope = new_event(data, "leadflow/test")
            key, value, headers = encode(envelope)
            await producer.send_and_wait(data.TOPIC, value=value, key=key, headers=headers)
            ids.append(envelope.id)
    finally:
        await producer.stop()
    return ids


async def scored_events(bootstrap: str, expected: int, timeout: float = 15.0) -> list[LeadScored]:
    """The lead.scored events on leads.scored (at least `expected`, or what came in time)."""
    records = await consume_all(bootstrap, "leads.scored", expected, timeout=timeout)
    events = []
    for record in records:
        envelope = decode(record.value, record.headers)
        assert envelope is not None and isinstance(envelope.data, LeadScored)
        events.append(envelope.data)
    return events


def example_with(tmp_path: Path, change: Callable[[dict[str, Any]], None]) -> Path:
    """A copy of the example config with its `scoring` section changed."""
    data = yaml.safe_load(EXAMPLE_CONFIG.read_text())
    change(data["scoring"])
    path = tmp_path / f"leadflow-{uuid.uuid4().hex[:6]}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@contextlib.asynccontextmanager
async def scoring_uows(settings: Any) -> AsyncIterator[Callable[[], UnitOfWork]]:
    """Units of work on a migrated scoring database, without starting the service."""
    from tests.conftest import migrate_service

    await migrate_service(settings, "scoring")
    db = Database(
        settings.database_url_for("scoring"),
        service="scoring",
        schema=settings.schema_for("scoring"),
    )
    try:
        yield lambda: UnitOfWork(db, store.outbox, store.inbox, "leadflow/scoring")
    finally:
        await db.dispose()


async def settled(service: Any) -> None:
    """Wait until the service's consumers have joined their group."""
    await eventually(
        lambda: service.runtime.consumers and all(c.running for c in service.runtime.consumers),
        timeout=15,
    )


def record(event: Event, offset: int = 0, *, event_id: str | None = None) -> Any:
    """A consumer record carrying `event`, as the broker would hand it over."""
    envelope = new_event(event, "leadflow/test")
    if event_id is not None:
        envelope = type(envelope)(data=event, source="leadflow/test", id=event_id)
    return record_of(envelope, offset)


def consumer(settings: Any, uows: Callable[[], UnitOfWork], model: Any, clock: Any) -> Any:
    """Scoring's batch consumer, not connected to Kafka: batches go to `process`."""
    from services.scoring.consumers import TOPICS, load_leads
    from services.scoring.messagebus import event_handlers
    from shared.kafka.consumer import EventConsumer

    return EventConsumer(
        service="scoring",
        group_id="test",
        topics=TOPICS,
        handlers=event_handlers(model, clock),
        uow_factory=uows,
        settings=settings,
        retry_delay=0,
        before_batch=load_leads,
    )


async def outbox(uows: Callable[[], UnitOfWork]) -> list[tuple[str, Any]]:
    """(topic, event or raw value) of every row in scoring's outbox, oldest first."""
    import sqlalchemy as sa

    async with uows() as uow:
        rows = (
            await uow.session.execute(sa.select(store.outbox).order_by(store.outbox.c.id))
        ).all()
    found = []
    for row in rows:
        headers = [(k, v.encode()) for k, v in row.headers]
        if row.topic.endswith(".dlq"):
            found.append((row.topic, row.value))
            continue
        envelope = decode(row.value, headers)
        assert envelope is not None
        found.append((row.topic, envelope.data))
    return found


async def scored_in_outbox(uows: Callable[[], UnitOfWork]) -> list[LeadScored]:
    return [e for t, e in await outbox(uows) if t == "leads.scored"]


async def table(uows: Callable[[], UnitOfWork], which: Any, **where: Any) -> list[Any]:
    """Rows of one of scoring's tables."""
    import sqlalchemy as sa

    query = sa.select(which)
    for name, value in where.items():
        query = query.where(which.c[name] == value)
    async with uows() as uow:
        return list((await uow.session.execute(query)).all())
