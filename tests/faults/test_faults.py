"""Fault scenarios, each ending in a reconciliation: zero lost, zero duplicated.

`make test` runs them small; `make faults` (LEADFLOW_FAULTS_SIZE=full) runs them at full
size and writes the measured figures to bench/faults-results.json (see
docs/reliability.md). No timing is asserted here: the figures are reported, the
guarantees are asserted.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from shared.events.topics import TOPICS
from tests.conftest import PG_AVAILABLE
from tests.faults.harness import LoadGenerator, System, reconcile

pytestmark = [pytest.mark.faults, pytest.mark.slow]

FULL = os.environ.get("LEADFLOW_FAULTS_SIZE") == "full"
OUTAGE_BROKER = 60 if FULL else 6
OUTAGE_DB = 30 if FULL else 5
OUTAGE_CRM = 60 if FULL else 5
RATE = 20.0 if FULL else 10.0
RESULTS = Path(__file__).resolve().parents[2] / "bench" / "faults-results.json"


def record(name: str, figures: dict[str, Any]) -> None:
    if not FULL:
        return
    data = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    data[name] = figures
    RESULTS.write_text(json.dumps(data, indent=2) + "\n")


def assert_reconciled(report: dict[str, Any]) -> None:
    assert report["lost_at_crm"] == [], report
    assert report["duplicated_at_crm"] == [], report
    assert report["unexpected_at_crm"] == [], report
    assert report["not_enrolled"] == [], report
    assert report["duplicated_enrollments"] == [], report
    assert report["insights_leads"] == report["accepted"], report


@pytest.fixture
async def system(tmp_path, request):
    backend = getattr(request, "param", "sqlite")
    if backend == "postgres" and not PG_AVAILABLE:
        pytest.skip("PostgreSQL is not reachable")
    running = System(tmp_path / "system", backend=backend)
    try:
        await running.start()
        yield running
    finally:
        await running.stop()


async def _during(load: LoadGenerator, count: int, fault, heal, outage: float) -> float:
    """Run load; apply the fault a little after it starts, heal it `outage` seconds later."""

    async def break_and_heal() -> float:
        await asyncio.sleep(1.0)
        await fault()
        await asyncio.sleep(outage)
        await heal()
        return time.monotonic()

    healed_at, _ = await asyncio.gather(break_and_heal(), load.run(count))
    return healed_at


async def test_broker_cut_off_under_load(system):
    load = LoadGenerator(system.url("capture"), RATE)
    count = int(RATE * (OUTAGE_BROKER + 4))

    async def heal() -> None:
        system.broker_proxy.restore()

    healed_at = await _during(load, count, system.broker_proxy.cut, heal, OUTAGE_BROKER)
    report = await reconcile(system, load, timeout=120)
    assert set(load.statuses) <= {202}, load.statuses  # capture kept accepting
    assert_reconciled(report)
    # The backlog held back by the outage is drained when the last hot lead reaches the
    # CRM (the hot path's final sink); leads posted after the heal count as new input.
    drained_in = max(system.crm.arrivals.values()) - healed_at
    backlog = RATE * OUTAGE_BROKER
    record(
        "broker_cut",
        {
            "outage_s": OUTAGE_BROKER,
            "input_rate": RATE,
            "accepted": report["accepted"],
            "backlog_leads": int(backlog),
            "crm_drained_in_s": round(drained_in, 2),
            "drain_rate_x_input": round(backlog / max(drained_in, 0.001) / RATE, 2),
        },
    )


@pytest.mark.postgres
@pytest.mark.parametrize("system", ["postgres"], indirect=True)
async def test_database_unreachable_under_load(system):
    load = LoadGenerator(system.url("capture"), RATE)
    count = int(RATE * (OUTAGE_DB + 4))
    seen_503: list[httpx.Response] = []

    async def fault() -> None:
        await system.pg_proxy.cut()
        async with httpx.AsyncClient() as client:
            for _ in range(50):
                response = await client.post(
                    f"{system.url('capture')}/v1/forms/guide-download",
                    json={"email": "probe@example.com"},
                )
                if response.status_code == 503:
                    seen_503.append(response)
                    break
                await asyncio.sleep(0.1)

    async def heal() -> None:
        system.pg_proxy.restore()

    await _during(load, count, fault, heal, OUTAGE_DB)
    report = await reconcile(system, load, timeout=120)
    assert seen_503 and seen_503[0].headers.get("retry-after")
    assert 500 not in load.statuses
    assert_reconciled(report)
    record(
        "database_cut",
        {"outage_s": OUTAGE_DB, "accepted": report["accepted"], "statuses": dict(load.statuses)},
    )


async def test_crm_failing_with_500_then_429(system):
    load = LoadGenerator(system.url("capture"), RATE)
    count = int(RATE * (2 * OUTAGE_CRM + 4))

    async def fault() -> None:
        system.crm.fail_with = 500

    async def heal() -> None:
        system.crm.fail_with = 429
        await asyncio.sleep(OUTAGE_CRM)
        system.crm.fail_with = None

    await _during(load, count, fault, heal, OUTAGE_CRM)
    report = await reconcile(system, load, timeout=150)
    assert_reconciled(report)
    record("crm_failing", {"outage_s": 2 * OUTAGE_CRM, "accepted": report["accepted"]})


async def test_kill_9_of_every_service_mid_load(system):
    load = LoadGenerator(system.url("capture"), RATE)
    names = ["scoring", "router", "nurture", "insights", "capture"]
    count = int(RATE * (len(names) * 3 + 4))

    async def chaos() -> None:
        for name in names:
            await asyncio.sleep(2.0)
            system.kill9(name)
            await asyncio.sleep(0.5)
            await system.restart(name)

    await asyncio.gather(chaos(), load.run(count))
    report = await reconcile(system, load, timeout=150)
    assert_reconciled(report)
    record("kill_9", {"services": names, "accepted": report["accepted"]})


async def test_every_topic_replayed_three_times(system):
    load = LoadGenerator(system.url("capture"), RATE)
    await load.run(int(RATE * 3))
    first = await reconcile(system, load)
    assert_reconciled(first)
    bootstrap = system.env["LEADFLOW_KAFKA_BOOTSTRAP"]
    replayed = 0
    for _ in range(3):
        replayed += await _republish_everything(bootstrap)
    await asyncio.sleep(3)
    report = await reconcile(system, load)
    assert replayed > 0
    assert_reconciled(report)
    record("replay_3x", {"records_replayed": replayed, "accepted": report["accepted"]})


async def _republish_everything(bootstrap: str) -> int:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await consumer.start()
    await producer.start()
    count = 0
    try:
        for topic in TOPICS:
            partitions = [
                TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()
            ]
            if not partitions:
                continue
            consumer.assign(partitions)
            await consumer.seek_to_beginning(*partitions)
            ends = await consumer.end_offsets(partitions)
            records = []
            while True:
                batch = await consumer.getmany(timeout_ms=500)
                if not batch:
                    break
                for items in batch.values():
                    records.extend(items)
                positions = [await consumer.position(tp) for tp in partitions]
                if all(pos >= ends[tp] for pos, tp in zip(positions, partitions, strict=True)):
                    break
            for r in records:
                await producer.send(r.topic, value=r.value, key=r.key, headers=list(r.headers))
                count += 1
        await producer.flush()
    finally:
        await consumer.stop()
        await producer.stop()
    return count
