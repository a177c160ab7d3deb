"""The send queue's queries: queue, claim, record, list; and the shared send-rate window.

The send queue *is* the scheduler: every due email is a row of `store.sends` with the
time it may go out (`next_attempt_at`). These flush, never commit.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from services.nurture.store import (
    CANCELLED,
    CONFIRM,
    RATE_KEY,
    SCHEDULED,
    SENDING,
    SENT,
    STEP,
    send_state,
    sends,
)
from shared.db.rows import newest_rows, row_by_key
from shared.db.statements import insert_ignore


async def insert_send(session: AsyncSession, **values: Any) -> None:
    values.setdefault("claims", 0)
    values.setdefault("attempts", 0)
    values.setdefault("links", {})
    values.setdefault("clicked_links", [])
    values.setdefault("opens", 0)
    values.setdefault("clicks", 0)
    values.setdefault("next_attempt_at", values["due_at"])
    await session.execute(sa.insert(sends).values(**values))


async def get_send(
    session: AsyncSession, send_id: str, *, for_update: bool = False
) -> sa.Row[Any] | None:
    return await row_by_key(session, sends.c.send_id, send_id, for_update=for_update)


async def update_send(session: AsyncSession, send_id: str, **values: Any) -> int:
    result = await session.execute(
        sa.update(sends).where(sends.c.send_id == send_id).values(**values)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


async def lead_sends(
    session: AsyncSession, lead_id: str, *, kind: str | None = None
) -> list[sa.Row[Any]]:
    query = sa.select(sends).where(sends.c.lead_id == lead_id).order_by(sends.c.created_at)
    if kind:
        query = query.where(sends.c.kind == kind)
    return list((await session.execute(query)).all())


async def cancel_sends(
    session: AsyncSession,
    lead_id: str,
    reason: str,
    now: datetime,
    *,
    enrollment_ids: Iterable[str] | None = None,
    kinds: Iterable[str] = (STEP, CONFIRM),
) -> int:
    """Scheduled sends of the lead (of these enrollments) will not go out."""
    query = sa.update(sends).where(
        sends.c.lead_id == lead_id,
        sends.c.status == SCHEDULED,
        sends.c.kind.in_(list(kinds)),
    )
    if enrollment_ids is not None:
        query = query.where(sends.c.enrollment_id.in_(list(enrollment_ids)))
    result = await session.execute(
        query.values(status=CANCELLED, ended_at=now, last_error=reason, claimed_until=None)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


async def claim_candidates(session: AsyncSession, now: datetime, limit: int) -> list[sa.Row[Any]]:
    """Due scheduled sends, locked; other replicas skip them (SKIP LOCKED)."""
    rows = await session.execute(
        sa.select(sends)
        .where(sends.c.status == SCHEDULED, sends.c.next_attempt_at <= now)
        .order_by(sends.c.next_attempt_at, sends.c.created_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return list(rows.all())


async def mark_sending(
    session: AsyncSession, send_id: str, claims: int, lease_until: datetime, **values: Any
) -> bool:
    """Claim one send: only a row still scheduled with the claim count we read is taken."""
    result = await session.execute(
        sa.update(sends)
        .where(sends.c.send_id == send_id, sends.c.status == SCHEDULED, sends.c.claims == claims)
        .values(status=SENDING, claimed_until=lease_until, claims=claims + 1, **values)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def interrupted_sends(session: AsyncSession, now: datetime, limit: int) -> list[sa.Row[Any]]:
    """Sends whose sender stopped mid-way (the lease ran out), locked."""
    rows = await session.execute(
        sa.select(sends)
        .where(sends.c.status == SENDING, sends.c.claimed_until <= now)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return list(rows.all())


async def recent_step_sends(
    session: AsyncSession, lead_ids: Iterable[str], since: datetime
) -> dict[str, list[datetime]]:
    """When each lead was last sent sequence emails (in flight ones count as now)."""
    ids = list(set(lead_ids))
    if not ids:
        return {}
    rows = await session.execute(
        sa.select(sends.c.lead_id, sends.c.status, sends.c.sent_at).where(
            sends.c.lead_id.in_(ids),
            sends.c.kind == STEP,
            sa.or_(
                sa.and_(sends.c.status == SENT, sends.c.sent_at > since),
                sends.c.status == SENDING,
            ),
        )
    )
    out: dict[str, list[datetime]] = {}
    for lead_id, status, sent_at in rows.all():
        out.setdefault(lead_id, []).append(sent_at if status == SENT and sent_at else since)
    return out


async def next_due_at(session: AsyncSession) -> datetime | None:
    return (
        await session.execute(
            sa.select(sa.func.min(sends.c.next_attempt_at)).where(sends.c.status == SCHEDULED)
        )
    ).scalar_one_or_none()


async def due_count(session: AsyncSession, now: datetime) -> int:
    return int(
        (
            await session.execute(
                sa.select(sa.func.count())
                .select_from(sends)
                .where(sends.c.status == SCHEDULED, sends.c.next_attempt_at <= now)
            )
        ).scalar_one()
    )


async def list_sends(
    session: AsyncSession,
    *,
    status: str | None = None,
    lead_id: str | None = None,
    limit: int = 100,
) -> list[sa.Row[Any]]:
    """The newest emails first, of those matching every filter given."""
    return await newest_rows(session, sends.c.created_at, limit, status=status, lead_id=lead_id)


# Send-rate window ----------------------------------------------------------------------


async def rate_window(session: AsyncSession, dialect: str, now: datetime) -> list[float]:
    """Recent send times (Unix seconds), the row locked until commit."""
    await session.execute(
        insert_ignore(send_state, dialect, "key").values(key=RATE_KEY, sent=[], updated_at=now)
    )
    row = (
        await session.execute(
            sa.select(send_state.c.sent).where(send_state.c.key == RATE_KEY).with_for_update()
        )
    ).scalar_one()
    return [float(t) for t in (row or [])]


async def save_rate_window(session: AsyncSession, sent: list[float], now: datetime) -> None:
    await session.execute(
        sa.update(send_state).where(send_state.c.key == RATE_KEY).values(sent=sent, updated_at=now)
    )


async def forget_links(session: AsyncSession, lead_id: str) -> None:
    """Clear the links of the lead's emails (they may carry personal data)."""
    await session.execute(sa.update(sends).where(sends.c.lead_id == lead_id).values(links={}))
