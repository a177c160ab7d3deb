"""What the consumer's two roads (the whole batch, and event by event) share: handler
types, a record's event id, handler names, the dead-letter headers and keys, and the
batch's timings observed in one go."""

from __future__ import annotations

import functools
from bisect import bisect_left
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from aiokafka import ConsumerRecord

from shared.db.uow import UnitOfWork
from shared.events.envelope import Envelope

Handler = Callable[[Envelope[Any], UnitOfWork], Awaitable[None]]
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


def observe_all(histogram: Any, values: Sequence[float]) -> None:
    """Observe every value on a histogram series, as `observe` one by one would, with each
    bucket counted once for all of them (a batch's handler timings: `observe` walks the
    buckets and takes a lock per value)."""
    bounds = getattr(histogram, "_upper_bounds", None)
    buckets = getattr(histogram, "_buckets", None)
    total = getattr(histogram, "_sum", None)
    if bounds is None or buckets is None or total is None or len(values) < 4:
        for value in values:
            histogram.observe(value)
        return
    # `observe` counts a value in the first bucket whose upper bound is >= the value.
    for i, n in Counter(bisect_left(bounds, value) for value in values).items():
        buckets[i].inc(n)
    total.inc(sum(values))
