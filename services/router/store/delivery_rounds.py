"""A delivery round's reads and locks: claiming due rows with what they send, leasing them,
locking them again to record results, and each destination's rate-limit state."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from services.router.store.tables import PENDING, assignments, deliveries, destination_state, leads
from shared.db.bulk import BulkStatement, Values
from shared.db.statements import insert_ignore
from shared.db.types import UTCDateTime

# What a claim reads with each delivery: what destinations are sent of its assignment and
# lead (prefixed `a_`, `l_`; None when the row is gone), so a round needs no query per table.
ASSIGNMENT_PREFIX, LEAD_PREFIX = "a_", "l_"
CLAIMED_DELIVERY_COLUMNS = (
    "delivery_id",
    "assignment_id",
    "lead_id",
    "destination",
    "purpose",
    "claims",
    "progress",
)
CLAIMED_ASSIGNMENT_COLUMNS = (
    "assignment_id",
    "rep_id",
    "queue",
    "rule_id",
    "reason",
    "reassigned_from",
    "captured_at",
    "sla_due_at",
    "created_at",
)
CLAIMED_LEAD_COLUMNS = (
    "lead_id",
    "contact",
    "fields",
    "channel",
    "form_id",
    "form_type",
    "score",
    "grade",
)


@functools.cache
def _claim_query(limit: int, skip: bool, only: bool) -> sa.Select[Any]:
    now = sa.bindparam("now", type_=deliveries.c.next_attempt_at.type)
    query = (
        sa.select(
            *(deliveries.c[name] for name in CLAIMED_DELIVERY_COLUMNS),
            *(
                assignments.c[n].label(f"{ASSIGNMENT_PREFIX}{n}")
                for n in CLAIMED_ASSIGNMENT_COLUMNS
            ),
            *(leads.c[name].label(f"{LEAD_PREFIX}{name}") for name in CLAIMED_LEAD_COLUMNS),
        )
        .select_from(
            deliveries.outerjoin(
                assignments, assignments.c.assignment_id == deliveries.c.assignment_id
            ).outerjoin(leads, leads.c.lead_id == deliveries.c.lead_id)
        )
        .where(
            deliveries.c.status == PENDING,
            deliveries.c.next_attempt_at <= now,
            sa.or_(deliveries.c.claimed_until.is_(None), deliveries.c.claimed_until <= now),
        )
        .order_by(deliveries.c.next_attempt_at, deliveries.c.created_at)
        .limit(limit)
        .with_for_update(of=deliveries, skip_locked=True)
    )
    if skip:
        query = query.where(deliveries.c.destination.not_in(sa.bindparam("skip", expanding=True)))
    if only:
        query = query.where(deliveries.c.destination.in_(sa.bindparam("only", expanding=True)))
    return query


@functools.cache
def _lease_statement(dialect: str) -> BulkStatement:
    return BulkStatement.text(
        'UPDATE "deliveries" SET "claimed_until" = :until, "claims" = "claims" + 1'
        ' WHERE "delivery_id" = :delivery_id',
        ("until", "delivery_id"),
        dialect,
    )


async def claim_due(
    session: AsyncSession,
    dialect: str,
    now: datetime,
    lease_until: Callable[[int], datetime],
    limit: int,
    skip_destinations: Iterable[str] = (),
    only_destinations: Iterable[str] | None = None,
) -> list[sa.Row[Any]]:
    """Take up to `limit` due deliveries: locked, skipped by other replicas, leased.

    `lease_until(n)` says until when a claim of n rows is held; `only_destinations`,
    when given, limits the claim to those destinations. Rows hold the delivery's
    `CLAIMED_DELIVERY_COLUMNS` and its assignment's and lead's (see `ASSIGNMENT_PREFIX`).
    """
    skip = list(skip_destinations)
    params: dict[str, Any] = {"now": now}
    if skip:
        params["skip"] = skip
    if only_destinations is not None:
        params["only"] = list(only_destinations)
    query = _claim_query(limit, bool(skip), only_destinations is not None)
    rows = list((await session.execute(query, params)).all())
    if rows:
        until = Values(dialect).time(lease_until(len(rows)))
        await _lease_statement(dialect).run_async(
            session, [(until, row.delivery_id) for row in rows]
        )
    return rows


async def release_claims(session: AsyncSession) -> int:
    """Let go of every lease on a pending delivery; returns how many were held."""
    result = await session.execute(
        sa.update(deliveries)
        .where(deliveries.c.status == PENDING, deliveries.c.claimed_until.is_not(None))
        .values(claimed_until=None)
    )
    return int(getattr(result, "rowcount", 0) or 0)


async def lock_deliveries(session: AsyncSession, delivery_ids: Iterable[str]) -> dict[str, Any]:
    """What recording an attempt reads of these deliveries, locked until commit, by id."""
    ids = list(dict.fromkeys(delivery_ids))
    if not ids:
        return {}
    rows = await session.execute(_LOCK_DELIVERIES, {"ids": ids})
    return {row.delivery_id: row for row in rows.all()}


_LOCK_DELIVERIES = (
    sa.select(
        *(
            deliveries.c[name]
            for name in (
                "delivery_id",
                "assignment_id",
                "lead_id",
                "destination",
                "purpose",
                "status",
                "attempts",
                "progress",
                "created_at",
            )
        )
    )
    .where(deliveries.c.delivery_id.in_(sa.bindparam("ids", expanding=True)))
    .with_for_update()
)


# Destination rate limits ---------------------------------------------------------------


async def destination_row(
    session: AsyncSession, dialect: str, destination: str, now: datetime
) -> sa.Row[Any]:
    """The destination's rate-limit row, locked until commit."""
    await session.execute(
        insert_ignore(destination_state, dialect, "destination").values(
            destination=destination, sent=[], paused_until=None, updated_at=now
        )
    )
    return (
        await session.execute(
            sa.select(destination_state)
            .where(destination_state.c.destination == destination)
            .with_for_update()
        )
    ).one()


