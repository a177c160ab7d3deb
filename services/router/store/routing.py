"""Assignments and what routing decisions read: the routing lock, strategy state, rep loads."""

from __future__ import annotations

import functools
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from services.router.store.tables import ACTIVE, LOCK_KEY, assignments, routing_state, row_by_key
from shared.db.rows import rows_by_key
from shared.db.statements import insert_ignore

_UPDATE_STATE = sa.update(routing_state).where(routing_state.c.key == sa.bindparam("key_"))
_LOCK_QUERY = (
    sa.select(routing_state.c.key).where(routing_state.c.key == LOCK_KEY).with_for_update()
)


async def lock_routing(session: AsyncSession, dialect: str, now: datetime) -> None:
    """Serialize routing decisions across replicas (a row lock held until commit)."""
    if (await session.execute(_LOCK_QUERY)).first() is not None:
        return
    # First routing ever: create the lock row, then lock it.
    await session.execute(
        insert_ignore(routing_state, dialect, "key").values(key=LOCK_KEY, state={}, updated_at=now)
    )
    await session.execute(_LOCK_QUERY)


async def strategy_states(session: AsyncSession) -> dict[str, dict[str, Any]]:
    rows = await session.execute(sa.select(routing_state.c.key, routing_state.c.state))
    return {key: dict(state or {}) for key, state in rows.all() if key != LOCK_KEY}


async def save_strategy_state(
    session: AsyncSession, dialect: str, key: str, state: dict[str, Any], now: datetime
) -> None:
    result = await session.execute(_UPDATE_STATE, {"key_": key, "state": state, "updated_at": now})
    if result.rowcount == 0:  # type: ignore[attr-defined]
        await session.execute(sa.insert(routing_state).values(key=key, state=state, updated_at=now))


async def loads_since(session: AsyncSession, starts: dict[str, datetime]) -> dict[str, int]:
    """Leads each rep was given since their day started (reassigned-away ones do not count)."""
    counts = dict.fromkeys(starts, 0)
    if not starts:
        return counts
    params: dict[str, Any] = {}
    for n, (rep_id, since) in enumerate(starts.items()):
        params[f"rep_{n}"], params[f"since_{n}"] = rep_id, since
    rows = await session.execute(_loads_query(len(starts)), params)
    for rep_id, count in rows.all():
        counts[rep_id] = int(count)
    return counts


@functools.cache
def _loads_query(reps: int) -> sa.CompoundSelect[Any]:
    """Assignments per rep since a per-rep time (`rep_<n>`, `since_<n>` parameters): one
    range of `ix_assignments_rep_load` per rep, no table row read."""
    return sa.union_all(
        *(
            sa.select(assignments.c.rep_id, sa.func.count())
            .where(
                assignments.c.rep_id == sa.bindparam(f"rep_{n}"),
                assignments.c.created_at
                >= sa.bindparam(f"since_{n}", type_=assignments.c.created_at.type),
                assignments.c.status != "reassigned",
            )
            .group_by(assignments.c.rep_id)
            for n in range(reps)
        )
    )


async def active_assignment(session: AsyncSession, lead_id: str) -> sa.Row[Any] | None:
    return (
        await session.execute(
            sa.select(assignments)
            .where(assignments.c.lead_id == lead_id, assignments.c.status.in_(ACTIVE))
            .order_by(assignments.c.created_at.desc())
            .limit(1)
        )
    ).first()


async def insert_assignment(session: AsyncSession, **values: Any) -> None:
    await session.execute(_INSERT_ASSIGNMENT, values)


_INSERT_ASSIGNMENT = sa.insert(assignments)


async def get_assignment(
    session: AsyncSession, assignment_id: str, *, for_update: bool = False
) -> sa.Row[Any] | None:
    return await row_by_key(
        session, assignments.c.assignment_id, assignment_id, for_update=for_update
    )


async def lead_assignments(session: AsyncSession, lead_id: str) -> list[sa.Row[Any]]:
    """The lead's assignments, oldest first."""
    return await rows_by_key(
        session,
        assignments.c.lead_id,
        lead_id,
        assignments.c.created_at,
        assignments.c.reassignments,
    )


async def update_assignment(session: AsyncSession, assignment_id: str, **values: Any) -> int:
    result = await session.execute(
        sa.update(assignments).where(assignments.c.assignment_id == assignment_id).values(**values)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]
