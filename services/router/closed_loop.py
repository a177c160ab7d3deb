"""Closing the loop: a lead's CRM outcome (converted or disqualified), recorded once per
outcome id, published on leads.outcomes, and the lead's open assignments closed."""

from __future__ import annotations

from typing import Any

from services.router import store
from services.router.commands import (
    RecordDealOutcome,
    RecordedOutcome,
    RecordOutcome,
    ReportOutcome,
)
from shared import metrics
from shared.clock import Clock, utc_now
from shared.db import UnitOfWork
from shared.events import LeadConverted, LeadDisqualified


class UnknownLead(LookupError):
    """No routed lead has the email an outcome names."""


async def handle_record_outcome(
    command: RecordOutcome, uow: UnitOfWork, *, clock: Clock = utc_now
) -> bool:
    """Publish lead.converted / lead.disqualified once per outcome id; False for a repeat."""
    now = clock()
    session = uow.session
    fresh = await store.record_outcome(
        session, uow.dialect, command.outcome_id, command.lead_id, command.outcome, now
    )
    if not fresh:
        return False
    common: dict[str, Any] = {
        "lead_id": command.lead_id,
        "outcome_id": command.outcome_id,
        "occurred_at": command.occurred_at,
    }
    uow.publish(
        LeadConverted(**common, value=command.value, currency=command.currency)
        if command.outcome == "converted"
        else LeadDisqualified(**common, reason=command.reason)
    )
    await store.close_assignments(session, command.lead_id, now)
    uow.after_commit(metrics.outcomes_total.labels(command.outcome).inc)
    return True


async def handle_report_outcome(
    command: ReportOutcome, uow: UnitOfWork, *, clock: Clock = utc_now
) -> RecordedOutcome:
    """An outcome posted through the API: the lead by id, or by email (UnknownLead if none)."""
    lead_id = command.lead_id
    if lead_id is None:
        row = await store.find_lead_by_email(uow.session, command.email or "")
        if row is None:
            raise UnknownLead(command.email)
        lead_id = row.lead_id
    record = RecordOutcome(
        lead_id=lead_id,
        outcome=command.outcome,
        outcome_id=command.outcome_id or f"{command.outcome}:{lead_id}",
        occurred_at=command.occurred_at or clock(),
        value=command.value,
        currency=command.currency,
        reason=command.reason,
    )
    fresh = await handle_record_outcome(record, uow, clock=clock)
    return RecordedOutcome(lead_id=lead_id, outcome_id=record.outcome_id, fresh=fresh)


async def handle_record_deal_outcome(
    command: RecordDealOutcome, uow: UnitOfWork, *, clock: Clock = utc_now
) -> bool | None:
    """A CRM deal won or lost: the outcome of the lead whose delivery created one of the
    deal's contacts. True: recorded; False: a repeat; None: no lead matches."""
    for contact_id in command.contact_ids:
        lead_id = await store.lead_of_external_id(uow.session, command.destination, contact_id)
        if lead_id:
            break
    else:
        return None
    record = RecordOutcome(
        lead_id=lead_id,
        outcome=command.outcome,
        outcome_id=command.outcome_id,
        occurred_at=command.occurred_at,
        value=command.value,
        currency=command.currency,
        reason=command.reason,
    )
    return await handle_record_outcome(record, uow, clock=clock)
