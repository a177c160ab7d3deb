"""Insights' use cases: fold every lead event into the read model; record spend; report.

Consumer handlers never commit (the consumer runtime commits the batch with its
inbox marks); the HTTP use cases commit through their own unit of work.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from fractions import Fraction

from services.insights import store
from services.insights.lead_facts import LeadFacts
from services.insights.money import to_units
from services.insights.report import ChannelReport, build_report
from services.insights.settings import InsightsConfig
from services.insights.spend import DaySpend
from services.insights.window import make_window
from shared.db import UnitOfWork
from shared.db.types import utcnow
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


async def _update_lead(
    uow: UnitOfWork, lead_id: str, change: Callable[[LeadFacts], LeadFacts]
) -> None:
    """Merge an event into the lead's facts (written once per lead when the batch commits)."""
    await store.LeadBatch.of(uow).update(lead_id, change)


async def handle_lead_captured(envelope: Envelope[LeadCaptured], uow: UnitOfWork) -> None:
    """A submission: a touch of its channel; a new lead of its first-touch channel."""
    event = envelope.data
    batch = store.LeadBatch.of(uow)
    await batch.add_touch(
        submission_id=event.submission_id,
        lead_id=event.lead_id,
        channel=event.channel,
        is_new_lead=event.is_new_lead,
        is_test=event.is_test,
        cost_units=to_units(event.cost) if event.cost is not None else None,
        captured_at=event.captured_at,
    )
    await batch.update(
        event.lead_id,
        lambda facts: facts.captured(
            first_touch_channel=event.first_touch.channel,
            is_new_lead=event.is_new_lead,
            is_test=event.is_test,
            captured_at=event.captured_at,
        ),
    )


async def handle_lead_scored(envelope: Envelope[LeadScored], uow: UnitOfWork) -> None:
    """The lead's grade and whether it became sales-ready."""
    event = envelope.data
    await _update_lead(
        uow,
        event.lead_id,
        lambda facts: facts.scored(
            channel=event.channel,
            grade=event.grade,
            sales_ready=event.sales_ready,
            is_test=event.is_test,
            captured_at=event.captured_at,
            scored_at=event.scored_at,
        ),
    )


async def handle_lead_routed(envelope: Envelope[LeadRouted], uow: UnitOfWork) -> None:
    """The lead reached a rep: routed, with its speed-to-lead."""
    event = envelope.data
    await _update_lead(
        uow,
        event.lead_id,
        lambda facts: facts.routed(
            channel=event.channel, captured_at=event.captured_at, routed_at=event.routed_at
        ),
    )


async def handle_lead_delivery_failed(
    envelope: Envelope[LeadDeliveryFailed], uow: UnitOfWork
) -> None:
    """A destination could not take the lead."""
    event = envelope.data
    await _update_lead(uow, event.lead_id, lambda facts: facts.delivery_failed(event.failed_at))


async def handle_lead_converted(envelope: Envelope[LeadConverted], uow: UnitOfWork) -> None:
    """A won deal: the lead converted, its value counts as revenue (once per outcome)."""
    event = envelope.data
    batch = store.LeadBatch.of(uow)
    await batch.add_conversion(
        lead_id=event.lead_id,
        outcome_id=event.outcome_id,
        value_units=to_units(event.value),
        currency=event.currency.strip().upper()[:16] or "USD",
        occurred_at=event.occurred_at,
    )
    await batch.update(event.lead_id, lambda facts: facts.converted(event.occurred_at))


async def handle_lead_disqualified(envelope: Envelope[LeadDisqualified], uow: UnitOfWork) -> None:
    """The CRM says the lead will not buy."""
    event = envelope.data
    await _update_lead(uow, event.lead_id, lambda facts: facts.disqualified(event.occurred_at))


async def handle_lead_engaged(envelope: Envelope[LeadEngaged], uow: UnitOfWork) -> None:
    """The lead opened, clicked, replied or came back."""
    event = envelope.data
    await _update_lead(uow, event.lead_id, lambda facts: facts.engaged(event.occurred_at))


async def handle_lead_unsubscribed(envelope: Envelope[LeadUnsubscribed], uow: UnitOfWork) -> None:
    """The lead asked for no more marketing email."""
    event = envelope.data
    await _update_lead(uow, event.lead_id, lambda facts: facts.unsubscribed(event.occurred_at))


async def handle_lead_erased(envelope: Envelope[LeadErased], uow: UnitOfWork) -> None:
    """The person was forgotten: the lead stays counted (the read model holds no PII)."""
    event = envelope.data
    await _update_lead(uow, event.lead_id, lambda facts: facts.erased(event.erased_at))


@dataclass(frozen=True)
class RecordSpend:
    """Set a channel's spend (and reach) of one day, replacing what was posted before."""

    channel: str
    day: date
    amount: Decimal
    impressions: int | None = None
    clicks: int | None = None


async def handle_record_spend(command: RecordSpend, uow: UnitOfWork) -> None:
    """Store the day's spend; it overrides the config for that day."""
    spend = DaySpend(command.day, Fraction(command.amount), command.impressions, command.clicks)
    await store.put_spend(uow.session, uow.dialect, command.channel, spend)
    await uow.commit()


@dataclass(frozen=True)
class ReportQuery:
    """The channel report of leads captured between `since` and `until`."""

    since: str | None = None
    until: str | None = None


async def handle_channel_report(
    query: ReportQuery, uow: UnitOfWork, config: InsightsConfig
) -> ChannelReport:
    """Build the per-channel funnel (raises InvalidWindow for a bad since/until)."""
    today = utcnow().date()
    window = make_window(query.since, query.until, today)
    facts = await store.channel_facts(uow.session, window, config.channels.currency)
    posted = await store.posted_spend(uow.session, window.first_day, window.last_day)
    return build_report(window, config.channels, facts, posted, today)
