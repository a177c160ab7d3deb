"""The delivery queue outside a round: enqueue, read, list, re-drive, count, update in bulk."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from services.router.store.tables import DELIVERED, PENDING, assignments, deliveries, row_by_key
from shared.db.rows import newest_rows


async def enqueue_deliveries(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    if rows:
        await session.execute(sa.insert(deliveries), list(rows))


async def next_due_at(session: AsyncSession) -> datetime | None:
    return (await session.execute(_NEXT_DUE)).scalar_one_or_none()


# Built once: every delivery round reads it.
_NEXT_DUE = sa.select(sa.func.min(deliveries.c.next_attempt_at)).where(
    deliveries.c.status == PENDING
)


async def get_delivery(
    session: AsyncSession, delivery_id: str, *, for_update: bool = False
) -> sa.Row[Any] | None:
    return await row_by_key(session, deliveries.c.delivery_id, delivery_id, for_update=for_update)


async def update_delivery(session: AsyncSession, delivery_id: str, **values: Any) -> None:
    await session.execute(
        sa.update(deliveries).where(deliveries.c.delivery_id == delivery_id).values(**values)
    )


async def list_deliveries(
    session: AsyncSession,
    *,
    status: str | None = None,
    lead_id: str | None = None,
    assignment_id: str | None = None,
    destination: str | None = None,
    limit: int = 100,
) -> list[sa.Row[Any]]:
    """The newest deliveries first, of those matching every filter given."""
    return await newest_rows(
        session,
        deliveries.c.created_at,
        limit,
        status=status,
        lead_id=lead_id,
        assignment_id=assignment_id,
        destination=destination,
    )


async def lead_of_external_id(
    session: AsyncSession, destination: str, external_id: str
) -> str | None:
    return (
        await session.execute(
            sa.select(deliveries.c.lead_id)
            .where(deliveries.c.destination == destination, deliveries.c.external_id == external_id)
            .limit(1)
        )
    ).scalar_one_or_none()


async def queue_depth(session: AsyncSession) -> dict[str, int]:
    rows = await session.execute(
        sa.select(deliveries.c.destination, sa.func.count())
        .where(deliveries.c.status == PENDING)
        .group_by(deliveries.c.destination)
    )
    return {name: int(count) for name, count in rows.all()}


async def mark_delivered(
    session: AsyncSession, assignment_ids: Iterable[str], now: datetime
) -> list[sa.Row[Any]]:
    """Stamp `delivered_at` on those of the assignments whose every delivery (escalations
    aside) is delivered and that do not carry it yet; returns the stamped ones."""
    ids = list(dict.fromkeys(assignment_ids))
    if not ids:
        return []
    rows = await session.execute(_MARK_DELIVERED, {"ids": ids, "now": now})
    return list(rows.all())


_OWED = sa.exists().where(
    deliveries.c.assignment_id == assignments.c.assignment_id,
    deliveries.c.purpose != "escalation",
    deliveries.c.status != DELIVERED,
)
_MARK_DELIVERED = (
    sa.update(assignments)
    .where(
        assignments.c.assignment_id.in_(sa.bindparam("ids", expanding=True)),
        assignments.c.delivered_at.is_(None),
        ~_OWED,
    )
    .values(delivered_at=sa.bindparam("now", type_=assignments.c.delivered_at.type))
    .returning(
        assignments.c.assignment_id,
        assignments.c.reassigned_from,
        assignments.c.captured_at,
    )
)
