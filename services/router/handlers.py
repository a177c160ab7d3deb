"""The router's use cases: route sales-ready leads, forget erased people, acknowledge,
reassign on SLA breach, re-drive failed deliveries. Handlers never commit: the bus (or
the consumer runtime) does, once per message or batch.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC
from types import SimpleNamespace
from typing import Any

from services.router import store
from services.router.assignment import assign, delivery_row, routable
from services.router.commands import AcknowledgeAssignment, CheckSla, RedriveDelivery
from services.router.routing_cache import RoutingCache
from services.router.settings import RoutingConfig
from shared import metrics
from shared.clock import Clock, utc_now
from shared.db import UnitOfWork
from shared.events import Envelope, LeadErased, LeadScored
from shared.messagebus import Refused, refuse_unless_failed

log = logging.getLogger(__name__)

Wake = Callable[[], None]
#: The delivery worker is woken once per transaction, however many leads it routed.
WAKE_KEY = "router-wake"


# Routing and erasure (events) ------------------------------------------------------------


async def handle_lead_scored(
    envelope: Envelope[LeadScored],
    uow: UnitOfWork,
    *,
    config: RoutingConfig,
    wake: Wake,
    clock: Clock = utc_now,
) -> None:
    """A lead that just became sales-ready gets a rep (or the fallback) and its deliveries."""
    data = envelope.data
    if not routable(data, config):
        if data.is_test and data.sales_ready and data.became_sales_ready and not data.disqualified:
            log.info("test lead not routed", extra={"lead_id": data.lead_id})
        return
    now = clock()
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
    cache = RoutingCache.of(uow)
    lead: Any
    if cache is not None:
        if not await cache.save_lead(values) and cache.has_owner(data.lead_id):
            log.info("lead already has an owner; not routed again", extra={"lead_id": data.lead_id})
            return
        lead = cache.lead(data.lead_id)
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
        uow, config, lead, now=now, cause_event_id=envelope.id, purpose="assigned", cache=cache
    )
    uow.on_commit(wake, once_key=WAKE_KEY)


async def handle_lead_erased(envelope: Envelope[LeadErased], uow: UnitOfWork) -> None:
    """Forget the person: lead snapshot scrubbed, pending deliveries cancelled."""
    cache = RoutingCache.of(uow)
    if cache is not None:
        await cache.erase_lead(envelope.data.lead_id, envelope.data.erased_at)
    else:
        await store.erase_lead(uow.session, envelope.data.lead_id, envelope.data.erased_at)
    log.info("lead erased", extra={"lead_id": envelope.data.lead_id})


# Acknowledgement and the SLA -------------------------------------------------------------


async def handle_acknowledge(
    command: AcknowledgeAssignment, uow: UnitOfWork, *, clock: Clock = utc_now
) -> Any:
    """The rep took the lead: stop the SLA clock (a second ack changes nothing)."""
    now = clock()
    session = uow.session
    assignment_id = command.assignment_id
    row = await store.get_assignment(session, assignment_id, for_update=True)
    if row is None:
        raise Refused(404, "not_found", "no such assignment")
    if row.status == "acknowledged":
        return row
    if row.status == "reassigned":
        raise Refused(409, "reassigned", "the SLA passed and the lead went to another rep")
    if row.status != "open":
        raise Refused(409, f"assignment_{row.status}", f"the assignment is {row.status}")
    await store.update_assignment(
        session, assignment_id, status="acknowledged", acknowledged_at=now, sla_due_at=None
    )
    waited = max((now - row.captured_at).total_seconds(), 0.0)
    uow.after_commit(lambda: metrics.speed_to_lead_seconds.labels("acknowledged").observe(waited))
    log.info("assignment acknowledged", extra={"assignment_id": assignment_id})
    return await store.get_assignment(session, assignment_id)


#: Assignments one SLA check reassigns and escalates at most (the rest wait for the next).
SLA_PAGE = 100


async def handle_check_sla(
    command: CheckSla, uow: UnitOfWork, *, config: RoutingConfig
) -> list[str]:
    """Reassign open assignments past their SLA (and escalate); returns the breached ids.

    Replicas skip each other's rows (FOR UPDATE SKIP LOCKED on PostgreSQL).
    """
    now, session = command.now, uow.session
    breached = await store.claim_breached(session, now, SLA_PAGE)
    for row in breached:
        uow.after_commit(metrics.sla_breaches_total.labels(row.rule_id).inc)
        lead = await store.get_lead(session, row.lead_id)
        decision = None
        if lead is not None and row.reassignments < config.sla.max_reassignments:
            decision = await assign(uow, config, lead, now=now, purpose="reassigned", previous=row)
        # Nobody new can take it: the lead stays with its rep, and people are told.
        status = {"status": "reassigned"} if decision is not None else {}
        await store.update_assignment(
            session, row.assignment_id, **status, breached_at=now, sla_due_at=None
        )
        names = [n for n in config.sla.escalate_to if config.destination_enabled(n)]
        await store.enqueue_deliveries(
            session,
            [
                delivery_row(row.assignment_id, row.lead_id, config, n, "escalation", now)
                for n in names
            ],
        )
        log.warning(
            "speed-to-lead SLA missed; %s",
            "reassigned" if decision is not None else "kept with its rep",
            extra={"lead_id": row.lead_id, "assignment_id": row.assignment_id},
        )
    return [row.assignment_id for row in breached]


# Re-drive --------------------------------------------------------------------------------


async def handle_redrive(
    command: RedriveDelivery, uow: UnitOfWork, *, wake: Wake, clock: Clock = utc_now
) -> Any:
    """Queue a failed delivery again, with a fresh attempt budget; None when unknown."""
    session = uow.session
    delivery_id = command.delivery_id
    row = await store.get_delivery(session, delivery_id, for_update=True)
    if row is None:
        return None
    refuse_unless_failed(row.status, "delivery")
    await store.update_delivery(
        session,
        delivery_id,
        status=store.PENDING,
        attempts=0,
        next_attempt_at=clock(),
        claimed_until=None,
        failed_at=None,
        redrives=row.redrives + 1,
    )
    uow.on_commit(wake, once_key=WAKE_KEY)
    log.info("delivery re-driven", extra={"lead_id": row.lead_id, "destination": row.destination})
    return await store.get_delivery(session, delivery_id)
