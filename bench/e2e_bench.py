"""Speed-to-lead, measured: capture → scoring → router → CRM stand-in at a steady rate.

Starts the whole system (broker, five services, SQLite) with the router's webhook
destination pointing at a local CRM stand-in, posts hot demo requests (sales-ready
under the example scoring model) at a steady rate from an open-loop generator, and
reports, per lead, the time from sending the form to the CRM receiving the signed
delivery.

    python bench/e2e_bench.py --rate 200 --seconds 10 --out results.json
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

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.webhook_bench import percentiles  # noqa: E402
from tests.faults.harness import System  # noqa: E402


async def run(rate: float, seconds: float, backend: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmpdir:
        system = System(Path(tmpdir) / "system", backend=backend)
        await system.start()
        try:
            return await measure(system, rate, seconds)
        finally:
            await system.stop()


async def measure(system: System, rate: float, seconds: float) -> dict[str, Any]:
    assert system.crm is not None
    sent: dict[str, float] = {}
    statuses: dict[int, int] = {}
    url = f"{system.url('capture')}/v1/forms/demo-request"
    limits = httpx.Limits(max_connections=128, max_keepalive_connections=128)

    async with httpx.AsyncClient(timeout=30, limits=limits) as client:

        async def one() -> None:
            tag = uuid.uuid4().hex[:12]
            body = {
                "work_email": f"e2e.{tag}@analytical-engines.co.uk",
                "name": "Speed Test",
                "company": "Analytical Engines",
                "title": "Director of Engineering",
                "country": "GB",
                "company_size": "120",
                "utm_source": "google",
                "utm_medium": "cpc",
                "marketing_consent": "yes",
            }
            started = time.monotonic()
            response = await client.post(url, json=body)
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
            if response.status_code == 202:
                sent[response.json()["lead_id"]] = started

        # Warm-up: the consumer groups have joined once a first lead went all the way.
        await one()
        deadline = time.monotonic() + 60
        while not set(sent) <= set(system.crm.arrivals) and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        sent.clear()
        statuses.clear()

        tasks = []
        start = time.monotonic()
        for i in range(int(rate * seconds)):
            delay = start + i / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one()))
        await asyncio.gather(*tasks)
        offered_for = time.monotonic() - start

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if all(lead in system.crm.arrivals for lead in sent):
            break
        await asyncio.sleep(0.2)
    arrivals = system.crm.arrivals
    latencies = [arrivals[lead] - at for lead, at in sent.items() if lead in arrivals]
    return {
        "rate_per_s": rate,
        "offered_seconds": round(offered_for, 2),
        "accepted": len(sent),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "delivered": len(latencies),
        "duplicated": sum(1 for n in system.crm.lead_counts().values() if n > 1),
        **(percentiles(latencies) if latencies else {}),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rate", type=float, default=200)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--backend", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    results = asyncio.run(run(args.rate, args.seconds, args.backend))
    results["command"] = (
        f"python bench/e2e_bench.py --rate {args.rate:g} --seconds {args.seconds:g} "
        f"--backend {args.backend}"
    )
    text = json.dumps(results, indent=2)
    if args.out:
        args.out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
