"""A real Prometheus (Debian's `prometheus`) scrapes every service of a running stack.

Each service in shared.settings.SERVICES runs as `leadflow serve <name>` on a free
port against the embedded broker and SQLite; Prometheus scrapes them every second.
The test posts leads to capture and waits, through Prometheus' HTTP API, until `up`
is 1 for every target and `leadflow_leads_captured_total` has grown by the leads
posted. Everything is bounded by one deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from leadflow.processes import free_port
from shared.settings import SERVICES
from tests.conftest import EXAMPLE_CONFIG, ROOT, migrate_service

pytestmark = [pytest.mark.broker, pytest.mark.slow]
DEADLINE_SECONDS = 40
LEADS = 3


def prometheus_binary() -> str:
    """The `prometheus` binary; installed from Debian when missing on CI, else a skip."""
    found = shutil.which("prometheus")
    if found is None and os.environ.get("CI") == "true":
        command = ["apt-get", "install", "-y", "prometheus"]
        if os.geteuid() != 0 and shutil.which("sudo"):
            command = ["sudo", "-n", *command]
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            if subprocess.run(command, capture_output=True, timeout=300).returncode != 0:
                # A fresh machine may not have the package lists yet.
                update = [*command[: command.index("install")], "update"]
                subprocess.run(update, capture_output=True, timeout=300)
                subprocess.run(command, capture_output=True, timeout=300)
        found = shutil.which("prometheus")
    if found is None and os.environ.get("CI") == "true":
        pytest.fail("CI must run the Prometheus scrape test: the `prometheus` binary is missing")
    if found is None:
        pytest.skip(
            "the `prometheus` binary is not installed (Debian package `prometheus`: "
            "`apt-get install -y prometheus`, or `make tools`)"
        )
    return found


def service_exists(name: str) -> bool:
    return importlib.util.find_spec(f"services.{name}.app") is not None


class Deadline:
    """One time budget for the whole test."""

    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        return self.end - time.monotonic()

    async def until(self, what: str, check: Any, interval: float = 0.25) -> Any:
        last: Any = None
        while self.left() > 0:
            try:
                last = await check()
            except (httpx.HTTPError, KeyError, ValueError) as exc:
                last = exc
            if last and not isinstance(last, Exception):
                return last
            await asyncio.sleep(interval)
        raise AssertionError(f"{what}: not within {DEADLINE_SECONDS}s (last: {last!r})")


@contextlib.contextmanager
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Started processes, terminated (then killed) on exit."""
    started: list[subprocess.Popen[bytes]] = []
    try:
        yield started
    finally:
        for process in started:
            if process.poll() is None:
                process.terminate()
        for process in started:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def spawn(command: list[str], log: Path, **options: Any) -> subprocess.Popen[bytes]:
    """Start `command` with its output in `log`."""
    with log.open("wb") as out:
        return subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, **options)


def prometheus_config(targets: dict[str, int]) -> dict[str, Any]:
    return {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [
            {
                "job_name": "leadflow",
                "static_configs": [
                    {"targets": [f"127.0.0.1:{port}"], "labels": {"service": name}}
                    for name, port in targets.items()
                ],
            }
        ],
    }


async def query(client: httpx.AsyncClient, expr: str) -> list[dict[str, Any]]:
    response = await client.get("/api/v1/query", params={"query": expr})
    response.raise_for_status()
    body = response.json()
    assert body["status"] == "success", body
    return body["data"]["result"]  # type: ignore[no-any-return]


