"""Topic → event type → handler: insights reads every topic; what a batch loads first."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from services.insights import handlers
from services.insights.console.timeline import recording
from services.insights.store import LeadBatch
from shared.db.uow import UnitOfWork
from shared.events import (
    Envelope,
    LeadCaptured,
    LeadConverted,
    LeadDeliveryFailed,
    LeadDisqualified,
    LeadEngaged,
    LeadErased,
    LeadRouted,
    LeadScored,
    LeadUnsubscribed,
)
from shared.events.topics import TOPICS
from shared.kafka.consumer import Handler
from shared.service import ServiceRuntime

HANDLERS: dict[str, Handler] = {
    LeadCaptured.TYPE: handlers.handle_lead_captured,
    LeadScored.TYPE: handlers.handle_lead_scored,
    LeadRouted.TYPE: handlers.handle_lead_routed,
    LeadDeliveryFailed.TYPE: handlers.handle_lead_delivery_failed,
    LeadConverted.TYPE: handlers.handle_lead_converted,
    LeadDisqualified.TYPE: handlers.handle_lead_disqualified,
    LeadEngaged.TYPE: handlers.handle_lead_engaged,
    LeadUnsubscribed.TYPE: handlers.handle_lead_unsubscribed,
    LeadErased.TYPE: handlers.handle_lead_erased,
}


async def load_leads(uow: UnitOfWork, events: Sequence[Envelope[Any]]) -> None:
    """Every lead row of the batch in one statement, before its handlers run."""
    await LeadBatch.of(uow).load(event.subject for event in events)


def register(runtime: ServiceRuntime) -> None:
    """One consumer group on all six topics; the console's timeline records every event."""
    runtime.add_consumer(TOPICS, recording(HANDLERS), before_batch=load_leads)
