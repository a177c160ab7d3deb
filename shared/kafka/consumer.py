"""The consumer runtime: batch fetch, handler per event type, inbox, bounded retries, DLQ.

For every fetched batch, one database transaction holds the handlers' effects,
the inbox marks of the events handled and any dead letters; offsets are
committed only after that transaction commits. A redelivered event finds its
id in the inbox and changes nothing.

A batch is first handled whole: every handler in one transaction with no
savepoint per event, the inbox and outbox rows written in one statement each at
commit (an optional `before_batch` hook loads what the batch's handlers need in
one query). If any handler raises, that transaction is rolled back and the batch
is handled again event by event: each attempt in its own savepoint, bounded
attempts, and an event that keeps failing goes to the topic's `.dlq` in the same
transaction, so the partition keeps moving. A database outage aborts the batch:
nothing is committed, the consumer seeks back and tries again after a backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
import traceback
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.structs import OffsetAndMetadata

from shared import metrics
from shared.db.engine import is_transient_db_error
from shared.db.uow import UnitOfWork
from shared.events.envelope import Envelope, InvalidEnvelope, decode, header_map
from shared.events.topics import dlq_topic
from shared.settings import Settings

log = logging.getLogger(__name__)

Handler = Callable[[Envelope[Any], UnitOfWork], Awaitable[None]]
UowFactory = Callable[[], UnitOfWork]
# Called once per batch, before its handlers, with the batch's decoded events.
BatchHook = Callable[[UnitOfWork, Sequence[Envelope[Any]]], Awaitable[None]]

REDRIVE_HEADER = "leadflow_redrive"
DLQ_HEADERS = (
    REDRIVE_HEADER,
    "dlq_error",
    "dlq_handler",
    "dlq_attempts",
    "dlq_original_topic",
    "dlq_original_partition",
    "dlq_original_offset",
    "dlq_failed_at",
    "dlq_consumer",
)


def handler_name(handler: Callable[..., Any]) -> str:
    """A stable name for a handler, for metrics and dead-letter headers."""
    while isinstance(handler, functools.partial):
        handler = handler.func
    return getattr(handler, "__name__", type(handler).__name__)


def dead_letter_key(record: ConsumerRecord[Any, Any], event_id: str) -> str:
    """Inbox key saying this event (at this re-drive count) is already in the DLQ.

    The event's own id is not marked handled when it is dead-lettered, so a
    re-driven copy (same id) runs its handler again; this key keeps a redelivery
    of the failing original from dead-lettering it twice.
    """
    redrives = "0"
    for key, value in record.headers or ():
        if key == REDRIVE_HEADER:  # the last one wins, as in `header_map`
            redrives = (value or b"").decode("utf-8", "replace")
    return f"{event_id}#dlq{redrives}"


def record_event_id(record: ConsumerRecord[Any, Any]) -> str:
    """The CloudEvents id of a record, or its coordinates when it has none."""
    for key, value in record.headers or ():
        if key == "ce_id" and value:
            return value.decode("utf-8", "replace")
    return f"{record.topic}/{record.partition}/{record.offset}"


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
        self._names: dict[Handler, str] = {}
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._last_lag_update = 0.0
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
                await self._maybe_update_lag()
                continue
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

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    async def process(self, records: Sequence[ConsumerRecord[Any, Any]]) -> None:
        """Handle a batch in one transaction; one by one (savepoints, DLQ) if a handler fails."""
        try:
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
            ids = [record_event_id(r) for r in records]
            # Dead-letter keys are looked up when an event fails (`_dead_letter_once`).
            seen = await uow.handled(self.name, ids)
            work: list[tuple[str, str, Envelope[Any], Handler]] = []
            for record, event_id in zip(records, ids, strict=True):
                if event_id in seen:
                    counts.append((record.topic, "-", "duplicate"))
                    continue
                seen.add(event_id)
                # An undecodable record raises: the one-by-one path dead-letters it.
                envelope = decode(record.value, record.headers or ())
                handler = self.handlers.get(envelope.type) if envelope is not None else None
                if envelope is None or handler is None:
                    counts.append((record.topic, "-", "ignored"))
                    continue
                work.append((record.topic, event_id, envelope, handler))
            if self.before_batch is not None and work:
                await self.before_batch(uow, [envelope for _, _, envelope, _ in work])
            for topic, event_id, envelope, handler in work:
                started = time.perf_counter()
                await handler(envelope, uow)
                uow.mark_handled(self.name, event_id)
                name = self._name(handler)
                durations.append((name, time.perf_counter() - started))
                counts.append((topic, name, "handled"))
            await uow.commit()
        # Counted once committed, and one label lookup per distinct series, not per event.
        for (topic, name, outcome), n in Counter(counts).items():
            metrics.events_consumed_total.labels(self.service, topic, name, outcome).inc(n)
        children: dict[str, Any] = {}
        for name, seconds in durations:
            child = children.get(name)
            if child is None:
                child = children[name] = metrics.handler_duration_seconds.labels(self.service, name)
            child.observe(seconds)

    def _name(self, handler: Handler) -> str:
        name = self._names.get(handler)
        if name is None:
            name = self._names[handler] = handler_name(handler)
        return name

    async def _process_one_by_one(self, records: Sequence[ConsumerRecord[Any, Any]]) -> None:
        """Each event in its own savepoint, bounded retries, dead letters; one transaction."""
        async with self.uow_factory() as uow:
            ids = [record_event_id(r) for r in records]
            # Dead-letter keys are looked up when an event fails (`_dead_letter_once`).
            seen = await uow.handled(self.name, ids)
            for record, event_id in zip(records, ids, strict=True):
                if event_id in seen:
                    metrics.events_consumed_total.labels(
                        self.service, record.topic, "-", "duplicate"
                    ).inc()
                    continue
                seen.add(event_id)
                await self._handle_record(uow, record, event_id)
            await uow.commit()

    async def _handle_record(
        self, uow: UnitOfWork, record: ConsumerRecord[Any, Any], event_id: str
    ) -> None:
        try:
            envelope = decode(record.value, record.headers or ())
        except InvalidEnvelope as exc:
            log.error(
                "undecodable record on %s[%d]@%d: %s",
                record.topic,
                record.partition,
                record.offset,
                exc,
                extra={"event_id": event_id, "topic": record.topic},
            )
            await self._dead_letter_once(
                uow, record, event_id, "decode", 1, f"InvalidEnvelope: {exc}"
            )
            return
        handler = self.handlers.get(envelope.type) if envelope is not None else None
        if envelope is None or handler is None:
            metrics.events_consumed_total.labels(self.service, record.topic, "-", "ignored").inc()
            return
        name = handler_name(handler)
        log_extra = {
            "event_id": event_id,
            "lead_id": envelope.subject,
            "topic": record.topic,
            "handler": name,
        }
        for attempt in range(1, self.max_attempts + 1):
            started = time.perf_counter()
            try:
                async with uow.savepoint():
                    await handler(envelope, uow)
                    uow.mark_handled(self.name, event_id)
            except Exception as exc:
                if is_transient_db_error(exc):
                    raise
                if attempt < self.max_attempts:
                    metrics.events_consumed_total.labels(
                        self.service, record.topic, name, "retried"
                    ).inc()
                    log.warning(
                        "handler failed (attempt %d/%d): %s",
                        attempt,
                        self.max_attempts,
                        exc,
                        extra=log_extra,
                    )
                    await asyncio.sleep(self.retry_delay * attempt)
                    continue
                log.error(
                    "handler failed %d times; dead-lettering: %s", attempt, exc, extra=log_extra
                )
                error = "".join(traceback.format_exception_only(type(exc), exc)).strip()
                await self._dead_letter_once(uow, record, event_id, name, attempt, error)
                return
            else:
                metrics.handler_duration_seconds.labels(self.service, name).observe(
                    time.perf_counter() - started
                )
                metrics.events_consumed_total.labels(
                    self.service, record.topic, name, "handled"
                ).inc()
                return

    async def _dead_letter_once(
        self,
        uow: UnitOfWork,
        record: ConsumerRecord[Any, Any],
        event_id: str,
        handler: str,
        attempts: int,
        error: str,
    ) -> None:
        key = dead_letter_key(record, event_id)
        if await uow.handled(self.name, [key]):
            return  # a redelivery of an event already in the DLQ
        async with uow.savepoint():
            self._dead_letter(uow, record, handler, attempts, error)
            uow.mark_handled(self.name, key)

    def _dead_letter(
        self,
        uow: UnitOfWork,
        record: ConsumerRecord[Any, Any],
        handler: str,
        attempts: int,
        error: str,
    ) -> None:
        original = [(k, v) for k, v in (record.headers or ()) if k not in DLQ_HEADERS]
        headers = [
            *original,
            ("dlq_error", error[:2000].encode()),
            ("dlq_handler", handler.encode()),
            ("dlq_attempts", str(attempts).encode()),
            ("dlq_original_topic", record.topic.encode()),
            ("dlq_original_partition", str(record.partition).encode()),
            ("dlq_original_offset", str(record.offset).encode()),
            ("dlq_failed_at", datetime.now(UTC).isoformat().encode()),
            ("dlq_consumer", self.name.encode()),
        ]
        uow.publish_raw(
            dlq_topic(record.topic),
            record.key,
            record.value or b"",
            headers,
            event_id=header_map(record.headers or ()).get("ce_id")
            or f"{record.topic}/{record.partition}/{record.offset}",
        )
        metrics.dlq_messages_total.labels(record.topic, handler).inc()
        metrics.events_consumed_total.labels(
            self.service, record.topic, handler, "dead_lettered"
        ).inc()

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


def partition_of(record: ConsumerRecord[Any, Any]) -> TopicPartition:
    return TopicPartition(record.topic, record.partition)