async def paused_destinations(session: AsyncSession, now: datetime) -> list[str]:
    rows = await session.execute(_PAUSED, {"now": now})
    return list(rows.scalars())


_PAUSED = sa.select(destination_state.c.destination).where(
    destination_state.c.paused_until
    > sa.bindparam("now", type_=destination_state.c.paused_until.type)
)


async def save_destination_state(session: AsyncSession, destination: str, **values: Any) -> None:
    await session.execute(
        sa.update(destination_state)
        .where(destination_state.c.destination == destination)
        .values(**values)
    )


async def update_deliveries(
    session: AsyncSession, dialect: str, changes: Sequence[tuple[str, dict[str, Any]]]
) -> None:
    """Apply (delivery_id, values) pairs: one statement per distinct set of columns."""
    groups: dict[tuple[str, ...], list[tuple[Any, ...]]] = {}
    convert = Values(dialect)
    for delivery_id, values in changes:
        columns = tuple(values)
        groups.setdefault(columns, []).append(
            (*(_stored(convert, c, values[c]) for c in columns), delivery_id)
        )
    for columns, rows in groups.items():
        await _update_statement(dialect, columns).run_async(session, rows)


_DELIVERY_TIMES = {c.name for c in deliveries.columns if isinstance(c.type, UTCDateTime)}


def _stored(convert: Values, column: str, value: Any) -> Any:
    """A delivery column's value as the driver stores it (see shared.db.bulk)."""
    if column in _DELIVERY_TIMES:
        return convert.time(value)
    if column == "progress":
        return convert.json(value)
    return value


@functools.cache
def _update_statement(dialect: str, columns: tuple[str, ...]) -> BulkStatement:
    return BulkStatement.update(deliveries, columns, "delivery_id", dialect)
