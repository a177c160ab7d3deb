"""The router's use cases: assign sales-ready leads, acknowledge, reassign on SLA breach,
record CRM outcomes, forget erased people, re-drive failed deliveries.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from types import SimpleNamespace
from typing import Any, Literal

import sqlalchemy as sa

from services.router import domain, store
from services.router.batch import RoutingBatch
from services.router.settings import RoutingConfig
from shared import metrics
from shared.db import UnitOfWork
from shared.events import (
    Envelope,
    LeadConverted,
    LeadDisqualified,
    LeadErased,
    LeadRouted,
    LeadScored,
)

log = logging.getLogger(__name__)

Wake = Callable[[], None]
QUEUE_PREFIX = "queue:"


def after_commit(uow: UnitOfWork, callback: Callable[[], None]) -> None:
    """Run `callback` once this unit of work's transaction has committed (never on rollback)."""
    sa.event.listen(uow.session.sync_session, "after_commit", lambda _s: callback(), once=True)


def wake_after_commit(uow: UnitOfWork, wake: Wake) -> None:
    """Wake the delivery worker once this unit of work's transaction commits."""
    session = uow.session
    if session.info.get("router_wake"):
        return
    session.info["router_wake"] = True
    after_commit(uow, wake)


def lead_facts(row: Any) -> domain.LeadFacts:
    """What rules match on, from a stored lead row."""
    contact = row.contact or {}
    return domain.LeadFacts(
        lead_id=row.lead_id,
        channel=row.channel,
        country=contact.get("country"),
        form_id=row.form_id,
        form_type=row.form_type,
        grade=row.grade,
        score=row.score,
        fields=row.fields or {},
    )


# Assignment -----------------------------------------------------------------------------


def routable(data: LeadScored, config: RoutingConfig) -> bool:
    """Whether this lead.scored asks for routing (most do not: the lead is not sales-ready yet)."""
    if not (data.sales_ready and data.became_sales_ready) or data.disqualified:
        return False
    return not data.is_test or config.route_test_leads


async def load_batch(
    uow: UnitOfWork, envelopes: Sequence[Envelope[Any]], *, config: RoutingConfig
) -> None:
    """Before a consumer batch: when some of its leads are to be routed, lock routing once
    and read what their decisions need in one query each (see `services.router.batch`)."""
    lead_ids = [
        e.data.lead_id for e in envelopes if e.type == LeadScored.TYPE and routable(e.data, config)
    ]
    if lead_ids:
        await RoutingBatch.start(uow, lead_ids, datetime.now(UTC))


async def handle_lead_scored(
    envelope: Envelope[LeadScored],
    uow: UnitOfWork,
    *,
    config: RoutingConfig,
    wake: Wake,
    now: datetime | None = None,
) -> None:
    """A lead that just became sales-ready gets a rep (or the fallback) and its deliveries."""
    data = envelope.data
    if not routable(data, config):
        if data.is_test and data.sales_ready and data.became_sales_ready and not data.disqualified:
            log.info("test lead not routed", extra={"lead_id": data.lead_id})
        return
    now = now or datetime.now(UTC)
    session = uow.session
    values: dict[str, Any] = {
        "lead_id": data.lead_id,
        "email": data.contact.email,
        "contact": data.contact.model_dump(mode="json"),
        "fields": dict(data.fields),
        "channel": data.channel,
        "form_id": data.form_id,
        "form_type": data.form_type,
        "score": data.score,
        "grade": data.grade,
        "is_test": data.is_test,
        # As the column gives it back (UTC); a naive value is refused by the column itself.
        "captured_at": (
            data.captured_at.astimezone(UTC) if data.captured_at.tzinfo else data.captured_at
        ),
        "updated_at": now,
    }
    batch = RoutingBatch.of(uow)
    lead: Any
    if batch is not None:
        if await batch.save_lead(values):
            lead = batch.lead(data.lead_id)
        elif batch.has_owner(data.lead_id):
            log.info("lead already has an owner; not routed again", extra={"lead_id": data.lead_id})
            return
        else:
            lead = batch.lead(data.lead_id)
    elif await store.save_lead(session, uow.dialect, **values):
        # A lead seen for the first time has no assignment (they are made from stored leads),
        # and its row is exactly what was just written.
        lead = SimpleNamespace(**values, erased_at=None)
    else:
        if await store.active_assignment(session, data.lead_id) is not None:
            log.info("lead already has an owner; not routed again", extra={"lead_id": data.lead_id})
            return
        lead = await store.get_lead(session, data.lead_id)
        assert lead is not None
    await assign(
        uow,
        config,
        lead,
        now=now,
        cause_event_id=envelope.id,
        purpose="assigned",
        batch=batch,
    )
    wake_after_commit(uow, wake)


