"""`make bench`: leadflow's benchmarks, on this machine, against 127.0.0.1 only.

Each scenario is bounded in time. Results are printed and written to
bench/results.json; `--update-docs` rewrites the results block of
docs/benchmarks.md.

Scenarios
- capture: `POST /v1/forms/{id}` with ~1.5 KB JSON bodies under wrk, on SQLite and on
  PostgreSQL, next to a bare FastAPI endpoint of the same shape in the same run; then
  two capture processes on one PostgreSQL database, a wrk on each, against one.
- webhook: a signed webhook's acknowledgement latency with the broker down.
- scoring: scoring events/s per process next to a bare consume-and-insert loop
  (bench/scoring_bench.py).
- overload: capture driven far past capacity: shed 503s, accepted latency, memory
  (bench/overload_bench.py).
- e2e: capture → CRM stand-in latency at a steady 200 leads/s (bench/e2e_bench.py).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from leadflow.processes import free_port, start_broker, wait_for_port  # noqa: E402

PG_URL = os.environ.get(
    "LEADFLOW_BENCH_PG_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
PYTHON = sys.executable


def ensure_tool(name: str, package: str) -> str:
    path = shutil.which(name)
    if path:
        return path
    subprocess.run(["apt-get", "update", "-qq"], check=False, capture_output=True)
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", package],
        check=True,
        capture_output=True,
        env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
    )
    found = shutil.which(name)
    if not found:
        raise SystemExit(f"{name} is not available")
    return found


def wait_healthy(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"service on {port} not healthy")


def parse_wrk(output: str) -> dict[str, float]:
    """Requests/s and latency percentiles (ms) from `wrk --latency` output."""

    def to_ms(value: str) -> float:
        number, unit = re.match(r"([\d.]+)(\w+)", value).groups()  # type: ignore[union-attr]
        return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]

    result: dict[str, float] = {}
    rps = re.search(r"Requests/sec:\s+([\d.]+)", output)
    result["rps"] = float(rps.group(1)) if rps else 0.0
    for pct in ("50", "90", "99"):
        match = re.search(rf"^\s+{pct}%\s+(\S+)", output, re.M)
        if match:
            result[f"p{pct}_ms"] = round(to_ms(match.group(1)), 2)
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    result["non_2xx"] = float(non2xx.group(1)) if non2xx else 0.0
    total = re.search(r"(\d+) requests in", output)
    result["requests"] = float(total.group(1)) if total else 0.0
    return result


def run_wrk(url: str, seconds: int, connections: int, script: Path) -> dict[str, float]:
    wrk = ensure_tool("wrk", "wrk")
    command = [wrk, "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script), url]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    result = parse_wrk(output)
    result["command"] = " ".join(command[1:-2]) + " -s bench/form_post.lua URL"  # type: ignore[assignment]
    return result


def run_wrk_each(urls: list[str], seconds: int, connections: int, script: Path) -> dict[str, Any]:
    """One wrk per url, all at once: requests/s summed, the worst of their percentiles."""
    wrk = ensure_tool("wrk", "wrk")
    procs = [
        subprocess.Popen(
            [wrk, "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script), url],
            stdout=subprocess.PIPE,
            text=True,
        )
        for url in urls
    ]
    runs = [parse_wrk(proc.communicate()[0]) for proc in procs]
    result: dict[str, Any] = {
        "rps": round(sum(r["rps"] for r in runs), 2),
        "requests": sum(r["requests"] for r in runs),
        "non_2xx": sum(r["non_2xx"] for r in runs),
    }
    for pct in ("p50_ms", "p90_ms", "p99_ms"):
        result[pct] = max(r.get(pct, 0.0) for r in runs)
    result["per_process_rps"] = [r["rps"] for r in runs]
    result["command"] = (
        f"{len(urls)} x wrk -t1 -c{connections} -d{seconds}s --latency -s bench/form_post.lua URL"
    )
    return result


class Proc:
    """A server subprocess, stopped on exit."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log.open("wb")
        self.process = subprocess.Popen(
            args, env=env, stdout=self.log, stderr=subprocess.STDOUT, cwd=ROOT
        )

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()


def capture_env(
    tmp: Path, bootstrap: str, backend: str, port: int, schema_prefix: str | None = None
) -> dict[str, str]:
    env = {
        **os.environ,
        "LEADFLOW_CONFIG": str(ROOT / "leadflow.example.yaml"),
        "LEADFLOW_KAFKA_BOOTSTRAP": bootstrap,
        "LEADFLOW_LOG_LEVEL": "WARNING",
        "LEADFLOW_VAR_DIR": str(tmp / "var"),
        "LEADFLOW_PORTS__CAPTURE": str(port),
        "LEADFLOW_ENV": "test",
    }
    if backend == "postgres":
        env["LEADFLOW_DATABASE_URL"] = PG_URL
        env["LEADFLOW_DATABASE_SCHEMA_PREFIX"] = schema_prefix or f"bench{uuid.uuid4().hex[:6]}_"
    else:
        env["LEADFLOW_DATABASE_URL"] = f"sqlite+aiosqlite:///{tmp}/var/{{service}}.db"
    return env


