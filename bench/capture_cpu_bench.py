"""Capture's CPU per accepted form post, at a fixed request rate.

Starts capture alone (`leadflow serve capture`, as bench/run.py does) on SQLite or
PostgreSQL next to the embedded broker, offers a steady rate of
`POST /v1/forms/demo-request` (bench/form_post.lua's ~1.5 KB JSON bodies, paced by
bench/form_post_paced.lua; `--rate 0`: as fast as 16 connections go) and reads the
process's user + system CPU time from /proc before and after. Then the same app in
one process, fed through ASGI in waves of 1 and of 16 (see `in_process`): the
steadiest figure on a shared machine, since a group's size there does not depend on
timing.

    python bench/capture_cpu_bench.py --rate 300 --seconds 10 --backend sqlite,postgres
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

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.run import Proc, capture_env, ensure_tool, parse_wrk, wait_healthy  # noqa: E402
from leadflow.processes import free_port, start_broker  # noqa: E402

PYTHON = sys.executable
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def measure(
    pids: list[int], urls: list[str], rate: int, seconds: int, connections: int
) -> dict[str, Any]:
    """Drive every url at `rate` at once; CPU per request over all `pids`."""
    before = sum(cpu_seconds(pid) for pid in pids)
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as out:
        procs = []
        for index, url in enumerate(urls):
            log = Path(out) / f"wrk{index}.txt"
            command = [
                ensure_tool("wrk", "wrk"),
                "-t1",
                f"-c{connections}",
                f"-d{seconds}s",
                "--latency",
                "-s",
                "bench/form_post_paced.lua",
                url,
                "--",
                str(rate),
                str(connections),
            ]
            procs.append((subprocess.Popen(command, stdout=log.open("w"), cwd=ROOT), log))
        runs = []
        for proc, log in procs:
            proc.wait()
            runs.append(parse_wrk(log.read_text()))
    elapsed = time.monotonic() - started
    used = sum(cpu_seconds(pid) for pid in pids) - before
    requests = sum(r["requests"] for r in runs)
    ok = requests - sum(r["non_2xx"] for r in runs)
    return {
        "offered_rps": rate * len(urls),
        "rps": round(sum(r["rps"] for r in runs), 1),
        "requests": int(requests),
        "non_2xx": int(requests - ok),
        "p50_ms": max(r.get("p50_ms", 0.0) for r in runs),
        "p99_ms": max(r.get("p99_ms", 0.0) for r in runs),
        "cpu_seconds": round(used, 2),
        "cpu_share_of_one_core": round(used / elapsed / len(pids), 2),
        "us_cpu_per_request": round(used / max(ok, 1) * 1e6),
    }


def bench_backend(
    backend: str, tmp: Path, bootstrap: str, rate: int, seconds: int, connections: int
) -> dict[str, Any]:
    port = free_port()
    env = capture_env(tmp, bootstrap, backend, port)
    subprocess.run(
        [PYTHON, "-m", "leadflow.cli", "migrate", "capture"],
        check=True,
        capture_output=True,
        env=env,
        cwd=ROOT,
    )
    result: dict[str, Any] = {}
    server = Proc([PYTHON, "-m", "leadflow.cli", "serve", "capture"], env, tmp / f"{backend}.log")
    try:
        wait_healthy(port)
        url = f"http://127.0.0.1:{port}/v1/forms/demo-request"
        if seconds > 0:
            measure([server.process.pid], [url], rate, 2, connections)  # warm-up
            result = measure([server.process.pid], [url], rate, seconds, connections)
    finally:
        server.stop()
    waves = subprocess.run(
        [PYTHON, str(Path(__file__)), "--in-process"],
        check=True,
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
    )
    result["in_process_us_cpu_per_request"] = json.loads(waves.stdout.strip().splitlines()[-1])
    return result


async def in_process(waves: int = 150) -> dict[str, int]:
    """CPU per request with no HTTP server and no client in the way.

    The app (with its intake, outbox relay and producer) runs in this process and gets
    requests straight through ASGI, in waves of 1 and of 16 concurrent submissions (a
    group of one, a group of sixteen): process CPU time per request, relay included.
    Group sizes are fixed, so unlike requests/s this hardly moves with the machine's
    other load.
    """
    from services.capture.app import create_app
    from shared.settings import Settings

    app = create_app(Settings())
    counter = 0

    async def post() -> int:
        nonlocal counter
        counter += 1
        body = orjson.dumps(
            {**FORM, "work_email": f"inproc.{counter}.{time.time_ns()}@example.com"}
        )
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": "/v1/forms/demo-request",
            "raw_path": b"/v1/forms/demo-request",
            "query_string": b"",
            "root_path": "",
            "headers": [
                (b"host", b"127.0.0.1"),
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
            "client": ("127.0.0.1", 40000),
            "server": ("127.0.0.1", 8001),
            "state": {},
        }
        messages = [{"type": "http.request", "body": body, "more_body": False}]
        status = 0

        async def receive() -> dict[str, Any]:
            if messages:
                return messages.pop()
            await asyncio.Event().wait()
            raise AssertionError("unreachable")

        async def send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]

        await app(scope, receive, send)
        return status

    results: dict[str, int] = {}
    async with app.router.lifespan_context(app):
        for size in (1, 16):
            for _ in range(20):  # warm-up
                await asyncio.gather(*(post() for _ in range(size)))
            await asyncio.sleep(0.5)
            started = time.process_time()
            statuses: list[int] = []
            for _ in range(waves):
                statuses += await asyncio.gather(*(post() for _ in range(size)))
            await asyncio.sleep(0.3)  # the relay publishes the last events
            used = time.process_time() - started
            if set(statuses) != {202}:
                raise SystemExit(f"unexpected answers: {sorted(set(statuses))}")
            results[f"group_of_{size}"] = round(used / len(statuses) * 1e6)
    return results


FILLER = "We are evaluating lead routing for our growth team. " * 18
FORM = {
    "name": "Bench Person",
    "company": "Example Corp",
    "title": "Director of Engineering",
    "country": "GB",
    "company_size": "120",
    "phone_note": "",
    "utm_source": "google",
    "utm_medium": "cpc",
    "utm_campaign": "spring-launch",
    "utm_term": "lead routing",
    "utm_content": "ad-3",
    "gclid": "Cj0KCQiA1",
    "referrer": "https://www.google.com/",
    "landing_page": "https://example.com/demo?utm_source=google",
    "marketing_consent": "yes",
    "message": FILLER,
}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rate", type=int, default=400, help="Offered requests/s.")
    parser.add_argument("--seconds", type=int, default=10, help="0: the in-process part only.")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--backend", default="sqlite,postgres")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--in-process", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.in_process:
        print(json.dumps(asyncio.run(in_process())))
        return
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        broker_port = free_port()
        broker = start_broker(broker_port, tmp / "broker.log")
        bootstrap = f"127.0.0.1:{broker_port}"
        try:
            subprocess.run(
                [PYTHON, "-m", "leadflow.cli", "topics", "create"],
                check=True,
                capture_output=True,
                env={**os.environ, "LEADFLOW_KAFKA_BOOTSTRAP": bootstrap},
            )
            for backend in args.backend.split(","):
                results[backend] = bench_backend(
                    backend, tmp, bootstrap, args.rate, args.seconds, args.connections
                )
                print(backend, json.dumps(results[backend]), flush=True)
        finally:
            broker.terminate()
            broker.wait(5)
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
