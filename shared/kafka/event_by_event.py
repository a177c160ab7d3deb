"""A failed batch, handled again event by event, in one transaction.

Each event runs in its own savepoint, so a failing handler undoes only its own
changes; it is tried `max_attempts` times, then its record goes to the topic's
`.dlq` (once, however often it is redelivered) and the partition keeps moving. A
database outage is not the event's fault: it aborts the whole transaction, which
the consumer retries.
"""

from __future__ import annotations

import asyncio
import logging
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import ConsumerRecord

from shared import metrics
from shared.clock import utc_now
from shared.db.engine import is_transient_db_error
from shared.db.uow import UnitOfWork, UowFactory
from shared.events.envelope import InvalidEnvelope, decode, header_map
from shared.events.topics import dlq_topic
from shared.kafka.handling import (
    DLQ_HEADERS,
    Handler,
    dead_letter_key,
    handler_name,
    record_event_id,
)

# The consumer's log, under the name operators know.
log = logging.getLogger("shared.kafka.consumer")


@dataclass(kw_only=True)
class EventByEvent:
    """The consumer's fallback road: savepoints, bounded retries, dead letters."""

    service: str
    name: str
    handlers: dict[str, Handler]
    uow_factory: UowFactory
    max_attempts: int
    retry_delay: float

    async def process(self, records: Sequence[ConsumerRecord[Any, Any]]) -> None:
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
            ("dlq_failed_at", utc_now().isoformat().encode()),
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
