"""Fixtures on real parts: the embedded Kafka-protocol broker, SQLite and PostgreSQL.

- `broker`: a fresh Tansu broker per test (it starts in milliseconds), topics created.
- `settings_factory` / `db_settings`: Settings for a unique test namespace, on SQLite
  (a temp directory) or PostgreSQL (unique schemas in database `test`); tests that take
  `backend` run on both.
- `running_service`: a service app started in-process (lifespan and all), with an
  httpx client bound to it.

PostgreSQL is required when CI=true: unreachable there fails the run loudly.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from leadflow import registry
from leadflow.processes import broker_binary, free_port, wait_for_port
from shared.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
PG_URL = os.environ.get("LEADFLOW_TEST_PG_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")
EXAMPLE_CONFIG = ROOT / "leadflow.example.yaml"


def _pg_reachable() -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", 5432)) == 0


PG_AVAILABLE = _pg_reachable()
if os.environ.get("CI") == "true" and not PG_AVAILABLE:
    raise pytest.UsageError(
        "CI=true but PostgreSQL at 127.0.0.1:5432 is unreachable: start it "
        "(pg_ctlcluster ... main start) instead of skipping its tests"
    )


class Broker:
    """A running embedded broker."""

    def __init__(self, port: int, process: subprocess.Popen[bytes]) -> None:
        self.port = port
        self.process = process
        self.bootstrap = f"127.0.0.1:{port}"

    def pause(self) -> None:
        """Freeze the broker (SIGSTOP): connections hang as with a network outage."""
        self.process.send_signal(19)

    def resume(self) -> None:
        self.process.send_signal(18)


def start_broker_process(port: int | None = None) -> Broker:
    port = port or free_port()
    url = f"tcp://127.0.0.1:{port}"
    process = subprocess.Popen(
        [broker_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for_port(port, 15, process)
    return Broker(port, process)


def stop_broker_process(broker: Broker) -> None:
    broker.resume()
    broker.process.terminate()
    try:
        broker.process.wait(5)
    except subprocess.TimeoutExpired:
        broker.process.kill()
        broker.process.wait()


@pytest.fixture
async def broker() -> AsyncIterator[Broker]:
    """A fresh broker with leadflow's topics (3 partitions each)."""
    from shared.kafka.client import create_topics

    running = start_broker_process()
    try:
        await create_topics(Settings(kafka_bootstrap=running.bootstrap, kafka_partitions=3))
        yield running
    finally:
        stop_broker_process(running)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest) -> str:
    """Run the test on SQLite and on PostgreSQL."""
    if request.param == "postgres" and not PG_AVAILABLE:
        pytest.skip("PostgreSQL is not reachable at 127.0.0.1:5432")
    return str(request.param)


_created_schemas: list[str] = []


@pytest.fixture
def settings_factory(tmp_path: Path) -> Callable[..., Settings]:
    """Build Settings for an isolated namespace: `settings_factory(backend, **overrides)`."""

    def build(backend: str = "sqlite", **overrides: Any) -> Settings:
        prefix = f"t{uuid.uuid4().hex[:10]}_"
        values: dict[str, Any] = {
            "env": "test",
            "config": EXAMPLE_CONFIG,
            "var_dir": tmp_path / "var",
            "kafka_client_prefix": prefix.rstrip("_"),
            "log_format": "text",
            "outbox_poll_seconds": 0.2,
            # The embedded broker completes a group join after half the session timeout.
            "kafka_session_timeout_ms": 2000,
        }
        if backend == "postgres":
            values["database_url"] = PG_URL
            values["database_schema_prefix"] = prefix
            _created_schemas.extend(
                prefix + s for s in ("capture", "scoring", "nurture", "router", "insights")
            )
        else:
            values["database_url"] = f"sqlite+aiosqlite:///{tmp_path}/db/{prefix}{{service}}.db"
        values.update(overrides)
        return Settings(**values)

    return build


@pytest.fixture(scope="session", autouse=True)
def _drop_test_schemas() -> Iterator[None]:
    yield
    if not _created_schemas or not PG_AVAILABLE:
        return

    async def drop() -> None:
        engine = create_async_engine(PG_URL)
        try:
            async with engine.begin() as conn:
                for schema in _created_schemas:
                    await conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        finally:
            await engine.dispose()

    with contextlib.suppress(Exception):
        asyncio.run(drop())


async def migrate_service(settings: Settings, service: str) -> None:
    """Run the service's Alembic migrations."""
    await registry.migrate(settings, service)


class RunningService:
    """A service app running in-process, with an HTTP client bound to it."""

    def __init__(self, app: Any, client: httpx.AsyncClient) -> None:
        self.app = app
        self.client = client

    @property
    def runtime(self) -> Any:
        return self.app.state.runtime


@contextlib.asynccontextmanager
async def run_service(
    service: str, settings: Settings, migrate: bool = True
) -> AsyncIterator[RunningService]:
    """Migrate, build and start a service; stop it on exit."""
    if migrate:
        await migrate_service(settings, service)
    app = registry.app_factory(service)(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield RunningService(app, client)


@pytest.fixture
def running_service() -> Callable[..., contextlib.AbstractAsyncContextManager[RunningService]]:
    """`async with running_service("capture", settings) as svc: await svc.client.post(...)`."""
    return run_service


async def consume_all(
    bootstrap: str, topic: str, expected: int, timeout: float = 10.0
) -> list[Any]:
    """Read `topic` from the start until `expected` records arrived (or the timeout)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    # No group: assigning partitions directly skips the group join.
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    records: list[Any] = []
    try:
        partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            await consumer._client.force_metadata_update()
            partitions = consumer.partitions_for_topic(topic) or set()
        consumer.assign([TopicPartition(topic, p) for p in partitions])
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while len(records) < expected and loop.time() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            for items in batch.values():
                records.extend(items)
    finally:
        await consumer.stop()
    return records


async def eventually(check: Callable[[], Any], timeout: float = 10.0, interval: float = 0.1) -> Any:
    """Poll an (async) check until it returns a truthy value; fail with its last result."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    result: Any = None
    while loop.time() < deadline:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        await asyncio.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s (last: {result!r})")
