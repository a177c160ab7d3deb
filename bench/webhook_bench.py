"""Webhook acknowledgement latency with the broker and the platform API down.

Ad platforms retry (and eventually disable) webhooks that answer slowly, so capture
must acknowledge fast whatever is down behind it. This starts capture on SQLite with
its Kafka bootstrap pointing at a closed port (broker down) and Meta's Graph API
pointing at a closed port (the platform API, like a CRM, unreachable), then sends
signed Meta Lead Ads notifications (batched entries) and Google Ads lead-form
webhooks (~1.5 KB, full lead data) at a steady rate from an open-loop generator,
and reports acknowledgement latency percentiles per endpoint.

    python bench/webhook_bench.py --rate 200 --seconds 10 --out results.json
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.run import Proc, wait_healthy  # noqa: E402
from leadflow.processes import free_port  # noqa: E402

META_SECRET = "bench-meta-secret"
GOOGLE_KEY = "bench-google-key"
PYTHON = sys.executable


def meta_notification(page: int) -> bytes:
    """A realistic Meta leadgen notification: one Page, three leads, string ids."""
    now = int(time.time())
    changes = [
        {
            "field": "leadgen",
            "value": {
                "leadgen_id": str(9_007_199_254_740_993 + page * 10 + i),
                "page_id": "112233445566778",
                "form_id": "1234567890123456789",
                "ad_id": "120211234567890123",
                "adgroup_id": "120211234567890124",
                "created_time": now,
            },
        }
        for i in range(3)
    ]
    body = {"object": "page", "entry": [{"id": "112233445566778", "time": now, "changes": changes}]}
    return json.dumps(body).encode()


def google_lead(index: int) -> bytes:
    """A Google Ads lead-form webhook with its full lead data."""
    tag = uuid.uuid4().hex[:10]
    columns = {
        "FULL_NAME": f"Bench Person {index}",
        "EMAIL": f"google.{tag}@example.com",
        "PHONE_NUMBER": "+16505550123",
        "COMPANY_NAME": "Example Corp",
        "JOB_TITLE": "Director of Engineering",
        "WORK_EMAIL": f"work.{tag}@example.com",
        "COUNTRY": "GB",
        "POSTAL_CODE": "94043",
        "CITY": "London",
    }
    body = {
        "lead_id": f"TeSter-{tag}-ABCDEFGHIJKLMNOPQRSTUVWXYZ-abcdefghijklmnopqrstuvwxyz-0123456789",
        "user_column_data": [
            {"column_name": name.title(), "string_value": value, "column_id": name}
            for name, value in columns.items()
        ],
        "api_version": "1.0",
        "form_id": 18698608977,
        "campaign_id": 991214827,
        "google_key": GOOGLE_KEY,
        "is_test": False,
        "gcl_id": f"Cj0KCQiA{tag}" + "x" * 400,
        "adgroup_id": 20000000000,
        "creative_id": 30000000000,
    }
    return json.dumps(body).encode()


def percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
    return {
        "p50_ms": round(pick(0.50) * 1000, 2),
        "p90_ms": round(pick(0.90) * 1000, 2),
        "p99_ms": round(pick(0.99) * 1000, 2),
        "max_ms": round(ordered[-1] * 1000, 2),
        "mean_ms": round(statistics.fmean(ordered) * 1000, 2),
    }


async def steady(
    client: httpx.AsyncClient, rate: float, seconds: float, make: Any
) -> dict[str, Any]:
    """Send `make(i)` → (path, body, headers) at `rate` per second; latency of each answer."""
    latencies: list[float] = []
    statuses: dict[int, int] = {}

    async def one(i: int) -> None:
        path, body, headers = make(i)
        started = time.perf_counter()
        response = await client.post(path, content=body, headers=headers)
        latencies.append(time.perf_counter() - started)
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1

    tasks = []
    start = time.perf_counter()
    for i in range(int(rate * seconds)):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i)))
    await asyncio.gather(*tasks)
    return {
        "requests": len(latencies),
        "rate_per_s": rate,
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        **percentiles(latencies),
    }


async def measure(port: int, rate: float, seconds: float, body_sizes: dict[str, int]) -> Any:
    base = f"http://127.0.0.1:{port}"
    # Idle connections are dropped after 2 s, before the server's 5 s keep-alive timeout:
    # at equal timeouts a request can go out on a connection the server is just closing
    # (httpx.ReadError between the scenarios).
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64, keepalive_expiry=2.0)
    async with httpx.AsyncClient(base_url=base, timeout=10, limits=limits) as client:

        def meta(i: int) -> tuple[str, bytes, dict[str, str]]:
            body = meta_notification(i)
            signature = "sha256=" + hmac.new(META_SECRET.encode(), body, hashlib.sha256).hexdigest()
            headers = {"content-type": "application/json", "X-Hub-Signature-256": signature}
            return "/v1/webhooks/meta", body, headers

        def google(i: int) -> tuple[str, bytes, dict[str, str]]:
            return "/v1/webhooks/google", google_lead(i), {"content-type": "application/json"}

        body_sizes["meta"] = len(meta(0)[1])
        body_sizes["google"] = len(google(0)[1])
        await steady(client, rate, 2, meta)  # warm-up
        return {
            "meta": await steady(client, rate, seconds, meta),
            "google": await steady(client, rate, seconds, google),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rate", type=float, default=200)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        port, dead_broker, dead_api = free_port(), free_port(), free_port()
        env = {
            **os.environ,
            "LEADFLOW_CONFIG": str(ROOT / "leadflow.example.yaml"),
            "LEADFLOW_ENV": "test",
            "LEADFLOW_LOG_LEVEL": "WARNING",
            "LEADFLOW_VAR_DIR": str(tmp / "var"),
            "LEADFLOW_PORTS__CAPTURE": str(port),
            "LEADFLOW_DATABASE_URL": f"sqlite+aiosqlite:///{tmp}/var/{{service}}.db",
            "LEADFLOW_KAFKA_BOOTSTRAP": f"127.0.0.1:{dead_broker}",
            "META_APP_SECRET": META_SECRET,
            "META_GRAPH_URL": f"http://127.0.0.1:{dead_api}/v21.0",
            "GOOGLE_LEAD_FORM_KEY": GOOGLE_KEY,
        }
        subprocess.run(
            [PYTHON, "-m", "leadflow.cli", "migrate", "capture"],
            check=True,
            capture_output=True,
            env=env,
            cwd=ROOT,
        )
        server = Proc([PYTHON, "-m", "leadflow.cli", "serve", "capture"], env, tmp / "capture.log")
        try:
            wait_healthy(port)
            sizes: dict[str, int] = {}
            results = asyncio.run(measure(port, args.rate, args.seconds, sizes))
        finally:
            server.stop()
    results["conditions"] = {
        "broker": "down (bootstrap to a closed port)",
        "platform_api": "down (Graph API base URL to a closed port)",
        "database": "SQLite",
        "body_bytes": sizes,
        "command": f"python bench/webhook_bench.py --rate {args.rate:g} --seconds {args.seconds:g}",
    }
    text = json.dumps(results, indent=2)
    if args.out:
        args.out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
