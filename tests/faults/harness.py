"""The whole system as separate processes, with the means to break it.

- `TcpProxy`: stands between the services and a dependency (the broker, PostgreSQL) and
  can cut every connection and refuse new ones, then let traffic through again. The
  embedded broker is memory-only, so an outage is simulated by cutting it off, not by
  restarting it (Apache Kafka would keep its data across a restart; Tansu would not).
- `CrmStandIn`: a webhook receiver that records each delivered lead and can be told to
  answer 500 or 429 for a while.
- `System`: broker (behind a proxy), CRM stand-in and the five services as
  `leadflow serve` subprocesses, on SQLite or PostgreSQL (behind a proxy);
  `kill9` / `restart` one service.
- `LoadGenerator`: posts leads at a steady rate; a failed request is retried with the
  same Idempotency-Key, as a well-behaved client would, so "accepted" is exact.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

from leadflow.processes import broker_binary, free_port, wait_for_port

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("capture", "scoring", "nurture", "router", "insights")
WEBHOOK_SECRET = "faults-webhook-secret"
PG_PORT = 5432
# Submissions the load generator has on the wire at once.
IN_FLIGHT = 32


class TcpProxy:
    """A TCP forwarder that can drop all traffic (cut) and let it through again."""

    def __init__(self, target_port: int, listen_port: int | None = None) -> None:
        self.target_port = target_port
        self.port = listen_port or free_port()
        self._server: asyncio.AbstractServer | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.cut_off = False

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)

    async def stop(self) -> None:
        await self.cut()
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()

    async def cut(self) -> None:
        """Close every open connection and refuse new ones until `restore`."""
        self.cut_off = True
        for writer in list(self._writers):
            with contextlib.suppress(Exception):
                writer.transport.abort()
        self._writers.clear()

    def restore(self) -> None:
        self.cut_off = False

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.cut_off:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.transport.abort()
            return
        self._writers.update((writer, up_writer))

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    if self.cut_off:
                        break
                    dst.write(data)
                    await dst.drain()
            except (OSError, asyncio.CancelledError):
                pass
            finally:
                with contextlib.suppress(Exception):
                    dst.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._writers.discard(writer)
        self._writers.discard(up_writer)


class CrmStandIn:
    """Receives the router's signed webhook deliveries; can fail on demand."""

    def __init__(self) -> None:
        self.deliveries: list[dict[str, Any]] = []
        self.arrivals: dict[str, float] = {}  # lead id → first delivery (time.monotonic())
        self.fail_with: int | None = None
        self.bad_signatures = 0
        self.lock = threading.Lock()
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive: no connection (and thread) per delivery

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                status = stand_in.fail_with
                if status is None:
                    if not _signature_ok(self.headers.get("leadflow-signature", ""), body):
                        stand_in.bad_signatures += 1
                        status = 401
                    else:
                        delivery = json.loads(body)
                        with stand_in.lock:
                            stand_in.deliveries.append(delivery)
                            stand_in.arrivals.setdefault(
                                str(delivery.get("lead_id")), time.monotonic()
                            )
                        status = 200
                self.send_response(status)
                if status == 429:
                    self.send_header("Retry-After", "1")
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/crm"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def lead_counts(self) -> Counter[str]:
        with self.lock:
            return Counter(str(d.get("lead_id")) for d in self.deliveries)

    def close(self) -> None:
        self.server.shutdown()


