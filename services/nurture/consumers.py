"""Topic → event type → handler, and what a batch loads before its handlers run."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

from services.nurture import handlers as use_cases
from services.nurture.config import NurtureConfig
from services.nurture.enrollment import Wake
from services.nurture.lead_cache import LeadCache
from shared import events
from shared.clock import Clock, utc_now
from shared.db.uow import UnitOfWork
from shared.events.topics import LEADS_ENGAGEMENT, LEADS_ERASURE, LEADS_OUTCOMES, LEADS_SCORED
from shared.kafka.consumer import Handler
from shared.service import ServiceRuntime

TOPICS = (LEADS_SCORED, LEADS_ENGAGEMENT, LEADS_OUTCOMES, LEADS_ERASURE)


async def load_leads(uow: UnitOfWork, batch: Sequence[events.Envelope[Any]]) -> None:
    """The batch's leads, their enrollments and suppressions, one query each (its cache)."""
    await LeadCache.load(uow, batch)


def handlers(
    config: NurtureConfig, wake: Wake | None = None, *, clock: Clock = utc_now
) -> dict[str, Handler]:
    """Event type → handler, bound to the config and the clock."""
    at: dict[str, Any] = {"config": config, "clock": clock}
    return {
        events.LeadScored.TYPE: functools.partial(use_cases.handle_lead_scored, wake=wake, **at),
        events.LeadEngaged.TYPE: functools.partial(use_cases.handle_lead_engaged, **at),
        events.LeadUnsubscribed.TYPE: functools.partial(use_cases.handle_lead_unsubscribed, **at),
        events.LeadConverted.TYPE: functools.partial(use_cases.handle_lead_converted, **at),
        events.LeadDisqualified.TYPE: functools.partial(use_cases.handle_lead_disqualified, **at),
        events.LeadErased.TYPE: functools.partial(use_cases.handle_lead_erased, **at),
    }


def register(runtime: ServiceRuntime, config: NurtureConfig, wake: Wake) -> None:
    """Scored leads to enroll or stop; engagement, outcomes and erasure to end sequences."""
    # Off the speed path (routing to sales does not wait on nurture): a batch waits up
    # to a quarter second for more events, which is at most that on a first email.
    runtime.add_consumer(TOPICS, handlers(config, wake), before_batch=load_leads, linger=0.25)
