"""A batch folded whole gives the same read model and report as its events one by one.

The consumer hands insights each fetched batch whole: the batch's lead rows are read
in one statement, events are folded in memory and each row is written once at
commit. The campaign of campaign.py (captures, repeat touches, scores out of order,
routing, outcomes, engagement, unsubscribes, a failed delivery, an erasure, a lead
no capture named) is replayed into fresh databases in one batch, in small batches,
one event per batch, and through the consumer's savepoint path: every way leaves
the same rows and the same report, the campaign's expected one.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeAlias, cast

import pytest
import sqlalchemy as sa
from aiokafka.structs import ConsumerRecord

from services.insights import consumers, messagebus, queries, store
from services.insights import settings as insights_settings
from services.insights.handlers import RecordSpend
from shared.config import load_config
from shared.db import Database, UnitOfWork
from shared.events import Envelope, Event, encode
from shared.events.topics import TOPICS
from shared.kafka.consumer import EventConsumer
from tests.conftest import migrate_service
from tests.integration.insights.campaign import (
    CONFIG_YAML,
    EXPECTED_CHANNELS,
    EXPECTED_TOTALS,
    POSTED_SPEND,
    SINCE,
    UNTIL,
    Campaign,
    build_campaign,
)
from tests.records import consumer_record

Record: TypeAlias = ConsumerRecord[bytes, bytes]


def records_of(envelopes: Sequence[Envelope[Event]]) -> list[Record]:
    """The campaign as the broker hands it over: later topics first (a lead's routing
    and outcomes tend to arrive before its capture), each topic in publish order."""
    order = {topic: i for i, topic in enumerate(reversed(TOPICS))}
    out = []
    for offset, envelope in enumerate(sorted(envelopes, key=lambda e: order[e.topic])):
        key, value, headers = encode(envelope)
        out.append(record(envelope.topic, offset, key, value, headers))
    return out


def record(
    topic: str, offset: int, key: bytes, value: bytes, headers: Sequence[tuple[str, bytes]]
) -> Record:
    return consumer_record(topic, key, value, headers, offset=offset)


def poison(offset: int) -> Record:
    """A record no handler can read: the consumer falls back to one event per savepoint."""
    headers = [
        ("ce_id", str(uuid.uuid4()).encode()),
        ("ce_type", b"leadflow.lead.engaged.v1"),
        ("ce_source", b"leadflow/test"),
        ("ce_specversion", b"1.0"),
    ]
    return record("leads.engagement", offset, b"x", b"{not json", headers)


class Replica:
    """A fresh insights database with the consumer `leadflow serve insights` runs."""

    def __init__(self, db: Database, consumer: EventConsumer) -> None:
        self.db = db
        self.consumer = consumer

    def uow(self) -> UnitOfWork:
        return UnitOfWork(self.db, store.outbox, store.inbox, "leadflow/test")

    async def feed(self, batches: Sequence[Sequence[Record]]) -> None:
        for batch in batches:
            await self.consumer.process(batch)

    async def snapshot(self, config_path: Path) -> dict[str, Any]:
        """Every read-model row (but its write time) and the campaign window's report."""
        config = insights_settings.load(load_config(config_path))
        async with self.uow() as uow:
            facts = [c for c in store.leads.columns if c.name != "updated_at"]
            tables = {
                "leads": (sa.select(*facts).order_by(store.leads.c.lead_id)),
                "touches": sa.select(store.touches).order_by(store.touches.c.submission_id),
                "conversions": sa.select(store.conversions).order_by(
                    store.conversions.c.lead_id, store.conversions.c.outcome_id
                ),
            }
            rows = {name: (await uow.session.execute(q)).all() for name, q in tables.items()}
            report = await queries.build_channel_report(uow, config, SINCE, UNTIL)
        return {**rows, "report": report.model_dump(mode="json")}


