"""Insights' message bus: which handler takes which message, and the `bus(...)` factory.

Events (from the consumer runtime, which commits a batch once) go to
`EVENT_HANDLERS`; commands (posted spend) go through `bus(...)`, whose `handle`
commits once. Reads are plain functions (queries.py, console/queries.py).
"""

from __future__ import annotations

import functools

from services.insights import handlers
from shared import events
from shared.clock import Clock, utc_now
from shared.db.uow import UowFactory
from shared.kafka.consumer import Handler
from shared.messagebus import MessageBus

EVENT_HANDLERS: dict[str, Handler] = {
    events.LeadCaptured.TYPE: handlers.handle_lead_captured,
    events.LeadScored.TYPE: handlers.handle_lead_scored,
    events.LeadRouted.TYPE: handlers.handle_lead_routed,
    events.LeadConverted.TYPE: handlers.handle_lead_converted,
    events.LeadDeliveryFailed.TYPE: handlers.handle_lead_delivery_failed,
    events.LeadDisqualified.TYPE: handlers.handle_lead_disqualified,
    events.LeadEngaged.TYPE: handlers.handle_lead_engaged,
    events.LeadUnsubscribed.TYPE: handlers.handle_lead_unsubscribed,
    events.LeadErased.TYPE: handlers.handle_lead_erased,
}


def bus(uow_factory: UowFactory, clock: Clock = utc_now) -> MessageBus:
    """Commands of the HTTP routes, the console and the CLI."""
    return MessageBus(
        uow_factory,
        {
            handlers.RecordSpend: functools.partial(handlers.handle_record_spend, clock=clock),
        },
    )
