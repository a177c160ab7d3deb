"""Insights' use cases: fold every lead event into the read model; record spend.

Handlers never commit: the consumer runtime commits a batch of events with its
inbox marks, the message bus (messagebus.py) commits a command.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from fractions import Fraction
from typing import Any

from services.insights.lead_cache import LeadCache
from services.insights.lead_facts import LeadFacts
from services.insights.money import to_units
from services.insights.spend import DaySpend
from services.insights.spend_repository import SpendRepository
from shared import events
from shared.clock import Clock, utc_now
from shared.db import UnitOfWork
from shared.events import Envelope
from shared.kafka.consumer import Handler


async def _update_lead(
    uow: UnitOfWork, lead_id: str, change: Callable[[LeadFacts], LeadFacts]
) -> None:
    """Merge an event into the lead's facts (written once per lead when the batch commits)."""
    await LeadCache.of(uow).update(lead_id, change)


def _pick(event: Any, *names: str) -> dict[str, Any]:
    """The event's fields of these names, as keyword arguments of the same names."""
    return {name: getattr(event, name) for name in names}


async def handle_lead_captured(envelope: Envelope[events.LeadCaptured], uow: UnitOfWork) -> None:
    """A submission: a touch of its channel; a new lead of its first-touch channel."""
    event = envelope.data
    cache = LeadCache.of(uow)
    cost = to_units(event.cost) if event.cost is not None else None
    touch = _pick(event, "submission_id", "lead_id", "channel", "is_new_lead", "is_test")
    await cache.add_touch(**touch, cost_units=cost, captured_at=event.captured_at)
    lead = _pick(event, "is_new_lead", "is_test", "captured_at")
    first_touch = event.first_touch.channel
    await cache.update(
        event.lead_id, lambda facts: facts.captured(first_touch_channel=first_touch, **lead)
    )


async def handle_lead_scored(envelope: Envelope[events.LeadScored], uow: UnitOfWork) -> None:
    """The lead's grade and whether it became sales-ready."""
    event = envelope.data
    names = ("channel", "grade", "sales_ready", "is_test", "captured_at", "scored_at")
    fields = _pick(event, *names)
    await _update_lead(uow, event.lead_id, lambda facts: facts.scored(**fields))


async def handle_lead_routed(envelope: Envelope[events.LeadRouted], uow: UnitOfWork) -> None:
    """The lead reached a rep: routed, with its speed-to-lead."""
    event = envelope.data
    fields = _pick(event, "channel", "captured_at", "routed_at")
    await _update_lead(uow, event.lead_id, lambda facts: facts.routed(**fields))


async def handle_lead_converted(envelope: Envelope[events.LeadConverted], uow: UnitOfWork) -> None:
    """A won deal: the lead converted, its value counts as revenue (once per outcome)."""
    event = envelope.data
    cache = LeadCache.of(uow)
    await cache.add_conversion(
        lead_id=event.lead_id,
        outcome_id=event.outcome_id,
        value_units=to_units(event.value),
        currency=event.currency.strip().upper()[:16] or "USD",
        occurred_at=event.occurred_at,
    )
    await cache.update(event.lead_id, lambda facts: facts.converted(event.occurred_at))


def _milestone_handler(name: str, milestone: str, time_field: str) -> Handler:
    """A handler (named `name`, for metrics and dead letters) of an event that marks a
    milestone of the lead, found in the event's `time_field` (the earliest time wins)."""

    async def handle(envelope: Envelope[Any], uow: UnitOfWork) -> None:
        event = envelope.data
        at = getattr(event, time_field)
        await _update_lead(uow, event.lead_id, lambda facts: facts.reached(milestone, at))

    handle.__name__ = handle.__qualname__ = name
    return handle


# A destination could not take the lead; the CRM says it will not buy; it opened, clicked,
# replied or came back; it asked for no more marketing email; the person was forgotten
# (the read model holds no PII, so an erased lead stays counted).
handle_lead_delivery_failed = _milestone_handler(
    "handle_lead_delivery_failed", "delivery_failed_at", "failed_at"
)
handle_lead_disqualified = _milestone_handler(
    "handle_lead_disqualified", "disqualified_at", "occurred_at"
)
handle_lead_engaged = _milestone_handler("handle_lead_engaged", "engaged_at", "occurred_at")
handle_lead_unsubscribed = _milestone_handler(
    "handle_lead_unsubscribed", "unsubscribed_at", "occurred_at"
)
handle_lead_erased = _milestone_handler("handle_lead_erased", "erased_at", "erased_at")


@dataclass(frozen=True)
class RecordSpend:
    """Set a channel's spend (and reach) of one day, replacing what was posted before."""

    channel: str
    day: date
    amount: Decimal
    impressions: int | None = None
    clicks: int | None = None


async def handle_record_spend(
    command: RecordSpend, uow: UnitOfWork, clock: Clock = utc_now
) -> None:
    """Store the day's spend; it overrides the config for that day."""
    spend = DaySpend(command.day, Fraction(command.amount), command.impressions, command.clicks)
    await SpendRepository(uow, clock).put(command.channel, spend)
