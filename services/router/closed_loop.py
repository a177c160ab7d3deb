"""Closing the loop: a lead's CRM outcome (converted or disqualified), recorded once per
outcome id, published on leads.outcomes, and the lead's open assignments closed."""

from __future__ import annotations

from typing import Any

from services.router import store
from services.router.commands import RecordOutcome
from shared import metrics
from shared.clock import Clock, utc_now
from shared.db import UnitOfWork
from shared.events import LeadConverted, LeadDisqualified


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
