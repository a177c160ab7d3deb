"""Reading and re-driving dead-letter topics (`<topic>.dlq`)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from shared.events.envelope import header_map
from shared.events.topics import DLQ_SUFFIX
from shared.kafka.client import make_producer
from shared.kafka.handling import DLQ_HEADERS, REDRIVE_HEADER
from shared.settings import Settings


@dataclass(frozen=True)
class DeadLetter:
    """One dead-lettered event and why it failed."""

    dlq_topic: str
    partition: int
    offset: int
    key: str | None
    event_id: str | None
    event_type: str | None
    original_topic: str
    handler: str | None
    consumer: str | None
    attempts: int
    error: str | None
    failed_at: str | None
    redrives: int
    value: bytes
    headers: list[tuple[str, bytes]]

    def summary(self) -> dict[str, Any]:
        return {
            "dlq_topic": self.dlq_topic,
            "partition": self.partition,
            "offset": self.offset,
            "lead_id": self.key,
            "event_id": self.event_id,
            "event_type": self.event_type,
            "original_topic": self.original_topic,
            "handler": self.handler,
            "consumer": self.consumer,
            "attempts": self.attempts,
            "error": self.error,
            "failed_at": self.failed_at,
            "redrives": self.redrives,
        }


def _to_dead_letter(record: Any) -> DeadLetter:
    attrs = header_map(record.headers or ())
    return DeadLetter(
        dlq_topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        key=record.key.decode("utf-8", "replace") if record.key else None,
        event_id=attrs.get("ce_id"),
        event_type=attrs.get("ce_type"),
        original_topic=attrs.get("dlq_original_topic") or record.topic.removesuffix(DLQ_SUFFIX),
        handler=attrs.get("dlq_handler"),
        consumer=attrs.get("dlq_consumer"),
        attempts=int(attrs.get("dlq_attempts", "0") or 0),
        error=attrs.get("dlq_error"),
        failed_at=attrs.get("dlq_failed_at"),
        redrives=int(attrs.get(REDRIVE_HEADER, "0") or 0),
        value=record.value or b"",
        headers=list(record.headers or ()),
    )


async def read_dead_letters(
    settings: Settings, dlq_topic: str, limit: int = 1000, group_id: str | None = None
) -> list[DeadLetter]:
    """Dead letters of one DLQ topic, oldest first (from the group's position if given)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(dlq_topic) or set()
        tps = [TopicPartition(dlq_topic, p) for p in sorted(partitions)]
        if not tps:
            return []
        consumer.assign(tps)
        if group_id is None:
            await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        letters: list[DeadLetter] = []
        done: set[TopicPartition] = set()
        idle_rounds = 0
        while len(done) < len(tps) and len(letters) < limit and idle_rounds < 3:
            for tp in tps:
                if await consumer.position(tp) >= ends[tp]:
                    done.add(tp)
            batch = await consumer.getmany(timeout_ms=500)
            idle_rounds = idle_rounds + 1 if not batch else 0
            for records in batch.values():
                letters.extend(_to_dead_letter(r) for r in records)
        return sorted(letters, key=lambda d: (d.failed_at or "", d.partition, d.offset))[:limit]
    finally:
        await consumer.stop()


async def redrive(settings: Settings, letters: Iterable[DeadLetter]) -> int:
    """Publish dead letters back to their original topic, with the re-drive count raised."""
    producer = make_producer(settings, client_id="leadflow-dlq-redrive")
    await producer.start()
    count = 0
    try:
        futures = []
        for letter in letters:
            headers = [(k, v) for k, v in letter.headers if k not in DLQ_HEADERS]
            headers.append((REDRIVE_HEADER, str(letter.redrives + 1).encode()))
            futures.append(
                await producer.send(
                    letter.original_topic,
                    value=letter.value,
                    key=letter.key.encode() if letter.key else None,
                    headers=headers,
                )
            )
            count += 1
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return count
