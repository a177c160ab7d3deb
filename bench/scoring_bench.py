"""Scoring throughput: events/s of one scoring process next to a bare consume-and-insert loop.

Both read the same events from the same embedded broker and write to the same
database (SQLite, then PostgreSQL) in the same run:

- bare: an aiokafka consumer group that inserts every record (id, key, value) into
  one table, one transaction and one offset commit per fetched batch. No decoding,
  no inbox, no outbox: the ceiling of consuming into a database.
- bare_decoded: the same loop, reading each record as its typed CloudEvent first
  (the pydantic validation every leadflow consumer does).
- writes_floor: the same loop writing what scoring writes per event (inbox mark,
  logged event, history row, outbox row; each lead's row once per batch) through
  the same bulk statements, with no rule evaluated: the ceiling of any scoring model
  that keeps scoring's guarantees.
- scoring: the scoring service as `leadflow serve scoring` builds it (consumer with
  inbox and dead-letter handling, the example model from leadflow.example.yaml, the
  event log, history and lead.scored through the outbox, published by its relay; its
  start-up heap frozen once started). It reads the events once untimed; then the same
  leads come back (a second touch, more engagement) and that run is timed, so every
  timed event scores a known lead and publishes its lead.scored (`published`), whatever
  order the consumer reads the two topics in.

Every loop runs in this process with its start-up heap frozen, as `leadflow serve` does.
The events: `--leads` captured leads (demo requests and guide downloads), each
followed by opens, clicks and a reply on leads.engagement, `--events` in all. Each
reference loop (bare, bare_decoded, writes_floor) runs `--repeat` times and its best
run is the one compared. Each reference rate counts from the first batch fetched to
the last one committed; the scoring rate from the first batch committed to the last,
without that first batch.

    python bench/scoring_bench.py [--events 20000] [--repeat 3] [--out results.json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import sqlalchemy as sa  # noqa: E402
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer  # noqa: E402
from prometheus_client import REGISTRY  # noqa: E402
from sqlalchemy.ext.asyncio import AsyncSession  # noqa: E402

from leadflow.processes import free_port, start_broker  # noqa: E402
from shared.db.engine import Database  # noqa: E402
from shared.events import (  # noqa: E402
    Attribution,
    Contact,
    LeadCaptured,
    LeadEngaged,
    decode,
    encode,
    new_event,
)
from shared.events.contracts import Event  # noqa: E402
from shared.events.topics import LEADS_CAPTURED, LEADS_ENGAGEMENT  # noqa: E402
from shared.settings import Settings  # noqa: E402

PG_URL = os.environ.get(
    "LEADFLOW_BENCH_PG_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
TOPICS = (LEADS_CAPTURED, LEADS_ENGAGEMENT)
ENGAGEMENT = ("open", "click", "open", "click", "reply", "click", "open", "click")


def make_events(total: int, per_lead: int, lead_ids: list[str] | None = None) -> list[Event]:
    """Captures first, then every lead's engagement: the order capture and nurture produce.

    With `lead_ids`, the leads are known already: each capture is a returning lead's
    second touch.
    """
    leads = len(lead_ids) if lead_ids else max(total // per_lead, 1)
    now = datetime.now(UTC)
    captures: list[Event] = []
    engagement: list[Event] = []
    for i in range(leads):
        lead_id = lead_ids[i] if lead_ids else str(uuid.uuid4())
        demo = i % 2 == 0
        touch = Attribution(channel="google_ads" if demo else "direct", source="form")
        captures.append(
            LeadCaptured(
                lead_id=lead_id,
                submission_id=str(uuid.uuid4()),
                is_new_lead=not lead_ids,
                touch_number=2 if lead_ids else 1,
                source="form",
                form_id="demo-request" if demo else "guide-download",
                form_type="demo_request" if demo else "download",
                channel=touch.channel,
                attribution=touch,
                first_touch=touch,
                contact=Contact(
                    email=f"lead{i}@{'analytical-engines.co.uk' if demo else 'gmail.com'}",
                    first_name="Ada",
                    job_title="Head of Marketing" if i % 3 else None,
                    country="GB" if i % 4 else "BR",
                ),
                fields={"company_size": str(20 + (i * 37) % 900), "message": "x" * 200},
                marketing_consent=True,
                captured_at=now,
            )
        )
        for j in range(per_lead - 1):
            engagement.append(
                LeadEngaged(
                    lead_id=lead_id,
                    kind=ENGAGEMENT[j % len(ENGAGEMENT)],  # type: ignore[arg-type]
                    sequence_id="welcome",
                    step=1 + j // 2,
                    link_id="case-study" if ENGAGEMENT[j % len(ENGAGEMENT)] == "click" else None,
                    occurred_at=now,
                )
            )
    events = captures + engagement
    return events[:total]


async def produce(bootstrap: str, events: list[Event]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        futures = []
        for data in events:
            key, value, headers = encode(new_event(data, "leadflow/bench"))
            futures.append(await producer.send(data.TOPIC, value=value, key=key, headers=headers))
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


def settings_for(backend: str, tmp: Path, bootstrap: str) -> Settings:
    prefix = f"bench{uuid.uuid4().hex[:6]}"
    values: dict[str, Any] = {
        "env": "test",
        "config": ROOT / "leadflow.example.yaml",
        "var_dir": tmp / "var",
        "kafka_bootstrap": bootstrap,
        "kafka_client_prefix": prefix,
        "kafka_session_timeout_ms": 2000,
        "log_level": "WARNING",
    }
    if backend == "postgres":
        values["database_url"] = PG_URL
        values["database_schema_prefix"] = f"{prefix}_"
    else:
        values["database_url"] = f"sqlite+aiosqlite:///{tmp}/{prefix}_{{service}}.db"
    return Settings(**values)


# The bare loop --------------------------------------------------------------------------

bare_metadata = sa.MetaData()
bare_events = sa.Table(
    "bare_events",
    bare_metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("event_id", sa.String(200), nullable=False),
    sa.Column("key", sa.String(200), nullable=False),
    sa.Column("value", sa.LargeBinary, nullable=False),
)


Records = list[Any]


async def consume_into(
    settings: Settings,
    db: Database,
    group: str,
    total: int,
    write: Callable[[AsyncSession, Records], Awaitable[None]],
) -> dict[str, float]:
    """Consume `total` records as a group member; per fetched batch, `write` them in one
    transaction, then commit the offsets. Timed from the first batch fetched to the last
    one committed."""
    consumer = AIOKafkaConsumer(
        *TOPICS,
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=settings.group_id(group),
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=settings.consumer_batch_size,
        session_timeout_ms=settings.kafka_session_timeout_ms,
        heartbeat_interval_ms=400,
    )
    await consumer.start()
    done, started = 0, 0.0
    try:
        while done < total:
            batch = await consumer.getmany(timeout_ms=500, max_records=settings.consumer_batch_size)
            if not batch:
                continue
            if not started:
                started = time.perf_counter()
            records = [r for records in batch.values() for r in records]
            async with db.write_gate(), db.session() as session, session.begin():
                await write(session, records)
            await consumer.commit()
            done += len(records)
        elapsed = time.perf_counter() - started
    finally:
        await consumer.stop()
        await db.dispose()
    return {"events": done, "seconds": round(elapsed, 3), "events_per_s": round(done / elapsed, 1)}


async def bare_loop(settings: Settings, total: int, *, decoded: bool = False) -> dict[str, float]:
    """Consume every record and insert it: one transaction and one offset commit per batch.

    `decoded`: also read each record as its typed CloudEvent first (as every consumer must).
    """
    db = Database(
        settings.database_url_for("bare"), service="bare", schema=settings.schema_for("bare")
    )
    await db.ensure_schema()
    async with db.engine.begin() as conn:
        await conn.run_sync(bare_metadata.create_all)

    async def write(session: AsyncSession, records: Records) -> None:
        if decoded:
            for r in records:
                decode(r.value, r.headers)
        rows = [
            {
                "event_id": dict(r.headers).get("ce_id", b"").decode(),
                "key": (r.key or b"").decode(),
                "value": r.value or b"",
            }
            for r in records
        ]
        await session.execute(sa.insert(bare_events), rows)

    return await consume_into(settings, db, "bare", total, write)


# Scoring's writes without scoring ---------------------------------------------------------


async def writes_floor(settings: Settings, total: int) -> dict[str, float]:
    """What scoring must write for every event, and nothing else: the loop of `bare`
    with each record decoded, marked in the inbox, logged for replay, given a history row
    and a lead.scored-sized outbox row, and each lead's row upserted once per batch, all
    through the same bulk statements scoring uses. No rule is evaluated: the floor under
    any scoring model that keeps scoring's guarantees (redelivery harmless, replayable
    log, explained history, outbox)."""
    from services.scoring import store
    from shared.db.bulk import BulkStatement, Values

    db = Database(
        settings.database_url_for("floor"), service="floor", schema=settings.schema_for("floor")
    )
    await db.ensure_schema()
    async with db.engine.begin() as conn:
        await conn.run_sync(store.metadata.create_all)
    dialect, values = db.dialect, Values(db.dialect)
    time_ = values.time
    inbox = BulkStatement.insert(store.inbox, ("consumer", "event_id", "handled_at"), dialect)
    logged = BulkStatement.insert(store.score_events, store._EVENT_COLUMNS, dialect)
    history = BulkStatement.insert(store.score_changes, store._CHANGE_COLUMNS, dialect)
    outbox = BulkStatement.insert(
        store.outbox, ("event_id", "topic", "key", "headers", "value", "created_at"), dialect
    )
    leads = BulkStatement.insert(store.lead_scores, ("lead_id", *store._STATE_COLUMNS), dialect)
    leads.sql += (
        ' ON CONFLICT ("lead_id") DO UPDATE SET "events" = excluded."events",'
        ' "memory" = excluded."memory", "updated_at" = excluded."updated_at"'
    )
    seqs: dict[str, int] = {}

    async def write(session: AsyncSession, records: Records) -> None:
        now = time_(datetime.now(UTC))
        marks, events, changes, published, states = [], [], [], [], {}
        for r in records:
            envelope = decode(r.value, r.headers)
            assert envelope is not None
            lead_id, event_id = envelope.subject, envelope.id
            seq = seqs[lead_id] = seqs.get(lead_id, 0) + 1
            marks.append(("floor", event_id, now))
            events.append((event_id, lead_id, seq, envelope.type, r.value.decode(), now, now))
            changes.append(
                (
                    *(lead_id, now, 0.0, 0.0, 0.0, "cold", None),
                    *(False, False, False, True, "bench", event_id, envelope.type, "[]"),
                )
            )
            published.append((f"s-{event_id}", "leads.scored", lead_id, "[]", r.value, now))
            states[lead_id] = (
                *(lead_id, None, "{}", "bench", seq, None, None, None, None),
                *(False, False, "[]", None, None, None, None, now),
            )
        await inbox.run_async(session, marks)
        await logged.run_async(session, events)
        await history.run_async(session, changes)
        await outbox.run_async(session, published)
        await leads.run_async(session, list(states.values()))

    return await consume_into(settings, db, "floor", total, write)


# The scoring service --------------------------------------------------------------------


def handled_by_scoring() -> float:
    """Events the scoring service has handled so far (its consumer's counter)."""
    from shared import metrics

    total = 0.0
    for metric in metrics.events_consumed_total.collect():
        for sample in metric.samples:
            labels = sample.labels
            if (
                sample.name.endswith("_total")
                and labels.get("service") == "scoring"
                and labels.get("outcome") == "handled"
            ):
                total += sample.value
    return total


def published_by_scoring() -> float:
    """lead.scored records scoring's relay has published so far."""
    from shared import metrics

    return sum(
        sample.value
        for metric in metrics.outbox_published_total.collect()
        for sample in metric.samples
        if sample.name.endswith("_total") and sample.labels.get("service") == "scoring"
    )


async def run_scoring(settings: Settings, total: int) -> dict[str, float]:
    """Start the scoring service in this process as `leadflow serve scoring` builds it (its
    start-up heap frozen once started), until it has handled `total` more events."""
    from leadflow import registry
    from shared.app import freeze_heap_once_started

    app = registry.app_factory("scoring")(settings)
    freeze_heap_once_started(app)
    before, published = handled_by_scoring(), published_by_scoring()
    async with app.router.lifespan_context(app):
        started, first = 0.0, 0.0
        while handled_by_scoring() - before < total:
            if not started and handled_by_scoring() > before:
                # The clock starts once the first batch is committed: that batch is not counted.
                started, first = time.perf_counter(), handled_by_scoring() - before
            await asyncio.sleep(0.005)
        elapsed = time.perf_counter() - started
        # The relay publishes after the commit: wait (untimed) for the last records.
        deadline = time.monotonic() + 10
        while published_by_scoring() - published < total and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
    done = handled_by_scoring() - before - first
    return {
        "events": int(done),
        "seconds": round(elapsed, 3),
        "events_per_s": round(done / elapsed, 1),
        "published": int(published_by_scoring() - published),
    }


async def scoring_service(
    settings: Settings, bootstrap: str, first: list[Event], per_lead: int
) -> dict[str, float]:
    """The scoring service in this process: its consumer, model, writes and outbox relay.

    It first reads `first` (untimed): the leads' captures and engagement, which arrive on
    two topics, so an engagement read before its lead's capture is only remembered. Then
    the same leads come back, a second touch and more engagement, and that is what is
    timed: every event now scores a known lead and publishes its lead.scored, whatever
    order the consumer reads the two topics in (the heavier, steady workload).
    """
    from leadflow import registry

    await registry.migrate(settings, "scoring")
    await run_scoring(settings, len(first))
    lead_ids = list(dict.fromkeys(event.lead_id for event in first))
    again = make_events(len(first), per_lead, lead_ids)
    await produce(bootstrap, again)
    batches_before = batch_samples()
    result = await run_scoring(settings, len(again))
    after = batch_samples()
    batches, records = after[0] - batches_before[0], after[1] - batches_before[1]
    return {**result, "mean_batch": round(records / (batches or 1), 1)}


def batch_samples() -> tuple[float, float]:
    """Scoring's consumer batches so far, and the records in them."""
    labels = {"service": "scoring"}
    return (
        REGISTRY.get_sample_value("leadflow_consumer_batch_size_count", labels) or 0.0,
        REGISTRY.get_sample_value("leadflow_consumer_batch_size_sum", labels) or 0.0,
    )


async def best_of(repeat: int, loop: Callable[[], Awaitable[dict[str, float]]]) -> dict[str, Any]:
    """The fastest of `repeat` runs of a reference loop, with every run's rate."""
    runs = [await loop() for _ in range(repeat)]
    best = max(runs, key=lambda r: r["events_per_s"])
    return {**best, "runs_per_s": [r["events_per_s"] for r in runs]}


async def run(total: int, per_lead: int, backends: list[str], repeat: int) -> dict[str, Any]:
    results: dict[str, Any] = {
        "events": total,
        "leads": max(total // per_lead, 1),
        "command": f"python bench/scoring_bench.py --events {total} --repeat {repeat}",
    }
    from shared.app import freeze_startup_heap
    from shared.kafka.client import create_topics

    for backend in backends:
        # A broker of its own per database: the timed scoring run adds the leads' second touches.
        with tempfile.TemporaryDirectory() as tmpdir:
            tmp = Path(tmpdir)
            port = free_port()
            broker = start_broker(port, tmp / "broker.log")
            bootstrap = f"127.0.0.1:{port}"
            try:
                await create_topics(Settings(kafka_bootstrap=bootstrap, kafka_partitions=3))
                events = make_events(total, per_lead)
                await produce(bootstrap, events)
                settings = functools.partial(settings_for, backend, tmp, bootstrap)
                freeze_startup_heap()
                # A reference loop moves 20,000 events in well under a second, so a
                # checkpoint landing on it halves its rate: each runs `repeat` times and
                # its best run counts (the stricter yardstick for scoring).
                bare = await best_of(repeat, lambda s=settings: bare_loop(s(), total))
                decoded = await best_of(
                    repeat, lambda s=settings: bare_loop(s(), total, decoded=True)
                )
                floor = await best_of(repeat, lambda s=settings: writes_floor(s(), total))
                scoring = await scoring_service(settings(), bootstrap, events, per_lead)
                results[backend] = {
                    "bare": bare,
                    "bare_decoded": decoded,
                    "writes_floor": floor,
                    "scoring": scoring,
                    "ratio_to_bare": round(scoring["events_per_s"] / bare["events_per_s"], 3),
                    "ratio_to_bare_decoded": round(
                        scoring["events_per_s"] / decoded["events_per_s"], 3
                    ),
                    "floor_ratio_to_bare": round(floor["events_per_s"] / bare["events_per_s"], 3),
                    "ratio_to_floor": round(scoring["events_per_s"] / floor["events_per_s"], 3),
                }
                print(json.dumps({backend: results[backend]}), flush=True)
            finally:
                broker.terminate()
                with contextlib.suppress(Exception):
                    broker.wait(5)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=20000, help="Events to consume (bounded).")
    parser.add_argument("--per-lead", type=int, default=5, help="Events per lead.")
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument(
        "--repeat", type=int, default=3, help="Runs of each reference loop (the best counts)."
    )
    parser.add_argument("--out", type=Path, default=None, help="Write the results as JSON.")
    args = parser.parse_args()
    import logging

    logging.basicConfig(level=logging.WARNING)
    results = asyncio.run(run(args.events, args.per_lead, args.backends.split(","), args.repeat))
    text = json.dumps(results, indent=2)
    if args.out:
        args.out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
