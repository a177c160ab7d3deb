"""The router's reads: assignments, deliveries, the queue.

Plain functions, not bus messages: each opens one unit of work on the factory it is
given, reads, and commits nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from services.router import store
from shared.db.uow import UowFactory

#: An assignment row with its deliveries.
AssignmentWithDeliveries = tuple[Any, list[Any]]


async def get_assignment(uows: UowFactory, assignment_id: str) -> AssignmentWithDeliveries | None:
    """One assignment and its deliveries; None when unknown."""
    async with uows() as uow:
        row = await store.get_assignment(uow.session, assignment_id)
        if row is None:
            return None
        deliveries = await store.list_deliveries(uow.session, assignment_id=assignment_id)
        return row, deliveries


async def lead_assignments(uows: UowFactory, lead_id: str) -> list[AssignmentWithDeliveries]:
    """Every assignment of a lead, oldest first, each with its deliveries."""
    async with uows() as uow:
        rows = await store.lead_assignments(uow.session, lead_id)
        deliveries = await store.list_deliveries(uow.session, lead_id=lead_id, limit=1000)
    return [(row, [d for d in deliveries if d.assignment_id == row.assignment_id]) for row in rows]


async def get_delivery(uows: UowFactory, delivery_id: str) -> Any:
    """The delivery, or None."""
    async with uows() as uow:
        return await store.get_delivery(uow.session, delivery_id)


async def list_deliveries(
    uows: UowFactory,
    *,
    status: str | None = None,
    destination: str | None = None,
    lead_id: str | None = None,
    limit: int = 100,
) -> list[Any]:
    """Deliveries, newest first, filtered by status, destination and lead."""
    async with uows() as uow:
        return await store.list_deliveries(
            uow.session, status=status, destination=destination, lead_id=lead_id, limit=limit
        )


async def find_lead_by_email(uows: UowFactory, email: str) -> str | None:
    """The routed lead with this email (its id), for outcomes that name a person."""
    async with uows() as uow:
        row = await store.find_lead_by_email(uow.session, email)
    return row.lead_id if row is not None else None


async def find_lead_by_crm_contacts(
    uows: UowFactory, destination: str, contact_ids: Sequence[str]
) -> str | None:
    """The lead whose delivery to `destination` created one of these CRM contacts."""
    async with uows() as uow:
        for contact_id in contact_ids:
            lead_id = await store.lead_of_external_id(uow.session, destination, contact_id)
            if lead_id:
                return lead_id
    return None


async def next_due_at(uows: UowFactory) -> datetime | None:
    """When the earliest pending delivery is due (None: nothing pending)."""
    async with uows() as uow:
        return await store.next_due_at(uow.session)


async def queue_depth(uows: UowFactory) -> dict[str, int]:
    """Pending deliveries per destination."""
    async with uows() as uow:
        return await store.queue_depth(uow.session)
