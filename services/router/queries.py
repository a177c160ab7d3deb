"""The router's read-only handlers (`MessageBus.query`): assignments, deliveries, the queue."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from services.router import store
from services.router.commands import (
    GetAssignment,
    GetDelivery,
    LeadAssignments,
    ListDeliveries,
    NextDueAt,
    QueueDepth,
)
from shared.db import UnitOfWork

#: An assignment row with its deliveries.
AssignmentWithDeliveries = tuple[Any, list[Any]]


async def handle_get_assignment(
    query: GetAssignment, uow: UnitOfWork
) -> AssignmentWithDeliveries | None:
    """One assignment and its deliveries; None when unknown."""
    row = await store.get_assignment(uow.session, query.assignment_id)
    if row is None:
        return None
    deliveries = await store.list_deliveries(uow.session, assignment_id=query.assignment_id)
    return row, deliveries


async def handle_lead_assignments(
    query: LeadAssignments, uow: UnitOfWork
) -> list[AssignmentWithDeliveries]:
    """Every assignment of a lead, oldest first, each with its deliveries."""
    rows = await store.lead_assignments(uow.session, query.lead_id)
    deliveries = await store.list_deliveries(uow.session, lead_id=query.lead_id, limit=1000)
    return [(row, [d for d in deliveries if d.assignment_id == row.assignment_id]) for row in rows]


async def handle_get_delivery(query: GetDelivery, uow: UnitOfWork) -> Any:
    return await store.get_delivery(uow.session, query.delivery_id)


async def handle_list_deliveries(query: ListDeliveries, uow: UnitOfWork) -> list[Any]:
    """Deliveries, newest first, filtered by status, destination and lead."""
    return await store.list_deliveries(
        uow.session,
        status=query.status,
        destination=query.destination,
        lead_id=query.lead_id,
        limit=query.limit,
    )


async def handle_next_due_at(query: NextDueAt, uow: UnitOfWork) -> datetime | None:
    return await store.next_due_at(uow.session)


async def handle_queue_depth(query: QueueDepth, uow: UnitOfWork) -> dict[str, int]:
    return await store.queue_depth(uow.session)
