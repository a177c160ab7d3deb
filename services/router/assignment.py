"""Assigning a lead: decide under the routing lock, store the assignment, queue its
deliveries, announce `lead.routed`. New leads from the consumer and SLA reassignments
both come here; a consumer batch reads and writes through its routing cache."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, Literal

from services.router import domain, store
from services.router.routing_cache import RoutingCache
from services.router.settings import RoutingConfig
from shared import metrics
from shared.clock import Clock, utc_now
from shared.db import UnitOfWork
from shared.events import Envelope, LeadRouted, LeadScored

log = logging.getLogger(__name__)

QUEUE_PREFIX = "queue:"


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


def routable(data: LeadScored, config: RoutingConfig) -> bool:
    """Whether this lead.scored asks for routing (most do not: the lead is not sales-ready yet)."""
    if not (data.sales_ready and data.became_sales_ready) or data.disqualified:
        return False
    return not data.is_test or config.route_test_leads


async def load_routing_cache(
    uow: UnitOfWork,
    envelopes: Sequence[Envelope[Any]],
    *,
    config: RoutingConfig,
    clock: Clock = utc_now,
) -> None:
    """Before a consumer batch: when some of its leads are to be routed, lock routing once
    and read what their decisions need in one query each (see `RoutingCache`)."""
    lead_ids = [
        e.data.lead_id for e in envelopes if e.type == LeadScored.TYPE and routable(e.data, config)
    ]
    if lead_ids:
        await RoutingCache.start(uow, lead_ids, clock())


async def assign(
    uow: UnitOfWork,
    config: RoutingConfig,
    lead: Any,
    *,
    now: datetime,
    purpose: Literal["assigned", "reassigned"],
    cause_event_id: str | None = None,
    previous: Any = None,
    cache: RoutingCache | None = None,
) -> domain.Decision | None:
    """Decide under the routing lock, store the assignment, queue deliveries, announce it.

    Returns None when a reassignment finds nobody new to give the lead to. With a
    routing `cache` (new assignments only), reads come from it and writes are queued in it.
    """
    session = uow.session
    starts = {rep_id: domain.day_start(rep, now) for rep_id, rep in config.reps.items()}
    if cache is None:
        await store.lock_routing(session, uow.dialect, now)
        states = await store.strategy_states(session)
        loads = await store.loads_since(session, starts)
        exclude = await store.reps_of_lead(session, lead.lead_id) if previous is not None else set()
    else:
        assert previous is None
        states = cache.strategy_states()
        loads = await cache.loads_since(starts)
        exclude = set()
    decision = domain.decide(config, lead_facts(lead), now, states, loads, exclude)
    if previous is not None and (decision.rep_id is None or decision.rep_id in exclude):
        return None
    if decision.new_state is not None:
        if cache is None:
            await store.save_strategy_state(
                session, uow.dialect, decision.rule_id, decision.new_state, now
            )
        else:
            cache.save_strategy_state(decision.rule_id, decision.new_state, now)
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
        # Nothing to deliver: delivered at once.
        "delivered_at": None if names else now,
    }
    deliveries = [delivery_row(assignment_id, lead.lead_id, config, n, purpose, now) for n in names]
    if cache is None:
        await store.insert_assignment(session, **assignment)
        await store.enqueue_deliveries(session, deliveries)
    else:
        cache.insert_assignment(assignment)
        cache.enqueue_deliveries(deliveries)
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

    uow.after_commit(count)
    log.info(
        "lead %s: %s",
        purpose,
        decision.explanation,
        extra={"lead_id": lead.lead_id, "assignment_id": assignment_id},
    )
    return decision


def delivery_row(
    assignment_id: str, lead_id: str, config: RoutingConfig, name: str, purpose: str, now: datetime
) -> dict[str, Any]:
    """A new pending delivery of an assignment to destination `name`, due at `now`."""
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
