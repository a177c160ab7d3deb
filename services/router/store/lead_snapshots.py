"""The lead snapshots the router routes and sends: saved from lead.scored, scrubbed on erasure."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from services.router.store.tables import CANCELLED, PENDING, deliveries, leads, row_by_key
from shared.db.statements import insert_ignore

# Statements built once (per dialect where it matters); values come as parameters.
_INSERT_LEAD: dict[str, Any] = {}


async def save_lead(session: AsyncSession, dialect: str, **values: Any) -> bool:
    """Insert or refresh the lead snapshot; True when the lead was new."""
    stmt = _INSERT_LEAD.get(dialect)
    if stmt is None:
        stmt = _INSERT_LEAD[dialect] = insert_ignore(leads, dialect, "lead_id")
    result = await session.execute(stmt, values)
    if result.rowcount:  # type: ignore[attr-defined]
        return True
    update = {k: v for k, v in values.items() if k not in ("lead_id", "captured_at")}
    await session.execute(
        sa.update(leads)
        .where(leads.c.lead_id == values["lead_id"], leads.c.erased_at.is_(None))
        .values(**update)
    )
    return False


async def get_lead(session: AsyncSession, lead_id: str) -> sa.Row[Any] | None:
    return await row_by_key(session, leads.c.lead_id, lead_id)


async def find_lead_by_email(session: AsyncSession, email: str) -> sa.Row[Any] | None:
    return (
        await session.execute(
            sa.select(leads).where(leads.c.email == email.strip().lower()).limit(1)
        )
    ).first()


async def erase_lead(session: AsyncSession, lead_id: str, erased_at: datetime) -> None:
    """Remove the person's PII; keep the anonymous routing facts (channel, rule, rep)."""
    await session.execute(
        sa.update(leads)
        .where(leads.c.lead_id == lead_id)
        .values(email=None, contact={}, fields={}, erased_at=erased_at, updated_at=erased_at)
    )
    # Pending deliveries would send the person to a CRM after they asked to be forgotten.
    await session.execute(
        sa.update(deliveries)
        .where(deliveries.c.lead_id == lead_id, deliveries.c.status == PENDING)
        .values(status=CANCELLED, last_error="cancelled: lead erased", claimed_until=None)
    )
