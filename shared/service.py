"""A service's runtime: database, producer, outbox relay, consumers and background workers.

Each service's `app.py` builds one of these in its app factory (the
composition root) and hands its lifespan to FastAPI. Nothing connects at
import time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import sqlalchemy as sa
from fastapi import FastAPI

from shared.db.engine import Database
from shared.db.uow import UnitOfWork
from shared.kafka.client import make_producer
from shared.kafka.consumer import BatchHook, EventConsumer, Handler
from shared.kafka.outbox import OutboxRelay
from shared.settings import Settings

log = logging.getLogger(__name__)

Worker = Callable[[asyncio.Event], Awaitable[None]]


class ServiceRuntime:
    """Everything a service starts and stops, wired once."""

    def __init__(
        self,
        service: str,
        settings: Settings,
        outbox: sa.Table,
        inbox: sa.Table,
        *,
        database: Database | None = None,
        plan_with_values: bool = False,
    ) -> None:
        self.service = service
        self.settings = settings
        self.outbox = outbox
        self.inbox = inbox
        self.db = database or Database(
            settings.database_url_for(service),
            service=service,
            schema=settings.schema_for(service),
            pool_size=settings.database_pool_size,
            plan_with_values=plan_with_values,
        )
        self.relay: OutboxRelay | None = None
        self.consumers: list[EventConsumer] = []
        self._consumer_specs: list[dict[str, Any]] = []
        self._workers: list[tuple[str, Worker]] = []
        self._worker_tasks: list[asyncio.Task[None]] = []
        self._consumer_starts: list[asyncio.Task[None]] = []
        self._stop = asyncio.Event()
        self.started = False

    def uow(self) -> UnitOfWork:
        """A fresh unit of work on this service's database."""
        return UnitOfWork(self.db, self.outbox, self.inbox, source=f"leadflow/{self.service}")

    def add_consumer(
        self,
        topics: Sequence[str],
        handlers: dict[str, Handler],
        name: str | None = None,
        *,
        before_batch: BatchHook | None = None,
        **options: Any,
    ) -> None:
        """Consume `topics` with this service's group, dispatching by event type.

        `before_batch` runs once per batch before its handlers (to load what they read
        in one query).
        """
        self._consumer_specs.append(
            {
                "topics": topics,
                "handlers": handlers,
                "name": name,
                "before_batch": before_batch,
                **options,
            }
        )

    def add_worker(self, name: str, worker: Worker) -> None:
        """A background loop; it gets an event that is set when the service stops."""
        self._workers.append((name, worker))

    async def start(self) -> None:
        await self.db.ensure_schema()
        # The relay connects its producer lazily: a broker that is down at start-up must not
        # stop the service from accepting work into its outbox.
        self.relay = OutboxRelay(
            self.db,
            self.outbox,
            lambda: make_producer(self.settings, client_id=f"leadflow-{self.service}"),
            service=self.service,
            poll_seconds=self.settings.outbox_poll_seconds,
        )
        self.relay.start()
        for spec in self._consumer_specs:
            consumer = EventConsumer(
                service=self.service,
                group_id=self.settings.group_id(self.service),
                uow_factory=self.uow,
                settings=self.settings,
                **spec,
            )
            self.consumers.append(consumer)
            self._consumer_starts.append(
                asyncio.create_task(
                    _start_consumer_with_retry(consumer, self._stop),
                    name=f"{self.service}-consumer-start",
                )
            )
        for name, worker in self._workers:
            self._worker_tasks.append(
                asyncio.create_task(
                    _run_worker(name, worker, self._stop), name=f"{self.service}-{name}"
                )
            )
        self.started = True

    async def stop(self) -> None:
        self._stop.set()
        # A consumer still joining its group has nothing in hand: stop waiting for it.
        for task in self._consumer_starts:
            task.cancel()
        await asyncio.gather(*self._consumer_starts, return_exceptions=True)
        for consumer in self.consumers:
            await consumer.stop()
        for task in self._worker_tasks:
            try:
                await asyncio.wait_for(task, 10)
            except (TimeoutError, asyncio.CancelledError):
                task.cancel()
            except Exception:
                log.exception("worker ended with an error")
        if self.relay is not None:
            await self.relay.stop()
        await self.db.dispose()

    async def readiness(self) -> dict[str, str]:
        """'ok' or the reason, per dependency."""
        checks: dict[str, str] = {}
        try:
            await asyncio.wait_for(self.db.ping(), 2)
            checks["database"] = "ok"
        except Exception as exc:
            checks["database"] = f"unreachable: {type(exc).__name__}"
        checks["broker"] = await self._broker_check()
        return checks

    async def _broker_check(self) -> str:
        if self.relay is None:
            return "not started"
        try:
            producer = await asyncio.wait_for(self.relay.ensure_producer(), 3)
            ok = await asyncio.wait_for(producer.client.force_metadata_update(), 2)
        except Exception as exc:
            return f"unreachable: {type(exc).__name__}"
        return "ok" if ok else "unreachable"

    def lifespan(self) -> Callable[[FastAPI], contextlib.AbstractAsyncContextManager[None]]:
        """FastAPI lifespan that starts and stops this runtime."""

        @contextlib.asynccontextmanager
        async def _lifespan(_: FastAPI) -> AsyncIterator[None]:
            await self.start()
            try:
                yield
            finally:
                await self.stop()

        return _lifespan


async def _start_consumer_with_retry(consumer: EventConsumer, stop: asyncio.Event) -> None:
    delay = 0.5
    while not stop.is_set():
        try:
            await consumer.start()
            return
        except Exception as exc:
            log.warning("consumer %s could not start (%s); retrying", consumer.name, exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
            delay = min(delay * 2, 10)


async def _run_worker(name: str, worker: Worker, stop: asyncio.Event) -> None:
    while not stop.is_set():
        try:
            await worker(stop)
            return
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("worker %s crashed; restarting in 1s", name)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1)