async def test_prometheus_scrapes_every_service_and_sees_leads_counted(
    broker: Any, settings_factory: Any, tmp_path: Path
) -> None:
    binary = prometheus_binary()
    deadline = Deadline(DEADLINE_SECONDS)
    present = [name for name in SERVICES if service_exists(name)]
    missing = [name for name in SERVICES if name not in present]
    assert "capture" in present, "capture is needed to move the lead counters"
    settings = settings_factory("sqlite", kafka_bootstrap=broker.bootstrap)
    for name in present:
        await migrate_service(settings, name)

    ports = {name: free_port() for name in present}
    logs = tmp_path / "logs"
    logs.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEADFLOW_")}
    env.update(
        {
            "LEADFLOW_ENV": "test",
            "LEADFLOW_CONFIG": str(EXAMPLE_CONFIG),
            "LEADFLOW_VAR_DIR": str(tmp_path / "var"),
            "LEADFLOW_DATABASE_URL": settings.database_url,
            "LEADFLOW_KAFKA_BOOTSTRAP": broker.bootstrap,
            "LEADFLOW_KAFKA_CLIENT_PREFIX": settings.kafka_client_prefix,
            "LEADFLOW_KAFKA_SESSION_TIMEOUT_MS": "2000",
            "LEADFLOW_OUTBOX_POLL_SECONDS": "0.2",
            "LEADFLOW_LOG_FORMAT": "text",
        }
    )
    prometheus_dir = tmp_path / "prometheus"
    prometheus_dir.mkdir()
    (prometheus_dir / "prometheus.yml").write_text(yaml.safe_dump(prometheus_config(ports)))
    prometheus_port = free_port()

    with processes() as started:
        for name, port in ports.items():
            command = [sys.executable, "-m", "leadflow.cli", "serve", name, "--port", str(port)]
            started.append(spawn(command, logs / f"{name}.log", cwd=ROOT, env=env))
        command = [
            binary,
            f"--config.file={prometheus_dir / 'prometheus.yml'}",
            f"--storage.tsdb.path={prometheus_dir / 'data'}",
            f"--web.listen-address=127.0.0.1:{prometheus_port}",
            "--log.level=warn",
        ]
        started.append(spawn(command, logs / "prometheus.log"))
        try:
            async with httpx.AsyncClient(timeout=2, trust_env=False) as http:
                await _check_stack(http, deadline, ports, prometheus_port)
        except AssertionError:
            for log in sorted(logs.glob("*.log")):
                print(f"--- {log.name}\n{log.read_text(errors='replace')[-3000:]}")
            raise
    assert not missing, f"services without an app to scrape: {', '.join(missing)}"


async def _check_stack(
    http: httpx.AsyncClient, deadline: Deadline, ports: dict[str, int], prometheus_port: int
) -> None:
    prometheus = httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{prometheus_port}", timeout=2, trust_env=False
    )
    async with prometheus:

        async def all_up() -> bool:
            results = await query(prometheus, 'up{job="leadflow"}')
            states = {r["metric"]["service"]: r["value"][1] for r in results}
            return states == {name: "1" for name in ports}

        await deadline.until("every service up in Prometheus", all_up)

        async def captured_total() -> float:
            results = await query(prometheus, "sum(leadflow_leads_captured_total)")
            return float(results[0]["value"][1]) if results else 0.0

        before = await captured_total()
        capture = f"http://127.0.0.1:{ports['capture']}"
        tag = uuid.uuid4().hex[:8]
        for i in range(LEADS):
            response = await http.post(
                f"{capture}/v1/forms/demo-request",
                json={"work_email": f"scrape.{tag}.{i}@analytical-engines.co.uk", "name": "Ada"},
            )
            assert response.status_code == 202, response.text

        async def counted() -> bool:
            return await captured_total() >= before + LEADS

        await deadline.until("leadflow_leads_captured_total grew by the leads posted", counted)

        if "insights" in ports:
            insights = f"http://127.0.0.1:{ports['insights']}"

            async def in_report() -> bool:
                report = (await http.get(f"{insights}/v1/reports/channels")).json()
                return bool(report["totals"]["leads"] >= LEADS)

            await deadline.until("the leads in the insights report", in_report)

        # Every service's exposition, with the lead flowing through it, passes promtool's lint.
        promtool = shutil.which("promtool")
        assert promtool, "promtool comes with the prometheus package"
        for name, port in ports.items():
            exposition = (await http.get(f"http://127.0.0.1:{port}/metrics")).content
            checked = await asyncio.to_thread(
                subprocess.run,
                [promtool, "check", "metrics"],
                input=exposition,
                capture_output=True,
            )
            assert checked.returncode == 0, (name, checked.stdout, checked.stderr)
