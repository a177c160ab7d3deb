"""Topic → event type → handler, and what a batch loads before its handlers run."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

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
from shared.db.uow import UnitOfWork
from shared.events import Envelope, LeadCaptured, LeadEngaged, LeadErased, LeadUnsubscribed
from shared.events.topics import LEADS_CAPTURED, LEADS_ENGAGEMENT, LEADS_ERASURE
from shared.kafka.consumer import Handler
from shared.service import ServiceRuntime

TOPICS = (LEADS_CAPTURED, LEADS_ENGAGEMENT, LEADS_ERASURE)


async def load_leads(uow: UnitOfWork, events: Sequence[Envelope[Any]]) -> None:
    """Every lead of the batch in one query, before its handlers run (the batch's cache)."""
    await LeadBatch.of(uow).load(event.subject for event in events)


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
    runtime.add_consumer(TOPICS, handlers(model, clock), before_batch=load_leads)
