"""The consumer runtime: batch fetch, handler per event type, inbox, bounded retries, DLQ.

For every fetched batch, one database transaction holds the handlers' effects,
the inbox marks of the events handled and any dead letters; offsets are
committed only after that transaction commits. A redelivered event finds its
id in the inbox and changes nothing.

A batch is first handled whole (here): every handler in one transaction with no
savepoint per event, the inbox marks claimed up front in one statement that says
which events are new, the outbox rows written in one statement at commit (an
optional `before_batch` hook loads what the batch's handlers need in one query),
with garbage collection paused until it is done. If any handler raises, that
transaction is rolled back and the batch is handled again event by event
(`shared.kafka.event_by_event`): each attempt in its own savepoint, bounded
attempts, and an event that keeps failing goes to the topic's `.dlq` in the same
transaction, so the partition keeps moving. A database
outage aborts the batch: nothing is committed, the consumer seeks back and tries
again after a backoff.

The module is over 300 lines because the fetch loop's pacing (linger, quiet fetches)
and the batch's one transaction are read together.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord
from aiokafka.errors import KafkaError
from aiokafka.structs import OffsetAndMetadata, TopicPartition

from shared import metrics
from shared.db.engine import is_transient_db_error
from shared.db.uow import UowFactory
from shared.events.envelope import Envelope, decode
from shared.kafka.event_by_event import EventByEvent
from shared.kafka.handling import DLQ_HEADERS as DLQ_HEADERS
from shared.kafka.handling import REDRIVE_HEADER as REDRIVE_HEADER
from shared.kafka.handling import BatchHook as BatchHook
from shared.kafka.handling import Handler as Handler
from shared.kafka.handling import handler_name, observe_all, record_event_id
from shared.settings import Settings

log = logging.getLogger(__name__)

#: A consumer that has fetched nothing for this long fetches with `QUIET_FETCH_WAIT_MS`.
QUIET_SECONDS = 5.0
QUIET_FETCH_WAIT_MS = 500


def _set_fetch_wait(consumer: AIOKafkaConsumer, wait_ms: int) -> None:
    """The longest wait of the consumer's next fetches (aiokafka reads it per request)."""
    fetcher = getattr(consumer, "_fetcher", None)
    if fetcher is not None and hasattr(fetcher, "_fetch_max_wait_ms"):
        fetcher._fetch_max_wait_ms = wait_ms