def start_broker(listen: str, advertised: str) -> subprocess.Popen[bytes]:
    """A Tansu broker that advertises `advertised` (a proxy in front of it)."""
    return subprocess.Popen(
        [
            broker_binary(),
            "broker",
            "--listener-url",
            listen,
            "--advertised-listener-url",
            advertised,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _signature_ok(header: str, body: bytes) -> bool:
    try:
        parts = dict(p.split("=", 1) for p in header.split(","))
        expected = hmac.new(
            WEBHOOK_SECRET.encode(), f"{parts['t']}.".encode() + body, hashlib.sha256
        ).hexdigest()
        return hmac.compare_digest(expected, parts["v1"])
    except (KeyError, ValueError):
        return False


@dataclass
class System:
    """Broker, CRM stand-in and five service processes, wired through proxies."""

    workdir: Path
    backend: str = "sqlite"
    broker_port: int = field(default_factory=free_port)
    ports: dict[str, int] = field(default_factory=dict)
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    broker_process: subprocess.Popen[bytes] | None = None
    broker_proxy: TcpProxy | None = None
    pg_proxy: TcpProxy | None = None
    crm: CrmStandIn | None = None
    env: dict[str, str] = field(default_factory=dict)
    # Settings over the harness's own (a benchmark runs the services with their defaults).
    extra_env: dict[str, str] = field(default_factory=dict)
    # Services talk to the broker directly: no proxy to cut, and no Kafka traffic through
    # this process (a benchmark measures the system, not the harness).
    direct_broker: bool = False

    async def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.crm = CrmStandIn()
        listen = f"tcp://127.0.0.1:{self.broker_port}"
        if self.direct_broker:
            advertised = listen
            bootstrap_port = self.broker_port
        else:
            self.broker_proxy = TcpProxy(self.broker_port)
            await self.broker_proxy.start()
            # The broker advertises the proxy's address, so every client goes through it.
            advertised = f"tcp://127.0.0.1:{self.broker_proxy.port}"
            bootstrap_port = self.broker_proxy.port
        self.broker_process = start_broker(listen, advertised)
        wait_for_port(self.broker_port, 15, self.broker_process)
        self.ports = {name: free_port() for name in SERVICES}
        prefix = f"f{uuid.uuid4().hex[:8]}"
        self.env = {
            **os.environ,
            "LEADFLOW_ENV": "test",
            "LEADFLOW_CONFIG": str(ROOT / "leadflow.example.yaml"),
            "LEADFLOW_VAR_DIR": str(self.workdir / "var"),
            "LEADFLOW_KAFKA_BOOTSTRAP": f"127.0.0.1:{bootstrap_port}",
            "LEADFLOW_KAFKA_CLIENT_PREFIX": prefix,
            "LEADFLOW_KAFKA_SESSION_TIMEOUT_MS": "3000",
            "LEADFLOW_OUTBOX_POLL_SECONDS": "0.3",
            "LEADFLOW_LOG_FORMAT": "json",
            "LEADFLOW_ROUTER_WEBHOOK_URL": self.crm.url,
            "LEADFLOW_ROUTER_WEBHOOK_SECRET": WEBHOOK_SECRET,
            "LEADFLOW_SMTP_PORT": str(free_port()),
            **{f"LEADFLOW_PORTS__{n.upper()}": str(p) for n, p in self.ports.items()},
            **self.extra_env,
        }
        if self.backend == "postgres":
            self.pg_proxy = TcpProxy(PG_PORT)
            await self.pg_proxy.start()
            self.env["LEADFLOW_DATABASE_URL"] = (
                f"postgresql+asyncpg://postgres@127.0.0.1:{self.pg_proxy.port}/test"
            )
            self.env["LEADFLOW_DATABASE_SCHEMA_PREFIX"] = prefix + "_"
        else:
            self.env["LEADFLOW_DATABASE_URL"] = (
                f"sqlite+aiosqlite:///{self.workdir}/var/{{service}}.db"
            )
        for command in (["topics", "create"], ["migrate"]):
            await asyncio.to_thread(
                subprocess.run,
                [sys.executable, "-m", "leadflow.cli", *command],
                env=self.env,
                check=True,
                capture_output=True,
                cwd=ROOT,
            )
        for name in SERVICES:
            self.spawn(name)
        await self.wait_healthy()

    def spawn(self, name: str) -> None:
        log = (self.workdir / f"{name}.log").open("ab")
        self.processes[name] = subprocess.Popen(
            [sys.executable, "-m", "leadflow.cli", "serve", name],
            env=self.env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    async def wait_healthy(self, names: tuple[str, ...] = SERVICES, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        pending = set(names)
        async with httpx.AsyncClient(timeout=1) as client:
            while pending and time.monotonic() < deadline:
                for name in list(pending):
                    if self.processes[name].poll() is not None:
                        raise RuntimeError(f"{name} exited; see {self.workdir}/{name}.log")
                    with contextlib.suppress(httpx.HTTPError):
                        await client.get(f"http://127.0.0.1:{self.ports[name]}/healthz")
                        pending.discard(name)
                await asyncio.sleep(0.2)
        if pending:
            raise TimeoutError(f"not healthy: {sorted(pending)}")

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    def kill9(self, name: str) -> None:
        self.processes[name].send_signal(signal.SIGKILL)
        self.processes[name].wait()

    async def restart(self, name: str) -> None:
        self.spawn(name)
        await self.wait_healthy((name,))

    async def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes.values():
            try:
                await asyncio.to_thread(process.wait, 20)
            except subprocess.TimeoutExpired:
                process.kill()
        if self.broker_process is not None:
            self.broker_process.terminate()
            self.broker_process.wait(5)
        for proxy in (self.broker_proxy, self.pg_proxy):
            if proxy is not None:
                await proxy.stop()
        if self.crm is not None:
            self.crm.close()

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in self.workdir.glob("*.log"))


@dataclass
class LoadGenerator:
    """Posts hot and cold leads at a steady rate; retries with the same Idempotency-Key."""

    capture_url: str
    rate: float
    accepted: dict[str, str] = field(default_factory=dict)  # idempotency key → lead id
    kinds: dict[str, str] = field(default_factory=dict)  # lead id → hot | cold
    statuses: Counter[int] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    _slots: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(IN_FLIGHT))

    async def run(self, count: int, hot_share: float = 0.5) -> None:
        # At most IN_FLIGHT posts at once: during an outage every submission waits to be
        # retried, and an HTTP pool with hundreds of queued requests spends this process's
        # CPU matching them to connections, starving the fault proxies that share its loop.
        limits = httpx.Limits(max_connections=IN_FLIGHT, max_keepalive_connections=IN_FLIGHT)
        async with httpx.AsyncClient(timeout=10, limits=limits) as client:
            tasks = []
            started = time.monotonic()
            for i in range(count):
                delay = started + i / self.rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                kind = "hot" if (i % 100) < hot_share * 100 else "cold"
                tasks.append(asyncio.create_task(self._submit(client, kind)))
            await asyncio.gather(*tasks)

    async def _submit(self, client: httpx.AsyncClient, kind: str) -> None:
        key = uuid.uuid4().hex
        tag = key[:12]
        if kind == "hot":
            url = f"{self.capture_url}/v1/forms/demo-request"
            body: dict[str, Any] = {
                "work_email": f"hot.{tag}@analytical-engines.co.uk",
                "name": "Hot Lead",
                "company": "Analytical Engines",
                "title": "Director of Engineering",
                "country": "GB",
                "company_size": "120",
                "utm_source": "google",
                "utm_medium": "cpc",
                "marketing_consent": "yes",
            }
        else:
            url = f"{self.capture_url}/v1/forms/guide-download"
            body = {"email": f"cold.{tag}@gmail.com", "marketing_consent": "yes"}
        for attempt in range(120):
            started = time.monotonic()
            try:
                async with self._slots:
                    response = await client.post(url, json=body, headers={"Idempotency-Key": key})
            except httpx.HTTPError:
                await asyncio.sleep(min(0.5 * (attempt + 1), 2))
                continue
            self.statuses[response.status_code] += 1
            if response.status_code == 202:
                self.latencies.append(time.monotonic() - started)
                lead_id = response.json()["lead_id"]
                self.accepted[key] = lead_id
                self.kinds[lead_id] = kind
                return
            if response.status_code in (429, 503):
                await asyncio.sleep(float(response.headers.get("retry-after", "1")))
                continue
            raise AssertionError(f"unexpected {response.status_code}: {response.text}")
        raise AssertionError("a submission was never accepted")

    @property
    def hot(self) -> set[str]:
        return {lead for lead, kind in self.kinds.items() if kind == "hot"}

    @property
    def cold(self) -> set[str]:
        return {lead for lead, kind in self.kinds.items() if kind == "cold"}


async def reconcile(system: System, load: LoadGenerator, timeout: float = 90) -> dict[str, Any]:
    """Wait until every accepted lead reached its final sink; report lost and duplicated.

    Final sinks: hot leads at the CRM stand-in (once each), cold leads enrolled in nurture
    (once each), every lead counted once by insights.
    """
    assert system.crm is not None
    deadline = time.monotonic() + timeout
    report: dict[str, Any] = {}
    async with httpx.AsyncClient(timeout=10) as client:
        while True:
            counts = system.crm.lead_counts()
            lost_crm = load.hot - set(counts)
            duplicated_crm = {lead for lead, n in counts.items() if n > 1}
            unexpected_crm = set(counts) - load.hot
            enrolled: set[str] = set()
            duplicated_enrollments: set[str] = set()
            for lead in load.cold:
                with contextlib.suppress(httpx.HTTPError):
                    response = await client.get(
                        f"{system.url('nurture')}/v1/leads/{lead}/enrollments"
                    )
                    if response.status_code == 200:
                        enrollments = response.json()
                        items = (
                            enrollments.get("enrollments", enrollments)
                            if isinstance(enrollments, dict)
                            else enrollments
                        )
                        if items:
                            enrolled.add(lead)
                        if len(items) > 1:
                            duplicated_enrollments.add(lead)
            leads_counted = None
            with contextlib.suppress(httpx.HTTPError, KeyError, ValueError):
                report_json = (
                    await client.get(f"{system.url('insights')}/v1/reports/channels")
                ).json()
                leads_counted = sum(row["leads"] for row in report_json["channels"])
            report = {
                "accepted": len(load.accepted),
                "hot": len(load.hot),
                "cold": len(load.cold),
                "lost_at_crm": sorted(lost_crm),
                "duplicated_at_crm": sorted(duplicated_crm),
                "unexpected_at_crm": sorted(unexpected_crm),
                "not_enrolled": sorted(load.cold - enrolled),
                "duplicated_enrollments": sorted(duplicated_enrollments),
                "insights_leads": leads_counted,
            }
            done = (
                not lost_crm and not (load.cold - enrolled) and leads_counted == len(load.accepted)
            )
            if done or time.monotonic() > deadline:
                return report
            await asyncio.sleep(0.5)