def bench_capture(seconds: int, connections: int) -> dict[str, Any]:
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
            bare_port = free_port()
            bare = Proc(
                [
                    PYTHON,
                    "-m",
                    "uvicorn",
                    "bench.bare_app:app",
                    "--port",
                    str(bare_port),
                    "--log-level",
                    "warning",
                    "--no-access-log",
                ],
                dict(os.environ),
                tmp / "bare.log",
            )
            try:
                wait_for_port(bare_port, 15)
                run_wrk(
                    f"http://127.0.0.1:{bare_port}/v1/forms/demo-request",
                    2,
                    connections,
                    ROOT / "bench/form_post.lua",
                )  # warm-up
                results["bare"] = run_wrk(
                    f"http://127.0.0.1:{bare_port}/v1/forms/demo-request",
                    seconds,
                    connections,
                    ROOT / "bench/form_post.lua",
                )
            finally:
                bare.stop()
            for backend in ("sqlite", "postgres"):
                port = free_port()
                env = capture_env(tmp, bootstrap, backend, port)
                subprocess.run(
                    [PYTHON, "-m", "leadflow.cli", "migrate", "capture"],
                    check=True,
                    capture_output=True,
                    env=env,
                    cwd=ROOT,
                )
                server = Proc(
                    [PYTHON, "-m", "leadflow.cli", "serve", "capture"],
                    env,
                    tmp / f"capture-{backend}.log",
                )
                try:
                    wait_healthy(port)
                    url = f"http://127.0.0.1:{port}/v1/forms/demo-request"
                    run_wrk(url, 2, connections, ROOT / "bench/form_post.lua")
                    result = run_wrk(url, seconds, connections, ROOT / "bench/form_post.lua")
                finally:
                    server.stop()
                result["ratio_to_bare"] = round(result["rps"] / results["bare"]["rps"], 3)
                results[backend] = result
            results["postgres_two_processes"] = bench_two_processes(
                tmp, bootstrap, seconds, connections
            )
            results["postgres_two_processes"]["ratio_to_one"] = round(
                results["postgres_two_processes"]["rps"] / results["postgres"]["rps"], 3
            )
        finally:
            broker.terminate()
            broker.wait(5)
    return results


def bench_two_processes(
    tmp: Path, bootstrap: str, seconds: int, connections: int
) -> dict[str, Any]:
    """Two capture processes on one PostgreSQL database, each driven by its own wrk.

    Capture keeps no state outside its database, so replicas scale it out; only one
    replica's outbox relay publishes at a time (an advisory lock).
    """
    prefix = f"bench{uuid.uuid4().hex[:6]}_"
    ports = [free_port(), free_port()]
    envs = [capture_env(tmp, bootstrap, "postgres", port, prefix) for port in ports]
    subprocess.run(
        [PYTHON, "-m", "leadflow.cli", "migrate", "capture"],
        check=True,
        capture_output=True,
        env=envs[0],
        cwd=ROOT,
    )
    servers = [
        Proc([PYTHON, "-m", "leadflow.cli", "serve", "capture"], env, tmp / f"capture-pg{i}.log")
        for i, env in enumerate(envs)
    ]
    try:
        for port in ports:
            wait_healthy(port)
        urls = [f"http://127.0.0.1:{port}/v1/forms/demo-request" for port in ports]
        script = ROOT / "bench/form_post.lua"
        run_wrk_each(urls, 2, connections, script)  # warm-up
        return run_wrk_each(urls, seconds, connections, script)
    finally:
        for server in servers:
            server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=int, default=15, help="Duration of each wrk run.")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--only", default="capture,webhook,overload,scoring,e2e")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results.json")
    args = parser.parse_args()
    wanted = set(args.only.split(","))
    results: dict[str, Any] = {
        "machine": {"cores": os.cpu_count(), "python": sys.version.split()[0]},
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    if "capture" in wanted:
        print("capture: bare endpoint, SQLite, PostgreSQL, two on PostgreSQL …", flush=True)
        results["capture"] = bench_capture(args.seconds, args.connections)
        print(json.dumps(results["capture"], indent=2), flush=True)
    for name, script in (
        ("webhook", "webhook_bench.py"),
        ("overload", "overload_bench.py"),
        ("scoring", "scoring_bench.py"),
        ("e2e", "e2e_bench.py"),
    ):
        if name not in wanted:
            continue
        path = ROOT / "bench" / script
        if not path.exists():
            print(f"{name}: {script} not present, skipped")
            continue
        out = Path(tempfile.mkstemp(suffix=".json")[1])
        print(f"{name} …", flush=True)
        subprocess.run([PYTHON, str(path), "--out", str(out)], check=True, cwd=ROOT)
        results[name] = json.loads(out.read_text())
        print(json.dumps(results[name], indent=2), flush=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"results written to {args.out}")


if __name__ == "__main__":
    main()