@contextlib.contextmanager
def _collection_paused() -> Iterator[None]:
    """No garbage collection while a batch is handled (unless it is already off).

    A batch's objects (records, events, states, rows) live until its commit and are freed
    by reference counting then: collections while it runs only walk them and promote them
    to the old generation, where they bring on full collections of the whole heap.
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


class EventConsumer:
    """Runs one consumer group member: topic → event type → handler."""

    def __init__(
        self,
        *,
        service: str,
        group_id: str,
        topics: Sequence[str],
        handlers: dict[str, Handler],
        uow_factory: UowFactory,
        settings: Settings,
        name: str | None = None,
        max_attempts: int | None = None,
        batch_size: int | None = None,
        retry_delay: float = 0.05,
        before_batch: BatchHook | None = None,
        linger: float = 0.0,
    ) -> None:
        self.service = service
        self.group_id = group_id
        self.topics = list(topics)
        self.handlers = handlers
        self.uow_factory = uow_factory
        self.settings = settings
        self.name = name or group_id
        self.max_attempts = max_attempts or settings.consumer_max_attempts
        self.batch_size = batch_size or settings.consumer_batch_size
        self.retry_delay = retry_delay
        self.before_batch = before_batch
        # Seconds a batch that is not full waits for more records once its first ones
        # are in (Kafka's linger, consumer side): fewer, fuller transactions for the
        # services off the speed path, whose per-batch costs dominate at small batches.
        self.linger = linger
        self._names: dict[Handler, str] = {}
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._last_lag_update = 0.0
        self._quiet_since: float | None = None
        self.last_batch_at: float | None = None

    async def start(self) -> None:
        self._consumer = AIOKafkaConsumer(
            *self.topics,
            bootstrap_servers=self.settings.kafka_bootstrap,
            group_id=self.group_id,
            client_id=f"{self.service}-{self.name}",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=self.batch_size,
            # A group member's fetch can sit out its whole wait although records arrived
            # (multi-partition fetches): the wait is the floor of every hop's latency.
            fetch_max_wait_ms=self.settings.kafka_fetch_max_wait_ms,
            session_timeout_ms=self.settings.kafka_session_timeout_ms,
            heartbeat_interval_ms=max(self.settings.kafka_session_timeout_ms // 5, 100),
            request_timeout_ms=15_000,
            retry_backoff_ms=200,
        )
        await self._consumer.start()
        self._task = asyncio.create_task(self._run(), name=f"{self.service}-consumer-{self.name}")

    async def stop(self, timeout: float = 15.0) -> None:
        """Finish the batch in hand, commit it, leave the group."""
        self._stopping.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), timeout)
            except TimeoutError:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await self._task
        if self._consumer is not None:
            with contextlib.suppress(Exception):
                await self._consumer.stop()

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def _run(self) -> None:
        assert self._consumer is not None
        consumer = self._consumer
        backoff = 0.2
        while not self._stopping.is_set():
            try:
                batch = await consumer.getmany(timeout_ms=500, max_records=self.batch_size)
            except KafkaError as exc:
                log.warning("fetch failed: %s", exc)
                await asyncio.sleep(backoff)
                continue
            if not batch:
                self._idle_fetches(consumer, time.monotonic())
                await self._maybe_update_lag()
                continue
            if self._quiet_since is not None:
                self._quiet_since = None
                _set_fetch_wait(consumer, self.settings.kafka_fetch_max_wait_ms)
            if self.linger:
                await self._linger(consumer, batch)
            records = [r for tp_records in batch.values() for r in tp_records]
            metrics.consumer_batch_size.labels(self.service).observe(len(records))
            try:
                await self.process(records)
            except Exception as exc:
                if not is_transient_db_error(exc):
                    log.exception("batch failed unexpectedly; will retry")
                else:
                    log.warning(
                        "database unavailable (%s); retrying batch in %.1fs",
                        type(exc).__name__,
                        backoff,
                    )
                for tp, tp_records in batch.items():
                    consumer.seek(tp, tp_records[0].offset)
                await self._sleep(backoff)
                backoff = min(backoff * 2, 10.0)
                continue
            backoff = 0.2
            self.last_batch_at = time.monotonic()
            offsets = {
                tp: OffsetAndMetadata(tp_records[-1].offset + 1, "")
                for tp, tp_records in batch.items()
            }
            try:
                await consumer.commit(offsets)
            except KafkaError as exc:
                # The effects are committed and recorded in the inbox: redelivery is harmless.
                log.warning(
                    "offset commit failed (%s); events will be redelivered and skipped", exc
                )
            await self._maybe_update_lag()

    async def _linger(
        self,
        consumer: AIOKafkaConsumer,
        batch: dict[TopicPartition, list[ConsumerRecord[Any, Any]]],
    ) -> None:
        """Add to `batch` what arrives within `linger` seconds, up to `batch_size` records
        (each partition's records stay in offset order)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.linger
        count = sum(len(tp_records) for tp_records in batch.values())
        while count < self.batch_size and not self._stopping.is_set():
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            try:
                more = await consumer.getmany(
                    timeout_ms=max(1, int(remaining * 1000)), max_records=self.batch_size - count
                )
            except KafkaError:
                return  # what is in hand goes now; the main loop deals with the broker
            for tp, tp_records in more.items():
                batch.setdefault(tp, []).extend(tp_records)
                count += len(tp_records)

    def _idle_fetches(self, consumer: AIOKafkaConsumer, now: float) -> None:
        """After `QUIET_SECONDS` without records, fetch with the longer `QUIET_FETCH_WAIT_MS`.

        An idle consumer's fetches are its CPU (a request and answer for every partition,
        `1000 / kafka_fetch_max_wait_ms` times a second). The first records after a quiet
        spell may wait up to the longer wait; then fetches go back to the configured one.
        """
        if self._quiet_since is None:
            self._quiet_since = now
        elif now - self._quiet_since >= QUIET_SECONDS:
            wait = max(QUIET_FETCH_WAIT_MS, self.settings.kafka_fetch_max_wait_ms)
            _set_fetch_wait(consumer, wait)

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    async def process(self, records: Sequence[ConsumerRecord[Any, Any]]) -> None:
        """Handle a batch in one transaction; one by one (savepoints, DLQ) if a handler fails."""
        try:
            with _collection_paused():
                await self._process_batch(records)
        except Exception as exc:
            if is_transient_db_error(exc):
                raise
            log.warning(
                "batch of %d record(s) failed (%s); handling them one by one",
                len(records),
                type(exc).__name__,
            )
            await self._process_one_by_one(records)

    async def _process_batch(self, records: Sequence[ConsumerRecord[Any, Any]]) -> None:
        counts: list[tuple[str, str, str]] = []
        durations: list[tuple[str, float]] = []
        async with self.uow_factory() as uow:
            candidates: list[tuple[str, str, Envelope[Any], Handler]] = []
            in_batch: set[str] = set()
            for record in records:
                event_id = record_event_id(record)
                if event_id in in_batch:
                    counts.append((record.topic, "-", "duplicate"))
                    continue
                in_batch.add(event_id)
                # An undecodable record raises: the one-by-one path dead-letters it.
                envelope = decode(record.value, record.headers or ())
                handler = self.handlers.get(envelope.type) if envelope is not None else None
                if envelope is None or handler is None:
                    counts.append((record.topic, "-", "ignored"))
                    continue
                candidates.append((record.topic, event_id, envelope, handler))
            # The inbox marks go in first, in one statement that says which events are
            # new: one round trip instead of a lookup and an insert. A failing handler
            # rolls them back with everything else. (Dead-letter keys are looked up when
            # an event fails, on the one-by-one road.)
            fresh = await uow.claim(self.name, [event_id for _, event_id, _, _ in candidates])
            work: list[tuple[str, Envelope[Any], Handler]] = []
            for topic, event_id, envelope, handler in candidates:
                if event_id in fresh:
                    work.append((topic, envelope, handler))
                else:
                    counts.append((topic, "-", "duplicate"))
            if self.before_batch is not None and work:
                await self.before_batch(uow, [envelope for _, envelope, _ in work])
            for topic, envelope, handler in work:
                started = time.perf_counter()
                await handler(envelope, uow)
                name = self._name(handler)
                durations.append((name, time.perf_counter() - started))
                counts.append((topic, name, "handled"))
            await uow.commit()
        # Counted once committed, and one label lookup per distinct series, not per event.
        for (topic, name, outcome), n in Counter(counts).items():
            metrics.events_consumed_total.labels(self.service, topic, name, outcome).inc(n)
        timings: dict[str, list[float]] = {}
        for name, seconds in durations:
            timings.setdefault(name, []).append(seconds)
        for name, values in timings.items():
            observe_all(metrics.handler_duration_seconds.labels(self.service, name), values)

    def _name(self, handler: Handler) -> str:
        name = self._names.get(handler)
        if name is None:
            name = self._names[handler] = handler_name(handler)
        return name

    async def _process_one_by_one(self, records: Sequence[ConsumerRecord[Any, Any]]) -> None:
        """The fallback road (`shared.kafka.event_by_event`), on this consumer's settings."""
        fallback = EventByEvent(
            service=self.service,
            name=self.name,
            handlers=self.handlers,
            uow_factory=self.uow_factory,
            max_attempts=self.max_attempts,
            retry_delay=self.retry_delay,
        )
        await fallback.process(records)

    async def _maybe_update_lag(self) -> None:
        now = time.monotonic()
        if self._consumer is None or now - self._last_lag_update < 10:
            return
        self._last_lag_update = now
        consumer = self._consumer
        try:
            assignment = list(consumer.assignment())
            if not assignment:
                return
            ends = await consumer.end_offsets(assignment)
            for tp in assignment:
                position = await consumer.position(tp)
                lag = max(ends.get(tp, 0) - position, 0)
                metrics.consumer_lag.labels(self.group_id, tp.topic, str(tp.partition)).set(lag)
        except Exception:
            log.debug("lag update failed", exc_info=True)
