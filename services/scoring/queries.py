"""Reads of scoring's tables (explanations, replay's pages, counts), and the erasure's
rewrite of a lead's logged events."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from services.scoring.store import lead_scores, outbox, score_changes, score_events


async def get_state_row(session: AsyncSession, lead_id: str) -> Any:
    return (
        await session.execute(sa.select(lead_scores).where(lead_scores.c.lead_id == lead_id))
    ).first()


async def history(session: AsyncSession, lead_id: str, limit: int) -> list[Any]:
    """The lead's newest changes, oldest first."""
    rows = (
        await session.execute(
            sa.select(score_changes)
            .where(score_changes.c.lead_id == lead_id)
            .order_by(score_changes.c.id.desc())
            .limit(limit)
        )
    ).all()
    return list(reversed(rows))


async def count_changes(session: AsyncSession, lead_id: str) -> int:
    return (
        await session.execute(
            sa.select(sa.func.count())
            .select_from(score_changes)
            .where(score_changes.c.lead_id == lead_id)
        )
    ).scalar_one()


async def events_of(session: AsyncSession, lead_ids: Sequence[str]) -> dict[str, list[Any]]:
    """The logged events of these leads, each lead's in order."""
    found: dict[str, list[Any]] = {i: [] for i in lead_ids}
    for start in range(0, len(lead_ids), 500):
        chunk = list(lead_ids[start : start + 500])
        rows = await session.execute(
            sa.select(score_events)
            .where(score_events.c.lead_id.in_(chunk))
            .order_by(score_events.c.lead_id, score_events.c.seq)
        )
        for row in rows:
            found[row.lead_id].append(row)
    return found


async def lead_ids_after(session: AsyncSession, after: str, limit: int) -> list[str]:
    """Lead ids (not erased) after `after`, in order: replay's pages."""
    rows = await session.execute(
        sa.select(lead_scores.c.lead_id)
        .where(lead_scores.c.lead_id > after, lead_scores.c.erased_at.is_(None))
        .order_by(lead_scores.c.lead_id)
        .limit(limit)
    )
    return list(rows.scalars())


async def count_leads(session: AsyncSession) -> int:
    return (
        await session.execute(
            sa.select(sa.func.count())
            .select_from(lead_scores)
            .where(lead_scores.c.erased_at.is_(None))
        )
    ).scalar_one()


async def count_unsent(session: AsyncSession) -> int:
    """Events waiting in the outbox."""
    return (await session.execute(sa.select(sa.func.count()).select_from(outbox))).scalar_one()


async def scrub_logged_events(
    session: AsyncSession, lead_id: str, scrubbed: Callable[[dict[str, Any]], dict[str, Any]]
) -> int:
    """Remove the person from the lead's logged events; returns how many were changed."""
    rows = (
        await session.execute(
            sa.select(score_events.c.event_id, score_events.c.payload).where(
                score_events.c.lead_id == lead_id
            )
        )
    ).all()
    changed = [
        {"k_event_id": row.event_id, "v_payload": scrubbed(dict(row.payload))}
        for row in rows
        if scrubbed(dict(row.payload)) != row.payload
    ]
    if changed:
        await session.execute(
            sa.update(score_events)
            .where(score_events.c.event_id == sa.bindparam("k_event_id"))
            .values(payload=sa.bindparam("v_payload")),
            changed,
        )
    return len(changed)
