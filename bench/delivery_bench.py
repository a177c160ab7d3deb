"""CPU per lead of the router: its consumer and its delivery worker, without the broker.

Replays the `leads.scored` records written by `bench/e2e_bench.py --dump FILE` into the
router's consumer (built exactly as `leadflow serve router` builds it) `--round` leads at
a time, and after each such batch runs delivery rounds until nothing is due, as the
woken worker would. The router's destinations are the example config's: the file sink
and the signed webhook, pointed at a keep-alive CRM stand-in running in another process
(its CPU is not counted). Reports process CPU (`time.process_time`, every thread) per
lead for the consumer and for the delivery worker.

    python bench/delivery_bench.py --events /work/benchdata/events.jsonl --round 20
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.consumer_bench import load_records, settings_for  # noqa: E402
from leadflow import registry  # noqa: E402
from shared.db.migrate import upgrade  # noqa: E402
from shared.events.topics import LEADS_SCORED  # noqa: E402
from shared.kafka.consumer import EventConsumer  # noqa: E402

SECRET = "bench-webhook-secret"

RECEIVER = """
import sys, time
sys.path.insert(0, sys.argv[1])
import tests.faults.harness as harness
harness.WEBHOOK_SECRET = sys.argv[2]
crm = harness.CrmStandIn()
print(crm.url, flush=True)
for line in sys.stdin:
    print(len(crm.deliveries), crm.bad_signatures, flush=True)
"""


async def measure(records: list[Any], size: int, backend: str, url: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmpdir:
        os.environ["LEADFLOW_ROUTER_WEBHOOK_URL"] = url
        os.environ["LEADFLOW_ROUTER_WEBHOOK_SECRET"] = SECRET
        settings = settings_for(backend, Path(tmpdir))
        app = registry.app_factory("router")(settings)
        runtime = app.state.runtime
        worker = app.state.delivery
        await upgrade(runtime.db, registry.migrations_dir("router"))
        (spec,) = runtime._consumer_specs
        consumer = EventConsumer(
            service="router",
            group_id=settings.group_id("router"),
            uow_factory=runtime.uow,
            settings=settings,
            **spec,
        )
        scored = [r for r in records if r.topic == LEADS_SCORED]
        consumer_cpu = delivery_cpu = 0.0
        deliveries = rounds = 0
        started = time.perf_counter()
        try:
            for start in range(0, len(scored), size):
                began = time.process_time()
                await consumer.process(scored[start : start + size])
                between = time.process_time()
                # As `DeliveryWorker.run` after a wake: rounds while full ones come back.
                while True:
                    handled = await worker.run_once()
                    deliveries += handled
                    rounds += 1 if handled else 0
                    if handled < worker.config.delivery.batch_size:
                        break
                await worker._idle_seconds()
                delivery_cpu += time.process_time() - between
                consumer_cpu += between - began
        finally:
            await app.state.http_client.aclose()
            await runtime.db.dispose()
        leads = len({r.key for r in scored})
        return {
            "backend": backend,
            "round": size,
            "leads": leads,
            "deliveries": deliveries,
            "delivery_rounds": rounds,
            "wall_s": round(time.perf_counter() - started, 3),
            "consumer_us_per_lead": round(consumer_cpu * 1e6 / max(leads, 1), 1),
            "delivery_us_per_lead": round(delivery_cpu * 1e6 / max(leads, 1), 1),
            "router_us_per_lead": round((consumer_cpu + delivery_cpu) * 1e6 / max(leads, 1), 1),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=Path, required=True)
    parser.add_argument("--round", type=int, default=20, help="leads per consumer batch")
    parser.add_argument("--backend", choices=("sqlite", "postgres"), default="sqlite")
    args = parser.parse_args()
    records = load_records(args.events)
    receiver = subprocess.Popen(
        [sys.executable, "-c", RECEIVER, str(ROOT), SECRET],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert receiver.stdout is not None and receiver.stdin is not None
        url = receiver.stdout.readline().strip()
        results = asyncio.run(measure(records, args.round, args.backend, url))
        receiver.stdin.write("count\n")
        receiver.stdin.flush()
        received, bad = receiver.stdout.readline().split()
        results["crm_received"] = int(received)
        results["crm_bad_signatures"] = int(bad)
    finally:
        receiver.terminate()
        receiver.wait()
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
