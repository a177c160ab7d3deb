"""Speed-to-lead, measured: capture → scoring → router → CRM stand-in at a steady rate.

Starts the whole system (broker, five services, SQLite) with the router's webhook
destination pointing at a local CRM stand-in, posts hot demo requests (sales-ready
under the example scoring model) at a steady rate from an open-loop generator, and
reports, per lead, the time from sending the form to the CRM receiving the signed
delivery, and the CPU every process spent per lead (utime + stime from /proc, read
before the first lead and once every process is back to idle after the last), next
to what each burns per second with no traffic at all.

    python bench/e2e_bench.py --rate 200 --seconds 30 --out results.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.webhook_bench import percentiles  # noqa: E402
from tests.faults.harness import System  # noqa: E402

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
IDLE_SECONDS = 5.0


def cpu_seconds(pid: int) -> float:
    """utime + stime of one process, from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def cpu_snapshot(system: System) -> dict[str, float]:
    """CPU seconds so far of every service process and the broker."""
    pids = {name: process.pid for name, process in system.processes.items()}
    if system.broker_process is not None:
        pids["broker"] = system.broker_process.pid
    # This process: the load generator and the CRM stand-in.
    pids["bench"] = os.getpid()
    return {name: cpu_seconds(pid) for name, pid in pids.items()}


async def settled(system: System, idle: dict[str, float], timeout: float = 30) -> dict[str, float]:
    """The CPU snapshot once every process is back to its idle rate (work behind the CRM,
    such as nurture and insights catching up, counts towards the leads)."""
    deadline = time.monotonic() + timeout
    previous = cpu_snapshot(system)
    while time.monotonic() < deadline:
        await asyncio.sleep(1.0)
        current = cpu_snapshot(system)
        busy = [n for n in current if (current[n] - previous[n]) * 1000 > idle[n] + 20]
        previous = current
        if not busy:
            break
    return previous


def cpu_per_lead(before: dict[str, float], after: dict[str, float], leads: int) -> dict[str, float]:
    """Milliseconds of CPU per lead, per process, with the services' sum and the total
    (services and broker; the bench process is shown apart)."""
    per = {name: round((after[name] - before[name]) * 1000 / max(leads, 1), 2) for name in after}
    per["services"] = round(sum(v for k, v in per.items() if k not in ("broker", "bench")), 2)
    per["total"] = round(per["services"] + per.get("broker", 0.0), 2)
    return per


