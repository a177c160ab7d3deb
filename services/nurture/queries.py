"""Nurture's read-only questions: a lead and its emails, the send queue, what is due.

The bus runs these in a unit of work that is rolled back (`MessageBus.query`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from services.nurture import send_queue, store
from services.nurture.commands import (
    CountDue,
    GetLead,
    GetLeadConfirmations,
    GetLeadEnrollments,
    ListSends,
    NextDueAt,
)
from shared.db.uow import UnitOfWork
from shared.messagebus import Handler


@dataclass(frozen=True)
class LeadRecord:
    """A lead with the enrollments and emails a question asked for."""

    lead: Any
    enrollments: list[Any] = field(default_factory=list)
    sends: list[Any] = field(default_factory=list)


async def get_lead(query: GetLead, uow: UnitOfWork) -> Any:
    return await store.get_lead(uow.session, query.lead_id)


async def get_lead_enrollments(query: GetLeadEnrollments, uow: UnitOfWork) -> LeadRecord | None:
    lead = await store.get_lead(uow.session, query.lead_id)
    if lead is None:
        return None
    runs = await store.lead_enrollments(uow.session, query.lead_id)
    sends = await send_queue.lead_sends(uow.session, query.lead_id, kind=store.STEP)
    return LeadRecord(lead, runs, sends)


async def get_lead_confirmations(query: GetLeadConfirmations, uow: UnitOfWork) -> LeadRecord | None:
    lead = await store.get_lead(uow.session, query.lead_id)
    if lead is None:
        return None
    sends = await send_queue.lead_sends(uow.session, query.lead_id, kind=store.CONFIRM)
    return LeadRecord(lead, sends=sends)


async def list_sends(query: ListSends, uow: UnitOfWork) -> list[Any]:
    return await send_queue.list_sends(
        uow.session, status=query.status, lead_id=query.lead_id, limit=query.limit
    )


async def next_due_at(_query: NextDueAt, uow: UnitOfWork) -> datetime | None:
    return await send_queue.next_due_at(uow.session)


async def count_due(query: CountDue, uow: UnitOfWork) -> int:
    return await send_queue.due_count(uow.session, query.now)


#: Query type → handler (the bus runs them read-only).
QUERIES: dict[type, Handler] = {
    GetLead: get_lead,
    GetLeadEnrollments: get_lead_enrollments,
    GetLeadConfirmations: get_lead_confirmations,
    ListSends: list_sends,
    NextDueAt: next_due_at,
    CountDue: count_due,
}
