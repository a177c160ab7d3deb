"""The router's tables and queries: leads, assignments, the delivery queue, strategy state.

Repositories flush, never commit; the unit of work commits.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from shared.db import add_plumbing_tables, make_metadata
from shared.db.bulk import BulkStatement, Values
from shared.db.engine import insert_ignore
from shared.db.types import JSONType, UTCDateTime

metadata = make_metadata()
outbox, inbox = add_plumbing_tables(metadata)

# The lead as the router last saw it (from lead.scored): what destinations are sent.
leads = sa.Table(
    "leads",
    metadata,
    sa.Column("lead_id", sa.String(64), primary_key=True),
    sa.Column("email", sa.String(320), nullable=True, index=True),
    sa.Column("contact", JSONType(), nullable=False),
    sa.Column("fields", JSONType(), nullable=False),
    sa.Column("channel", sa.String(100), nullable=False),
    sa.Column("form_id", sa.String(200), nullable=True),
    sa.Column("form_type", sa.String(100), nullable=True),
    sa.Column("score", sa.Float, nullable=True),
    sa.Column("grade", sa.String(8), nullable=True),
    sa.Column("is_test", sa.Boolean, nullable=False, default=False),
    sa.Column("captured_at", UTCDateTime(), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    sa.Column("erased_at", UTCDateTime(), nullable=True),
)

ACTIVE = ("open", "acknowledged", "queued")

assignments = sa.Table(
    "assignments",
    metadata,
    sa.Column("assignment_id", sa.String(36), primary_key=True),
    sa.Column("lead_id", sa.String(64), nullable=False, index=True),
    sa.Column("rep_id", sa.String(100), nullable=True, index=True),
    sa.Column("queue", sa.String(100), nullable=True),
    sa.Column("rule_id", sa.String(100), nullable=False),
    # open → acknowledged | reassigned (SLA breach) | closed (outcome); queued: no rep.
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("reason", JSONType(), nullable=False),
    sa.Column("reassigned_from", sa.String(36), nullable=True),
    sa.Column("reassignments", sa.Integer, nullable=False, default=0),
    sa.Column("cause_event_id", sa.String(200), nullable=True),
    sa.Column("captured_at", UTCDateTime(), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False, index=True),
    sa.Column("sla_due_at", UTCDateTime(), nullable=True, index=True),
    sa.Column("acknowledged_at", UTCDateTime(), nullable=True),
    sa.Column("breached_at", UTCDateTime(), nullable=True),
    sa.Column("delivered_at", UTCDateTime(), nullable=True),
    sa.Column("closed_at", UTCDateTime(), nullable=True),
)

# Strategy state per rule (round-robin cursor, weighted credits) and the routing lock row.
routing_state = sa.Table(
    "routing_state",
    metadata,
    sa.Column("key", sa.String(100), primary_key=True),
    sa.Column("state", JSONType(), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
)

PENDING, DELIVERED, FAILED, CANCELLED = "pending", "delivered", "failed", "cancelled"

# The delivery queue: one row per (assignment, destination, purpose).
deliveries = sa.Table(
    "deliveries",
    metadata,
    sa.Column("delivery_id", sa.String(36), primary_key=True),
    sa.Column("assignment_id", sa.String(36), nullable=False, index=True),
    sa.Column("lead_id", sa.String(64), nullable=False, index=True),
    sa.Column("destination", sa.String(100), nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("purpose", sa.String(16), nullable=False),  # assigned | reassigned | escalation
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("claims", sa.Integer, nullable=False, default=0),
    sa.Column("next_attempt_at", UTCDateTime(), nullable=False),
    sa.Column("claimed_until", UTCDateTime(), nullable=True),
    sa.Column("last_error", sa.Text, nullable=True),
    sa.Column("last_status", sa.Integer, nullable=True),
    sa.Column("external_id", sa.String(200), nullable=True, index=True),
    # Progress of multi-step destinations (Pipedrive: the person id once created).
    sa.Column("progress", JSONType(), nullable=False),
    sa.Column("redrives", sa.Integer, nullable=False, default=0),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("delivered_at", UTCDateTime(), nullable=True),
    sa.Column("failed_at", UTCDateTime(), nullable=True),
    sa.UniqueConstraint("assignment_id", "destination", "purpose"),
    sa.Index("ix_deliveries_due", "status", "next_attempt_at"),
)

# Per-destination rate limit (a rolling window of request times) and pauses (429, quotas).
destination_state = sa.Table(
    "destination_state",
    metadata,
    sa.Column("destination", sa.String(100), primary_key=True),
    sa.Column("sent", JSONType(), nullable=False),
    sa.Column("paused_until", UTCDateTime(), nullable=True),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
)

outcomes = sa.Table(
    "outcomes",
    metadata,
    sa.Column("outcome_id", sa.String(200), primary_key=True),
    sa.Column("lead_id", sa.String(64), nullable=False, index=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("received_at", UTCDateTime(), nullable=False),
)

LOCK_KEY = "__routing_lock__"
_UPDATE_STATE = sa.update(routing_state).where(routing_state.c.key == sa.bindparam("key_"))
_LOCK_QUERY = (
    sa.select(routing_state.c.key).where(routing_state.c.key == LOCK_KEY).with_for_update()
)


# Leads ---------------------------------------------------------------------------------

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
    return (await session.execute(sa.select(leads).where(leads.c.lead_id == lead_id))).first()


async def get_leads(session: AsyncSession, lead_ids: Iterable[str]) -> dict[str, sa.Row[Any]]:
    """Several leads in one query, by id (missing ones are absent)."""
    ids = list(dict.fromkeys(lead_ids))
    if not ids:
        return {}
    rows = await session.execute(sa.select(leads).where(leads.c.lead_id.in_(ids)))
    return {row.lead_id: row for row in rows.all()}


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


# Assignments ---------------------------------------------------------------------------


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
def _loads_query(reps: int) -> sa.Select[Any]:
    """Assignments per rep since a per-rep time (`rep_<n>`, `since_<n>` parameters)."""
    return (
        sa.select(assignments.c.rep_id, sa.func.count())
        .where(
            sa.or_(
                *(
                    sa.and_(
                        assignments.c.rep_id == sa.bindparam(f"rep_{n}"),
                        assignments.c.created_at
                        >= sa.bindparam(f"since_{n}", type_=assignments.c.created_at.type),
                    )
                    for n in range(reps)
                )
            ),
            assignments.c.status != "reassigned",
        )
        .group_by(assignments.c.rep_id)
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
    query = sa.select(assignments).where(assignments.c.assignment_id == assignment_id)
    if for_update:
        query = query.with_for_update()
    return (await session.execute(query)).first()


async def get_assignments(
    session: AsyncSession, assignment_ids: Iterable[str]
) -> dict[str, sa.Row[Any]]:
    """Several assignments in one query, by id (missing ones are absent)."""
    ids = list(dict.fromkeys(assignment_ids))
    if not ids:
        return {}
    rows = await session.execute(sa.select(assignments).where(assignments.c.assignment_id.in_(ids)))
    return {row.assignment_id: row for row in rows.all()}


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


async def lead_assignments(session: AsyncSession, lead_id: str) -> list[sa.Row[Any]]:
    rows = await session.execute(
        sa.select(assignments)
        .where(assignments.c.lead_id == lead_id)
        .order_by(assignments.c.created_at, assignments.c.reassignments)
    )
    return list(rows.all())


async def update_assignment(session: AsyncSession, assignment_id: str, **values: Any) -> int:
    result = await session.execute(
        sa.update(assignments).where(assignments.c.assignment_id == assignment_id).values(**values)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


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


async def close_assignments(session: AsyncSession, lead_id: str, now: datetime) -> None:
    await session.execute(
        sa.update(assignments)
        .where(assignments.c.lead_id == lead_id, assignments.c.status.in_(ACTIVE))
        .values(status="closed", closed_at=now, sla_due_at=None)
    )


# Deliveries ----------------------------------------------------------------------------


async def enqueue_deliveries(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    if rows:
        await session.execute(sa.insert(deliveries), list(rows))


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
    mark = "$1" if dialect == "postgresql" else "?"
    key = "$2" if dialect == "postgresql" else "?"
    return BulkStatement(
        f'UPDATE "deliveries" SET "claimed_until" = {mark}, "claims" = "claims" + 1'
        f' WHERE "delivery_id" = {key}',
        ("claimed_until", "delivery_id"),
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


async def next_due_at(session: AsyncSession) -> datetime | None:
    return (
        await session.execute(
            sa.select(sa.func.min(deliveries.c.next_attempt_at)).where(
                deliveries.c.status == PENDING
            )
        )
    ).scalar_one_or_none()


async def get_delivery(
    session: AsyncSession, delivery_id: str, *, for_update: bool = False
) -> sa.Row[Any] | None:
    query = sa.select(deliveries).where(deliveries.c.delivery_id == delivery_id)
    if for_update:
        query = query.with_for_update()
    return (await session.execute(query)).first()


async def get_deliveries(
    session: AsyncSession, delivery_ids: Iterable[str], *, for_update: bool = False
) -> dict[str, sa.Row[Any]]:
    """Several deliveries in one query, by id (missing ones are absent)."""
    ids = list(dict.fromkeys(delivery_ids))
    if not ids:
        return {}
    query = _SELECT_DELIVERIES_FOR_UPDATE if for_update else _SELECT_DELIVERIES
    rows = await session.execute(query, {"ids": ids})
    return {row.delivery_id: row for row in rows.all()}


_SELECT_DELIVERIES = sa.select(deliveries).where(
    deliveries.c.delivery_id.in_(sa.bindparam("ids", expanding=True))
)
_SELECT_DELIVERIES_FOR_UPDATE = _SELECT_DELIVERIES.with_for_update()


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


async def update_delivery(session: AsyncSession, delivery_id: str, **values: Any) -> None:
    await session.execute(
        sa.update(deliveries).where(deliveries.c.delivery_id == delivery_id).values(**values)
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


async def undelivered_count(session: AsyncSession, assignment_id: str) -> int:
    return (
        await session.execute(
            sa.select(sa.func.count())
            .select_from(deliveries)
            .where(
                deliveries.c.assignment_id == assignment_id,
                deliveries.c.purpose != "escalation",
                deliveries.c.status != DELIVERED,
            )
        )
    ).scalar_one()


async def list_deliveries(
    session: AsyncSession,
    *,
    status: str | None = None,
    lead_id: str | None = None,
    assignment_id: str | None = None,
    destination: str | None = None,
    limit: int = 100,
) -> list[sa.Row[Any]]:
    query = sa.select(deliveries).order_by(deliveries.c.created_at.desc()).limit(limit)
    if status:
        query = query.where(deliveries.c.status == status)
    if lead_id:
        query = query.where(deliveries.c.lead_id == lead_id)
    if assignment_id:
        query = query.where(deliveries.c.assignment_id == assignment_id)
    if destination:
        query = query.where(deliveries.c.destination == destination)
    return list((await session.execute(query)).all())


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
    rows = await session.execute(
        sa.select(destination_state.c.destination).where(destination_state.c.paused_until > now)
    )
    return list(rows.scalars())


async def save_destination_state(session: AsyncSession, destination: str, **values: Any) -> None:
    await session.execute(
        sa.update(destination_state)
        .where(destination_state.c.destination == destination)
        .values(**values)
    )


# Outcomes ------------------------------------------------------------------------------


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
