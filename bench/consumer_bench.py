"""CPU per event of one service's consumers, without the broker.

Replays records written by `bench/e2e_bench.py --dump FILE` (every topic of a real
run) into the consumers a service registers, exactly as `leadflow serve` builds them,
in batches of a fixed size, on a fresh SQLite file or PostgreSQL schema. Reports the
process CPU time (`time.process_time`) per event and per lead: one hop's share of the
pipeline's CPU budget, repeatable within a few per cent, free of the broker and of the
other services.

    python bench/e2e_bench.py --rate 50 --seconds 10 --dump var/events.jsonl
    python bench/consumer_bench.py --service router --events var/events.jsonl --batch 40
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from aiokafka.structs import ConsumerRecord  # noqa: E402

from leadflow import registry  # noqa: E402
from shared.db.migrate import upgrade  # noqa: E402
from shared.kafka.consumer import EventConsumer  # noqa: E402
from shared.settings import Settings  # noqa: E402
from tests.records import consumer_record  # noqa: E402

PG_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"


def load_records(path: Path) -> list[ConsumerRecord[bytes, bytes]]:
    """The dumped records, as the broker would hand them to a consumer."""
    records = []
    for line in path.read_text().splitlines():
        raw = json.loads(line)
        key = raw["key"].encode() if raw["key"] is not None else b""
        value = raw["value"].encode() if raw["value"] is not None else b""
        headers = [(k, v.encode()) for k, v in raw["headers"]]
        records.append(
            consumer_record(
                raw["topic"], key, value, headers, offset=raw["offset"], partition=raw["partition"]
            )
        )
    return records


def settings_for(backend: str, tmp: Path) -> Settings:
    prefix = f"cb{uuid.uuid4().hex[:8]}"
    values: dict[str, Any] = {
        "env": "test",
        "config": ROOT / "leadflow.example.yaml",
        "var_dir": tmp / "var",
        "kafka_client_prefix": prefix,
        "log_level": "WARNING",
    }
    if backend == "postgres":
        values["database_url"] = PG_URL
        values["database_schema_prefix"] = f"{prefix}_"
    else:
        values["database_url"] = f"sqlite+aiosqlite:///{tmp}/{prefix}_{{service}}.db"
    return Settings(**values)


async def measure(service: str, records: list[Any], batch: int, backend: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmpdir:
        settings = settings_for(backend, Path(tmpdir))
        app = registry.app_factory(service)(settings)
        runtime = app.state.runtime
        await upgrade(runtime.db, registry.migrations_dir(service))
        consumers = [
            EventConsumer(
                service=service,
                group_id=settings.group_id(service),
                uow_factory=runtime.uow,
                settings=settings,
                **spec,
            )
            for spec in runtime._consumer_specs
        ]
        results: dict[str, Any] = {"service": service, "backend": backend, "batch": batch}
        try:
            total_cpu = 0.0
            total_events = 0
            for consumer in consumers:
                mine = [r for r in records if r.topic in consumer.topics]
                started_cpu, started = time.process_time(), time.perf_counter()
                for start in range(0, len(mine), batch):
                    await consumer.process(mine[start : start + batch])
                cpu = time.process_time() - started_cpu
                results[consumer.name] = {
                    "events": len(mine),
                    "cpu_us_per_event": round(cpu * 1e6 / max(len(mine), 1), 1),
                    "wall_s": round(time.perf_counter() - started, 3),
                }
                total_cpu += cpu
                total_events += len(mine)
            leads = len({r.key for r in records})
            results["events"] = total_events
            results["leads"] = leads
            results["cpu_ms_per_lead"] = round(total_cpu * 1000 / max(leads, 1), 3)
        finally:
            await runtime.db.dispose()
        return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--service", required=True, choices=registry.SERVICES)
    parser.add_argument("--events", type=Path, required=True)
    parser.add_argument("--batch", type=int, default=40)
    parser.add_argument("--backend", choices=("sqlite", "postgres"), default="sqlite")
    args = parser.parse_args()
    records = load_records(args.events)
    print(
        json.dumps(asyncio.run(measure(args.service, records, args.batch, args.backend)), indent=2)
    )


if __name__ == "__main__":
    main()
