"""Closed-loop outcomes: each received once (by outcome id); the lead's assignments close."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from services.router.store.tables import ACTIVE, assignments, outcomes
from shared.db.statements import insert_ignore


async def close_assignments(session: AsyncSession, lead_id: str, now: datetime) -> None:
    await session.execute(
        sa.update(assignments)
        .where(assignments.c.lead_id == lead_id, assignments.c.status.in_(ACTIVE))
        .values(status="closed", closed_at=now, sla_due_at=None)
    )


async def record_outcome(
    session: AsyncSession, dialect: str, outcome_id: str, lead_id: str, kind: str, now: datetime
) -> bool:
    """False when this outcome was already received (a retried webhook)."""
    result = await session.execute(
        insert_ignore(outcomes, dialect, "outcome_id").values(
            outcome_id=outcome_id, lead_id=lead_id, kind=kind, received_at=now
        )
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]