async def run(
    rate: float,
    seconds: float,
    backend: str,
    profile: Path | None = None,
    dump: Path | None = None,
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmpdir:
        # The outbox relays poll as `leadflow up` runs them (the fault harness polls faster).
        system = System(
            Path(tmpdir) / "system",
            backend=backend,
            extra_env={"LEADFLOW_OUTBOX_POLL_SECONDS": "1.0"},
            direct_broker=True,
        )
        await system.start()
        try:
            results = await measure(system, rate, seconds, profile)
            if dump is not None:
                results["dumped_records"] = await dump_topics(system, dump)
            return results
        finally:
            await system.stop()


async def dump_topics(system: System, into: Path) -> int:
    """Every record of every topic, as JSON lines (what bench/consumer_bench.py replays)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from shared.events.topics import TOPICS

    consumer = AIOKafkaConsumer(
        bootstrap_servers=system.env["LEADFLOW_KAFKA_BOOTSTRAP"], enable_auto_commit=False
    )
    await consumer.start()
    count = 0
    try:
        await consumer.topics()  # metadata for every topic
        partitions = [
            TopicPartition(topic, p)
            for topic in TOPICS
            for p in sorted(consumer.partitions_for_topic(topic) or ())
        ]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        records = []

        async def behind() -> bool:
            return any([await consumer.position(tp) < ends[tp] for tp in partitions])

        while await behind():
            for tp_records in (await consumer.getmany(timeout_ms=1000)).values():
                records.extend(tp_records)
        records.sort(key=lambda r: r.timestamp)
        with into.open("w") as out:
            for r in records:
                line = {
                    "topic": r.topic,
                    "partition": r.partition,
                    "offset": r.offset,
                    "key": r.key.decode() if r.key else None,
                    "value": r.value.decode() if r.value else None,
                    "headers": [[k, v.decode()] for k, v in r.headers],
                }
                out.write(json.dumps(line) + "\n")
                count += 1
    finally:
        await consumer.stop()
    return count


def start_profilers(system: System, into: Path) -> list[subprocess.Popen[bytes]]:
    """py-spy on every service process, collapsed stacks into `into/<service>.txt`."""
    into.mkdir(parents=True, exist_ok=True)
    py_spy = str(Path(sys.executable).with_name("py-spy"))
    return [
        subprocess.Popen(
            [
                py_spy,
                "record",
                "--pid",
                str(process.pid),
                "--rate",
                "200",
                "--format",
                "raw",
                "--output",
                str(into / f"{name}.txt"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for name, process in system.processes.items()
    ]


def stop_profilers(profilers: list[subprocess.Popen[bytes]]) -> None:
    for profiler in profilers:
        profiler.send_signal(signal.SIGINT)
    for profiler in profilers:
        profiler.wait(timeout=30)


class FormPoster:
    """JSON posts over a pool of keep-alive HTTP/1.1 connections, with as little client work
    as possible: the generator shares the machine with the system it measures (httpx
    spent ~1 ms of CPU per post, a tenth of the whole pipeline's)."""

    def __init__(self, port: int, path: str, connections: int = 64) -> None:
        self.port = port
        self.head = (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            "Content-Type: application/json\r\nAccept: application/json\r\n"
        ).encode()
        self.connections = connections
        self._idle: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = (
            asyncio.Queue()
        )
        self._all: list[asyncio.StreamWriter] = []

    async def __aenter__(self) -> FormPoster:
        for _ in range(self.connections):
            reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
            self._all.append(writer)
            self._idle.put_nowait((reader, writer))
        return self

    async def __aexit__(self, *exc: object) -> None:
        for writer in self._all:
            writer.close()

    async def post(self, body: bytes) -> tuple[int, bytes]:
        """Status and body of one POST; the connection goes back to the pool.

        A connection the server closed while it sat idle (its keep-alive timeout) is
        replaced and the post sent again on the new one, with the same Idempotency-Key.
        """
        request = (
            self.head
            + b"Idempotency-Key: %s\r\n" % uuid.uuid4().hex.encode()
            + b"Content-Length: %d\r\n\r\n" % len(body)
            + body
        )
        reader, writer = await self._idle.get()
        try:
            for attempt in (1, 2):
                try:
                    return await self._exchange(reader, writer, request)
                except (asyncio.IncompleteReadError, ConnectionError):
                    writer.close()
                    reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
                    self._all.append(writer)
                    if attempt == 2:
                        raise
            raise AssertionError("unreachable")
        finally:
            self._idle.put_nowait((reader, writer))

    @staticmethod
    async def _exchange(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
    ) -> tuple[int, bytes]:
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        return int(head[9:12]), await reader.readexactly(length)


async def measure(
    system: System, rate: float, seconds: float, profile: Path | None = None
) -> dict[str, Any]:
    assert system.crm is not None
    sent: dict[str, float] = {}
    statuses: dict[int, int] = {}
    client = FormPoster(system.ports["capture"], "/v1/forms/demo-request")

    async with client:

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
            status, answer = await client.post(json.dumps(body).encode())
            statuses[status] = statuses.get(status, 0) + 1
            if status == 202:
                sent[json.loads(answer)["lead_id"]] = started

        # Warm-up: the consumer groups have joined once a first lead went all the way.
        await one()
        deadline = time.monotonic() + 60
        while not set(sent) <= set(system.crm.arrivals) and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        sent.clear()
        statuses.clear()

        # Idle: what every process burns with no traffic at all (polling, timers).
        idle_before = cpu_snapshot(system)
        await asyncio.sleep(IDLE_SECONDS)
        idle_after = cpu_snapshot(system)
        idle = {
            name: round((idle_after[name] - idle_before[name]) * 1000 / IDLE_SECONDS, 1)
            for name in idle_after
        }

        profilers = start_profilers(system, profile) if profile else []
        busy_before = cpu_snapshot(system)
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
    busy_after = await settled(system, idle)
    stop_profilers(profilers)
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
        "cpu_ms_per_lead": cpu_per_lead(busy_before, busy_after, len(sent)),
        "idle_cpu_ms_per_s": idle,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rate", type=float, default=200)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--backend", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--out", type=Path)
    parser.add_argument(
        "--profile", type=Path, help="py-spy every service under load, stacks into this folder"
    )
    parser.add_argument(
        "--dump", type=Path, help="after the run, write every topic's records to this file"
    )
    args = parser.parse_args()
    results = asyncio.run(run(args.rate, args.seconds, args.backend, args.profile, args.dump))
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
