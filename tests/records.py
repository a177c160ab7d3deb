"""Consumer records as the broker hands them over, for driving a consumer without Kafka."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aiokafka.structs import ConsumerRecord

from shared.events import Envelope, Event, encode, new_event


def consumer_record(
    topic: str,
    key: bytes,
    value: bytes,
    headers: Sequence[tuple[str, bytes]],
    *,
    offset: int = 0,
    partition: int = 0,
) -> ConsumerRecord[bytes, bytes]:
    """One record of `topic` at `offset`."""
    return ConsumerRecord(
        topic=topic,
        partition=partition,
        offset=offset,
        timestamp=0,
        timestamp_type=0,
        key=key,
        value=value,
        checksum=None,
        serialized_key_size=len(key),
        serialized_value_size=len(value),
        headers=tuple(headers),
    )


def record_of(
    message: Event | Envelope[Any], offset: int = 0, *, source: str = "leadflow/test"
) -> ConsumerRecord[bytes, bytes]:
    """The record carrying an event (in a fresh envelope) or an envelope."""
    envelope = message if isinstance(message, Envelope) else new_event(message, source)
    key, value, headers = encode(envelope)
    return consumer_record(envelope.topic, key, value, headers, offset=offset)