async def assign(
    uow: UnitOfWork,
    config: RoutingConfig,
    lead: Any,
    *,
    now: datetime,
    purpose: Literal["assigned", "reassigned"],
    cause_event_id: str | None = None,
    previous: Any = None,
    batch: RoutingBatch | None = None,
) -> domain.Decision | None:
    """Decide under the routing lock, store the assignment, queue deliveries, announce it.

    Returns None when a reassignment finds nobody new to give the lead to. With a
    `batch` (new assignments only), reads come from it and writes are queued in it.
    """
    session = uow.session
    starts = {rep_id: domain.day_start(rep, now) for rep_id, rep in config.reps.items()}
    if batch is None:
        await store.lock_routing(session, uow.dialect, now)
        states = await store.strategy_states(session)
        loads = await store.loads_since(session, starts)
        exclude = await store.reps_of_lead(session, lead.lead_id) if previous is not None else set()
    else:
        assert previous is None
        states = batch.strategy_states()
        loads = await batch.loads_since(starts)
        exclude = set()
    decision = domain.decide(config, lead_facts(lead), now, states, loads, exclude)
    if previous is not None and (decision.rep_id is None or decision.rep_id in exclude):
        return None
    if decision.new_state is not None:
        if batch is None:
            await store.save_strategy_state(
                session, uow.dialect, decision.rule_id, decision.new_state, now
            )
        else:
            batch.save_strategy_state(decision.rule_id, decision.new_state, now)
    assignment_id = str(uuid.uuid4())
    has_rep = decision.rep_id is not None
    sla = domain.sla_minutes(config, previous.rule_id if previous is not None else decision.rule_id)
    names = [
        name
        for name in dict.fromkeys(decision.destinations)
        if config.destination_enabled(name)
        and (purpose == "assigned" or config.destinations[name].on_reassign)
    ]
    assignment = {
        "assignment_id": assignment_id,
        "lead_id": lead.lead_id,
        "rep_id": decision.rep_id,
        "queue": decision.queue,
        "rule_id": decision.rule_id,
        "status": "open" if has_rep else "queued",
        "reason": decision.reason(),
        "reassigned_from": previous.assignment_id if previous is not None else None,
        "reassignments": (previous.reassignments + 1) if previous is not None else 0,
        "cause_event_id": cause_event_id,
        "captured_at": lead.captured_at,
        "created_at": now,
        "sla_due_at": now + timedelta(minutes=sla) if has_rep else None,
    }
    deliveries = [
        _delivery_row(assignment_id, lead.lead_id, config, n, purpose, now) for n in names
    ]
    if batch is None:
        await store.insert_assignment(session, **assignment)
        await store.enqueue_deliveries(session, deliveries)
    else:
        # Nothing to deliver: delivered at once (the one-by-one path stamps it just below).
        batch.insert_assignment({**assignment, "delivered_at": None if names else now})
        batch.enqueue_deliveries(deliveries)
    uow.publish(
        LeadRouted(
            lead_id=lead.lead_id,
            assignment_id=assignment_id,
            rep_id=decision.rep_id or f"{QUEUE_PREFIX}{decision.queue}",
            rule_id=decision.rule_id,
            destinations=names,
            channel=lead.channel,
            reassigned=previous is not None,
            captured_at=lead.captured_at,
            routed_at=now,
        )
    )
    rule_id, channel, captured_at = decision.rule_id, lead.channel, lead.captured_at

    def count() -> None:
        metrics.leads_routed_total.labels(rule_id, channel).inc()
        if previous is None:
            metrics.speed_to_lead_seconds.labels("assigned").observe(
                max((now - captured_at).total_seconds(), 0.0)
            )

    if batch is None:
        after_commit(uow, count)
        if not names:
            await store.update_assignment(session, assignment_id, delivered_at=now)
    else:
        batch.after_commit(count)
    log.info(
        "lead %s: %s",
        purpose,
        decision.explanation,
        extra={"lead_id": lead.lead_id, "assignment_id": assignment_id},
    )
    return decision


def _delivery_row(
    assignment_id: str, lead_id: str, config: RoutingConfig, name: str, purpose: str, now: datetime
) -> dict[str, Any]:
    return {
        "delivery_id": str(uuid.uuid4()),
        "assignment_id": assignment_id,
        "lead_id": lead_id,
        "destination": name,
        "kind": config.destinations[name].type,
        "purpose": purpose,
        "status": store.PENDING,
        "attempts": 0,
        "claims": 0,
        "next_attempt_at": now,
        "progress": {},
        "redrives": 0,
        "created_at": now,
    }


# Acknowledgement and the SLA ------------------------------------------------------------


