"""The topics scoring consumes, and what a batch loads before its handlers run."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from services.scoring.domain import ScoringModel
from services.scoring.lead_cache import LeadCache
from services.scoring.messagebus import event_handlers
from shared.clock import Clock, utc_now
from shared.db.uow import UnitOfWork
from shared.events import Envelope
from shared.events.topics import LEADS_CAPTURED, LEADS_ENGAGEMENT, LEADS_ERASURE
from shared.service import ServiceRuntime

TOPICS = (LEADS_CAPTURED, LEADS_ENGAGEMENT, LEADS_ERASURE)


async def load_leads(uow: UnitOfWork, events: Sequence[Envelope[Any]]) -> None:
    """Every lead of the batch in one query, before its handlers run (the lead cache)."""
    await LeadCache.of(uow).load(event.subject for event in events)


def register(runtime: ServiceRuntime, model: ScoringModel, clock: Clock = utc_now) -> None:
    """Submissions and engagement to score, and people to forget."""
    # On the speed path, but a batch still waits up to 50 ms for more: at campaign rates
    # a few leads share one transaction, which costs far less than the wait.
    runtime.add_consumer(TOPICS, event_handlers(model, clock), before_batch=load_leads, linger=0.05)
