"""Topic → event type → handler, and the batch consumer scoring runs them with."""

from __future__ import annotations

import functools
import logging
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

from aiokafka import ConsumerRecord

from services.scoring.domain import ScoringModel
from services.scoring.handlers import (
    Clock,
    handle_lead_captured,
    handle_lead_engaged,
    handle_lead_erased,
    handle_lead_unsubscribed,
    utc_now,
)
from services.scoring.store import LeadBatch
from shared import metrics
from shared.db.engine import is_transient_db_error
from shared.events import LeadCaptured, LeadEngaged, LeadErased, LeadUnsubscribed, decode
from shared.events.topics import LEADS_CAPTURED, LEADS_ENGAGEMENT, LEADS_ERASURE
from shared.kafka.consumer import (
    EventConsumer,
    Handler,
    dead_letter_key,
    handler_name,
    record_event_id,
)
from shared.service import ServiceRuntime

log = logging.getLogger(__name__)

TOPICS = (LEADS_CAPTURED, LEADS_ENGAGEMENT, LEADS_ERASURE)


class BatchScoringConsumer(EventConsumer):
    """Scores a fetched batch in one transaction without a savepoint per event, reading
    every lead of the batch in one query; the unit of work then writes states, the
    event log, history, outbox and inbox in a handful of statements.

    A batch that fails is rolled back whole and handled again the way every leadflow
    consumer does (a savepoint per event, bounded retries, dead letters), so a poison
    event still cannot block its partition.
    """

    async def process(self, records: Sequence[ConsumerRecord[Any, Any]]) -> None:
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
            await super().process(records)

    async def _process_batch(self, records: Sequence[ConsumerRecord[Any, Any]]) -> None:
        counts: list[tuple[str, str, str]] = []
        durations: list[tuple[str, float]] = []
        async with self.uow_factory() as uow:
            ids = [record_event_id(r) for r in records]
            seen = await uow.handled(
                self.name,
                [*ids, *(dead_letter_key(r, i) for r, i in zip(records, ids, strict=True))],
            )
            work = []
            for record, event_id in zip(records, ids, strict=True):
                if event_id in seen:
                    counts.append((record.topic, "-", "duplicate"))
                    continue
                seen.add(event_id)
                # An undecodable record raises: the record-by-record path dead-letters it.
                envelope = decode(record.value, record.headers or ())
                handler = self.handlers.get(envelope.type) if envelope is not None else None
                if envelope is None or handler is None:
                    counts.append((record.topic, "-", "ignored"))
                    continue
                work.append((record.topic, event_id, envelope, handler))
            await LeadBatch.of(uow).load(envelope.subject for _, _, envelope, _ in work)
            names: dict[Handler, str] = {}
            for topic, event_id, envelope, handler in work:
                started = time.perf_counter()
                await handler(envelope, uow)
                uow.mark_handled(self.name, event_id)
                name = names.get(handler) or names.setdefault(handler, handler_name(handler))
                durations.append((name, time.perf_counter() - started))
                counts.append((topic, name, "handled"))
            await uow.commit()
        # One label lookup per distinct series, not per event.
        for (topic, name, outcome), n in Counter(counts).items():
            metrics.events_consumed_total.labels(self.service, topic, name, outcome).inc(n)
        children: dict[str, Any] = {}
        for name, seconds in durations:
            child = children.get(name)
            if child is None:
                child = children[name] = metrics.handler_duration_seconds.labels(self.service, name)
            child.observe(seconds)


def handlers(model: ScoringModel, clock: Clock = utc_now) -> dict[str, Handler]:
    """Event type → handler, bound to the model and the clock."""
    return {
        LeadCaptured.TYPE: functools.partial(handle_lead_captured, model=model, clock=clock),
        LeadEngaged.TYPE: functools.partial(handle_lead_engaged, model=model, clock=clock),
        LeadUnsubscribed.TYPE: functools.partial(
            handle_lead_unsubscribed, model=model, clock=clock
        ),
        LeadErased.TYPE: handle_lead_erased,
    }


def register(runtime: ServiceRuntime, model: ScoringModel, clock: Clock = utc_now) -> None:
    """Submissions and engagement to score, and people to forget."""
    runtime.add_consumer(TOPICS, handlers(model, clock), consumer_class=BatchScoringConsumer)
