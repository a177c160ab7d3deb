"""Nurture's reads: a lead and its emails, the send queue, what is due.

Plain functions, not bus messages: each opens one unit of work on the factory it is
given, reads, and commits nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from services.nurture import send_queue, store
from shared.db.uow import UowFactory


@dataclass(frozen=True)
class LeadRecord:
    """A lead with the enrollments and emails a question asked for."""

    lead: Any
    enrollments: list[Any] = field(default_factory=list)
    sends: list[Any] = field(default_factory=list)


async def get_lead(uows: UowFactory, lead_id: str) -> Any:
    """The lead as nurture keeps it, or None."""
    async with uows() as uow:
        return await store.get_lead(uow.session, lead_id)


async def lead_record(uows: UowFactory, lead_id: str, kind: str) -> LeadRecord | None:
    """The lead (or None) with its emails of `kind`: sequence steps come with their
    enrollments, double opt-in emails alone."""
    async with uows() as uow:
        lead = await store.get_lead(uow.session, lead_id)
        if lead is None:
            return None
        runs = await store.lead_enrollments(uow.session, lead_id) if kind == store.STEP else []
        sends = await send_queue.lead_sends(uow.session, lead_id, kind=kind)
        return LeadRecord(lead, runs, sends)


async def list_sends(
    uows: UowFactory, status: str | None, lead_id: str | None, limit: int
) -> list[Any]:
    """Emails of the send queue, newest first."""
    async with uows() as uow:
        return await send_queue.list_sends(uow.session, status=status, lead_id=lead_id, limit=limit)


async def next_due_at(uows: UowFactory) -> datetime | None:
    """When the earliest scheduled email may go out (None: nothing is scheduled)."""
    async with uows() as uow:
        return await send_queue.next_due_at(uow.session)


async def count_due(uows: UowFactory, now: datetime) -> int:
    """How many scheduled emails may go out at `now`."""
    async with uows() as uow:
        return await send_queue.due_count(uow.session, now)
