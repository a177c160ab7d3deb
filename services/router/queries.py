"""The router's read-only handlers (`MessageBus.query`): assignments, deliveries, the queue."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from services.router import store
from services.router.commands import (
    FindLeadByCrmContacts,
    FindLeadByEmail,
    GetAssignment,
    GetDelivery,
    LeadAssignments,
    ListDeliveries,
    NextDueAt,
    QueueDepth,
)
from shared.db import UnitOfWork
from shared.messagebus import Handler

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


async def handle_find_lead_by_email(query: FindLeadByEmail, uow: UnitOfWork) -> str | None:
    row = await store.find_lead_by_email(uow.session, query.email)
    return row.lead_id if row is not None else None


async def handle_find_lead_by_crm_contacts(
    query: FindLeadByCrmContacts, uow: UnitOfWork
) -> str | None:
    for contact_id in query.contact_ids:
        lead_id = await store.lead_of_external_id(uow.session, query.destination, contact_id)
        if lead_id:
            return lead_id
    return None


async def handle_next_due_at(query: NextDueAt, uow: UnitOfWork) -> datetime | None:
    return await store.next_due_at(uow.session)


async def handle_queue_depth(query: QueueDepth, uow: UnitOfWork) -> dict[str, int]:
    return await store.queue_depth(uow.session)


#: The queries of the routes and the command line (`messagebus.bus`).
QUERIES: dict[type, Handler] = {
    GetAssignment: handle_get_assignment,
    LeadAssignments: handle_lead_assignments,
    GetDelivery: handle_get_delivery,
    ListDeliveries: handle_list_deliveries,
    FindLeadByEmail: handle_find_lead_by_email,
    FindLeadByCrmContacts: handle_find_lead_by_crm_contacts,
}
#: What the delivery worker reads between rounds (`messagebus.delivery_bus`).
WORKER_QUERIES: dict[type, Handler] = {
    NextDueAt: handle_next_due_at,
    QueueDepth: handle_queue_depth,
}
