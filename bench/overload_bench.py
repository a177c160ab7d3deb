"""Past capacity: capture sheds load instead of queueing without bound.

Starts capture on SQLite, measures its resident memory, then drives it far past its
capacity with wrk (many more connections than `LEADFLOW_MAX_IN_FLIGHT`) while a
light open-loop probe posts forms at a steady rate beside it. Reports what wrk saw
(answers per status: 202 accepted, 503 shed with Retry-After), the probe's latency
for its accepted requests (do accepted requests keep their latency?), and memory
before, during and after (does it stay bounded?).

    python bench/overload_bench.py --connections 400 --seconds 10 --out results.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.run import Proc, capture_env, ensure_tool, wait_healthy  # noqa: E402
from bench.webhook_bench import percentiles  # noqa: E402
from leadflow.processes import free_port, start_broker  # noqa: E402

PYTHON = sys.executable


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


async def probe(url: str, rate: float, seconds: float) -> dict[str, Any]:
    """Steady light traffic beside the flood: the latency a well-behaved client sees."""
    latencies: list[float] = []
    statuses: dict[int, int] = {}

    async with httpx.AsyncClient(timeout=30) as client:

        async def one() -> None:
            body = {"work_email": f"probe.{uuid.uuid4().hex[:12]}@example.com", "name": "Probe"}
            started = time.perf_counter()
            response = await client.post(url, json=body)
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
            if response.status_code == 202:
                latencies.append(time.perf_counter() - started)

        tasks = []
        start = time.perf_counter()
        for i in range(int(rate * seconds)):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one()))
        await asyncio.gather(*tasks)
    return {
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        **(percentiles(latencies) if latencies else {}),
    }


def flood(url: str, connections: int, seconds: int, script: Path) -> dict[str, Any]:
    wrk = ensure_tool("wrk", "wrk")
    command = [wrk, "-t2", f"-c{connections}", f"-d{seconds}s", "-s", str(script), url]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    summary: dict[str, Any] = {"command": " ".join(command[1:-1]) + " URL"}
    for line in output.splitlines():
        line = line.strip()
        if line.startswith("Requests/sec:"):
            summary["rps"] = float(line.split()[1])
        elif "requests in" in line:
            summary["requests"] = int(line.split()[0])
        elif line.startswith("Non-2xx or 3xx responses:"):
            summary["non_2xx"] = int(line.split()[-1])
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--connections", type=int, default=400)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--probe-rate", type=float, default=20)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        broker_port = free_port()
        broker = start_broker(broker_port, tmp / "broker.log")
        port = free_port()
        env = capture_env(tmp, f"127.0.0.1:{broker_port}", "sqlite", port)
        for command in (["topics", "create"], ["migrate", "capture"]):
            subprocess.run(
                [PYTHON, "-m", "leadflow.cli", *command],
                check=True,
                capture_output=True,
                env=env,
                cwd=ROOT,
            )
        server = Proc([PYTHON, "-m", "leadflow.cli", "serve", "capture"], env, tmp / "cap.log")
        try:
            wait_healthy(port)
            pid = server.process.pid
            url = f"http://127.0.0.1:{port}/v1/forms/demo-request"
            baseline = asyncio.run(probe(url, args.probe_rate, 3))
            memory = {"before_mib": rss_mib(pid)}
            peak = [memory["before_mib"]]
            done = threading.Event()

            def sample() -> None:
                while not done.wait(0.25):
                    peak.append(rss_mib(pid))

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            flooded: dict[str, Any] = {}
            wrk = threading.Thread(
                target=lambda: flooded.update(
                    flood(url, args.connections, args.seconds, ROOT / "bench/form_post.lua")
                )
            )
            wrk.start()
            time.sleep(1)  # let the flood build up first
            during = asyncio.run(probe(url, args.probe_rate, args.seconds - 2))
            wrk.join()
            done.set()
            time.sleep(2)
            memory["peak_during_mib"] = max(peak)
            memory["after_mib"] = rss_mib(pid)
            shed = int(flooded.get("non_2xx", 0))
            total = int(flooded.get("requests", 0))
            results = {
                "max_in_flight": int(os.environ.get("LEADFLOW_MAX_IN_FLIGHT", "0")) or "default",
                "flood": {**flooded, "shed_503": shed, "accepted_202": total - shed},
                "probe_alone": baseline,
                "probe_during_flood": during,
                "memory": memory,
                "command": (
                    f"python bench/overload_bench.py --connections {args.connections} "
                    f"--seconds {args.seconds}"
                ),
            }
        finally:
            server.stop()
            broker.terminate()
            broker.wait(5)
    text = json.dumps(results, indent=2)
    if args.out:
        args.out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