class AckError(Exception):
    """The assignment cannot be acknowledged (unknown, reassigned, closed)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


async def handle_acknowledge(
    assignment_id: str, uow: UnitOfWork, now: datetime | None = None
) -> Any:
    """The rep took the lead: stop the SLA clock (a second ack changes nothing)."""
    now = now or datetime.now(UTC)
    session = uow.session
    row = await store.get_assignment(session, assignment_id, for_update=True)
    if row is None:
        raise AckError(404, "not_found", "no such assignment")
    if row.status == "acknowledged":
        return row
    if row.status == "reassigned":
        raise AckError(409, "reassigned", "the SLA passed and the lead went to another rep")
    if row.status != "open":
        raise AckError(409, f"assignment_{row.status}", f"the assignment is {row.status}")
    await store.update_assignment(
        session, assignment_id, status="acknowledged", acknowledged_at=now, sla_due_at=None
    )
    await uow.commit()
    metrics.speed_to_lead_seconds.labels("acknowledged").observe(
        max((now - row.captured_at).total_seconds(), 0.0)
    )
    log.info("assignment acknowledged", extra={"assignment_id": assignment_id})
    return await store.get_assignment(session, assignment_id)


async def check_sla(
    uow: UnitOfWork, config: RoutingConfig, now: datetime, limit: int = 100
) -> list[str]:
    """Reassign open assignments past their SLA (and escalate); returns the breached ids.

    Commits. Replicas skip each other's rows (FOR UPDATE SKIP LOCKED on PostgreSQL).
    """
    session = uow.session
    breached = await store.claim_breached(session, now, limit)
    for row in breached:
        metrics.sla_breaches_total.labels(row.rule_id).inc()
        lead = await store.get_lead(session, row.lead_id)
        decision = None
        if lead is not None and row.reassignments < config.sla.max_reassignments:
            decision = await assign(uow, config, lead, now=now, purpose="reassigned", previous=row)
        if decision is not None:
            await store.update_assignment(
                session, row.assignment_id, status="reassigned", breached_at=now, sla_due_at=None
            )
        else:
            # Nobody new can take it: the lead stays with its rep, and people are told.
            await store.update_assignment(
                session, row.assignment_id, breached_at=now, sla_due_at=None
            )
        names = [n for n in config.sla.escalate_to if config.destination_enabled(n)]
        await store.enqueue_deliveries(
            session,
            [
                _delivery_row(row.assignment_id, row.lead_id, config, n, "escalation", now)
                for n in names
            ],
        )
        log.warning(
            "speed-to-lead SLA missed; %s",
            "reassigned" if decision is not None else "kept with its rep",
            extra={"lead_id": row.lead_id, "assignment_id": row.assignment_id},
        )
    await uow.commit()
    return [row.assignment_id for row in breached]


# Outcomes -------------------------------------------------------------------------------


@dataclass(frozen=True)
class RecordOutcome:
    """The CRM says the lead converted or will not buy."""

    lead_id: str
    outcome: Literal["converted", "disqualified"]
    outcome_id: str
    occurred_at: datetime
    value: Decimal = Decimal("0")
    currency: str = "USD"
    reason: str | None = None


async def handle_record_outcome(
    command: RecordOutcome, uow: UnitOfWork, now: datetime | None = None
) -> bool:
    """Publish lead.converted / lead.disqualified once per outcome id; False for a repeat."""
    now = now or datetime.now(UTC)
    session = uow.session
    fresh = await store.record_outcome(
        session, uow.dialect, command.outcome_id, command.lead_id, command.outcome, now
    )
    if not fresh:
        return False
    if command.outcome == "converted":
        uow.publish(
            LeadConverted(
                lead_id=command.lead_id,
                value=command.value,
                currency=command.currency,
                outcome_id=command.outcome_id,
                occurred_at=command.occurred_at,
            )
        )
    else:
        uow.publish(
            LeadDisqualified(
                lead_id=command.lead_id,
                reason=command.reason,
                outcome_id=command.outcome_id,
                occurred_at=command.occurred_at,
            )
        )
    await store.close_assignments(session, command.lead_id, now)
    await uow.commit()
    metrics.outcomes_total.labels(command.outcome).inc()
    return True


# Erasure and re-drive -------------------------------------------------------------------


async def handle_lead_erased(envelope: Envelope[LeadErased], uow: UnitOfWork) -> None:
    """Forget the person: lead snapshot scrubbed, pending deliveries cancelled."""
    batch = RoutingBatch.of(uow)
    if batch is not None:
        await batch.erase_lead(envelope.data.lead_id, envelope.data.erased_at)
    else:
        await store.erase_lead(uow.session, envelope.data.lead_id, envelope.data.erased_at)
    log.info("lead erased", extra={"lead_id": envelope.data.lead_id})


async def handle_redrive(delivery_id: str, uow: UnitOfWork, now: datetime | None = None) -> Any:
    """Queue a failed delivery again, with a fresh attempt budget; None when unknown."""
    now = now or datetime.now(UTC)
    session = uow.session
    row = await store.get_delivery(session, delivery_id, for_update=True)
    if row is None:
        return None
    if row.status != store.FAILED:
        raise AckError(409, "not_failed", f"the delivery is {row.status}, not failed")
    await store.update_delivery(
        session,
        delivery_id,
        status=store.PENDING,
        attempts=0,
        next_attempt_at=now,
        claimed_until=None,
        failed_at=None,
        redrives=row.redrives + 1,
    )
    await uow.commit()
    log.info("delivery re-driven", extra={"lead_id": row.lead_id, "destination": row.destination})
    return await store.get_delivery(session, delivery_id)
