"""What the speed-to-lead checks read: assignments past their SLA, the reps a lead had."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from services.router.store.tables import assignments


async def claim_breached(session: AsyncSession, now: datetime, limit: int) -> list[sa.Row[Any]]:
    """Open assignments past their SLA, locked; replicas skip each other's rows."""
    rows = await session.execute(
        sa.select(assignments)
        .where(assignments.c.status == "open", assignments.c.sla_due_at <= now)
        .order_by(assignments.c.sla_due_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return list(rows.all())


async def reps_of_lead(session: AsyncSession, lead_id: str) -> set[str]:
    rows = await session.execute(
        sa.select(assignments.c.rep_id).where(
            assignments.c.lead_id == lead_id, assignments.c.rep_id.is_not(None)
        )
    )
    return {r for r in rows.scalars() if r}