@pytest.fixture
async def replica_factory(
    settings_factory: Any, backend: str, tmp_path: Path
) -> AsyncIterator[Callable[[], Any]]:
    config = tmp_path / "leadflow.yaml"
    config.write_text(CONFIG_YAML)
    opened: list[Database] = []

    async def open_replica() -> Replica:
        settings = settings_factory(backend, config=config)
        await migrate_service(settings, "insights")
        db = Database(
            settings.database_url_for("insights"),
            service="insights",
            schema=settings.schema_for("insights"),
        )
        opened.append(db)
        consumer = EventConsumer(
            service="insights",
            group_id=settings.group_id("insights"),
            topics=TOPICS,
            handlers=consumers.HANDLERS,
            uow_factory=lambda: UnitOfWork(db, store.outbox, store.inbox, "leadflow/test"),
            settings=settings,
            retry_delay=0,
            before_batch=consumers.load_leads,
        )
        replica = Replica(db, consumer)
        for channel, posted in POSTED_SPEND:
            body = cast(dict[str, Any], posted)
            spend = RecordSpend(
                channel=channel,
                day=date.fromisoformat(str(body["date"])),
                amount=Decimal(str(body["amount"])),
                impressions=body.get("impressions"),
                clicks=body.get("clicks"),
            )
            await messagebus.bus(replica.uow).handle(spend)
        return replica

    try:
        yield open_replica
    finally:
        for db in opened:
            await db.dispose()


async def test_one_batch_small_batches_and_one_by_one_leave_the_same_read_model(
    replica_factory: Any, tmp_path: Path
) -> None:
    records = records_of(build_campaign().envelopes)
    config = tmp_path / "leadflow.yaml"

    whole = await replica_factory()
    await whole.feed([records])
    expected = await whole.snapshot(config)
    assert expected["report"]["channels"] == EXPECTED_CHANNELS
    assert expected["report"]["totals"] == EXPECTED_TOTALS

    one_by_one = await replica_factory()
    await one_by_one.feed([[r] for r in records])
    assert await one_by_one.snapshot(config) == expected

    small = await replica_factory()
    await small.feed([records[i : i + 7] for i in range(0, len(records), 7)])
    assert await small.snapshot(config) == expected

    # A poison record makes the consumer redo the batch one event per savepoint.
    savepoints = await replica_factory()
    await savepoints.feed([[poison(len(records)), *records]])
    assert await savepoints.snapshot(config) == expected
    async with savepoints.uow() as uow:
        dead = await uow.session.execute(sa.select(store.outbox.c.topic))
        assert dead.scalars().all() == ["leads.engagement.dlq"]

    # Redelivered, in one batch or one by one, the campaign changes nothing.
    await whole.feed([records])
    await one_by_one.feed([[r] for r in records])
    assert await whole.snapshot(config) == expected
    assert await one_by_one.snapshot(config) == expected


async def test_a_lead_in_many_batches_and_many_events_in_one_batch_agree(
    replica_factory: Any, tmp_path: Path
) -> None:
    """One lead's every event in a single batch (the row written once) and spread over
    batches that each read the row the previous one wrote."""
    campaign = Campaign()
    start = datetime(2024, 11, 4, 9, tzinfo=UTC)
    campaign.capture("a", "google_ads", start)
    campaign.score("a", "cold", timedelta(days=2))  # the newest score, published first
    for seconds, grade in ((60, "warm"), (120, "hot")):
        campaign.score("a", grade, timedelta(seconds=seconds), sales_ready=True)
    campaign.route("a", 300)
    campaign.route("a", 200)  # an earlier routing seen later: it sets speed-to-lead
    campaign.capture("a", "google_ads", start, repeat_via="facebook_ads")
    campaign.convert("a", "10.00", "deal-1")
    campaign.convert("a", "10.00", "deal-1")  # the same outcome twice
    campaign.engage("a")
    campaign.delivery_failed("a")
    campaign.erase("a")
    records = records_of(campaign.envelopes)
    config = tmp_path / "leadflow.yaml"

    whole = await replica_factory()
    await whole.feed([records])
    expected = await whole.snapshot(config)
    (lead,) = expected["leads"]
    assert (lead.grade, lead.speed_to_lead_ms) == ("cold", 200_000)
    assert lead.erased_at is not None and len(expected["conversions"]) == 1

    spread = await replica_factory()
    await spread.feed([records[i : i + 2] for i in range(0, len(records), 2)])
    assert await spread.snapshot(config) == expected
