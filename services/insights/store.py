"""Insights' tables and queries: the per-lead read model, touches, conversions, spend.

The read model holds no PII: ids, channel, grade, timestamps and amounts only,
so an erased lead stays counted with nothing left to forget. Money is stored
as integer ten-thousandths (exact on both databases). Repositories flush,
never commit; the unit of work commits.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from services.insights.domain import (
    GRADES,
    ChannelFacts,
    DaySpend,
    LeadFacts,
    Window,
    from_units,
    to_units,
)
from shared.db import add_plumbing_tables, make_metadata
from shared.db.engine import upsert
from shared.db.types import UTCDateTime, utcnow

metadata = make_metadata()
outbox, inbox = add_plumbing_tables(metadata)

leads = sa.Table(
    "leads",
    metadata,
    sa.Column("lead_id", sa.String(64), primary_key=True),
    sa.Column("channel", sa.String(100), nullable=True, index=True),
    sa.Column("channel_rank", sa.SmallInteger, nullable=False, default=0),
    sa.Column("captured_at", UTCDateTime(), nullable=True, index=True),
    sa.Column("is_test", sa.Boolean, nullable=False, default=False),
    sa.Column("grade", sa.String(8), nullable=True),
    sa.Column("graded_at", UTCDateTime(), nullable=True),
    sa.Column("sales_ready_at", UTCDateTime(), nullable=True),
    sa.Column("routed_at", UTCDateTime(), nullable=True),
    sa.Column("speed_to_lead_ms", sa.BigInteger, nullable=True),
    sa.Column("converted_at", UTCDateTime(), nullable=True),
    sa.Column("disqualified_at", UTCDateTime(), nullable=True),
    sa.Column("engaged_at", UTCDateTime(), nullable=True),
    sa.Column("unsubscribed_at", UTCDateTime(), nullable=True),
    sa.Column("delivery_failed_at", UTCDateTime(), nullable=True),
    sa.Column("erased_at", UTCDateTime(), nullable=True),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
)

# One row per submission: repeat touches count for the channel they came through.
touches = sa.Table(
    "touches",
    metadata,
    sa.Column("submission_id", sa.String(64), primary_key=True),
    sa.Column("lead_id", sa.String(64), nullable=False, index=True),
    sa.Column("channel", sa.String(100), nullable=False),
    sa.Column("is_new_lead", sa.Boolean, nullable=False),
    sa.Column("is_test", sa.Boolean, nullable=False),
    sa.Column("cost_units", sa.BigInteger, nullable=True),
    sa.Column("captured_at", UTCDateTime(), nullable=False, index=True),
)

# One row per CRM outcome (deal): a lead may be won more than once.
conversions = sa.Table(
    "conversions",
    metadata,
    sa.Column("lead_id", sa.String(64), primary_key=True),
    sa.Column("outcome_id", sa.String(200), primary_key=True),
    sa.Column("value_units", sa.BigInteger, nullable=False),
    sa.Column("currency", sa.String(16), nullable=False),
    sa.Column("occurred_at", UTCDateTime(), nullable=False),
)

# Spend posted per channel and day; overrides the config for that day.
channel_spend = sa.Table(
    "channel_spend",
    metadata,
    sa.Column("channel", sa.String(100), primary_key=True),
    sa.Column("day", sa.Date, primary_key=True),
    sa.Column("amount_units", sa.BigInteger, nullable=False),
    sa.Column("impressions", sa.BigInteger, nullable=True),
    sa.Column("clicks", sa.BigInteger, nullable=True),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
)

_FACT_COLUMNS = tuple(f.name for f in dataclasses.fields(LeadFacts))


def _dialect_module(dialect: str) -> Any:
    return postgresql if dialect == "postgresql" else sqlite


# The hot-path statements are built once per dialect and reused with bound
# parameters: SQLAlchemy then skips statement construction and cache-key work.
_lock_statements: dict[str, Any] = {}
_touch_statements: dict[str, Any] = {}
_conversion_statements: dict[str, Any] = {}

_save_statement = (
    sa.update(leads)
    .where(leads.c.lead_id == sa.bindparam("key_lead_id"))
    .values({name: sa.bindparam(f"new_{name}") for name in (*_FACT_COLUMNS, "updated_at")})
)


def _lock_statement(dialect: str) -> Any:
    """INSERT the lead's row if new, else a no-op update that locks it; RETURNING its facts."""
    statement = _lock_statements.get(dialect)
    if statement is None:
        insert = _dialect_module(dialect).insert(leads)
        statement = (
            insert.values(
                lead_id=sa.bindparam("lead_id"),
                channel_rank=0,
                is_test=False,
                updated_at=sa.bindparam("updated_at"),
            )
            .on_conflict_do_update(
                index_elements=["lead_id"], set_={"lead_id": insert.excluded.lead_id}
            )
            .returning(*(leads.c[name] for name in _FACT_COLUMNS))
        )
        _lock_statements[dialect] = statement
    return statement


def _touch_statement(dialect: str) -> Any:
    statement = _touch_statements.get(dialect)
    if statement is None:
        statement = (
            _dialect_module(dialect)
            .insert(touches)
            .values({c.name: sa.bindparam(c.name) for c in touches.columns})
            .on_conflict_do_nothing(index_elements=["submission_id"])
        )
        _touch_statements[dialect] = statement
    return statement


def _conversion_statement(dialect: str) -> Any:
    statement = _conversion_statements.get(dialect)
    if statement is None:
        statement = (
            _dialect_module(dialect)
            .insert(conversions)
            .values({c.name: sa.bindparam(c.name) for c in conversions.columns})
            .on_conflict_do_nothing(index_elements=["lead_id", "outcome_id"])
        )
        _conversion_statements[dialect] = statement
    return statement


async def lock_lead(session: AsyncSession, dialect: str, lead_id: str) -> LeadFacts:
    """The lead's facts, its row created if new and locked until the transaction ends.

    Events of one lead arrive on several topics, which different replicas may
    consume at once; the row lock makes their read-merge-write updates queue.
    One statement: INSERT ... ON CONFLICT DO UPDATE locks an existing row on
    PostgreSQL as SELECT ... FOR UPDATE would (SQLite serializes writers anyway).
    """
    row = (
        await session.execute(
            _lock_statement(dialect), {"lead_id": lead_id, "updated_at": utcnow()}
        )
    ).one()
    return LeadFacts(*row)


async def save_lead(session: AsyncSession, lead_id: str, facts: LeadFacts) -> None:
    """Write the lead's merged facts."""
    params: dict[str, Any] = {f"new_{name}": getattr(facts, name) for name in _FACT_COLUMNS}
    params["new_updated_at"] = utcnow()
    params["key_lead_id"] = lead_id
    await session.execute(_save_statement, params)


_insert_statements: dict[str, Any] = {}

_save_if_statement = (
    sa.update(leads)
    .where(
        leads.c.lead_id == sa.bindparam("key_lead_id"),
        *(
            leads.c[name].is_not_distinct_from(sa.bindparam(f"old_{name}"))
            for name in _FACT_COLUMNS
        ),
    )
    .values({name: sa.bindparam(f"new_{name}") for name in (*_FACT_COLUMNS, "updated_at")})
)


def _insert_statement(dialect: str) -> Any:
    statement = _insert_statements.get(dialect)
    if statement is None:
        statement = (
            _dialect_module(dialect)
            .insert(leads)
            .values({c.name: sa.bindparam(c.name) for c in leads.columns})
            .on_conflict_do_nothing(index_elements=["lead_id"])
        )
        _insert_statements[dialect] = statement
    return statement


async def insert_lead(session: AsyncSession, dialect: str, lead_id: str, facts: LeadFacts) -> bool:
    """Create the lead's row with `facts`; False (nothing written) when it exists already."""
    params: dict[str, Any] = {name: getattr(facts, name) for name in _FACT_COLUMNS}
    params["lead_id"] = lead_id
    params["updated_at"] = utcnow()
    result: Any = await session.execute(_insert_statement(dialect), params)
    return bool(result.rowcount == 1)


async def save_lead_if(
    session: AsyncSession, lead_id: str, expected: LeadFacts, facts: LeadFacts
) -> bool:
    """Write `facts` only if the row still holds exactly `expected`; False when it does not.

    The row is compared column by column in the database, so a stale `expected`
    can never overwrite newer facts: the caller falls back to lock_lead.
    """
    params: dict[str, Any] = {f"new_{name}": getattr(facts, name) for name in _FACT_COLUMNS}
    for name in _FACT_COLUMNS:
        params[f"old_{name}"] = getattr(expected, name)
    params["new_updated_at"] = utcnow()
    params["key_lead_id"] = lead_id
    result: Any = await session.execute(_save_if_statement, params)
    return bool(result.rowcount == 1)


async def add_touch(
    session: AsyncSession,
    dialect: str,
    *,
    submission_id: str,
    lead_id: str,
    channel: str,
    is_new_lead: bool,
    is_test: bool,
    cost_units: int | None,
    captured_at: datetime,
) -> None:
    """Record one submission (once, however often it is delivered)."""
    await session.execute(
        _touch_statement(dialect),
        {
            "submission_id": submission_id,
            "lead_id": lead_id,
            "channel": channel,
            "is_new_lead": is_new_lead,
            "is_test": is_test,
            "cost_units": cost_units,
            "captured_at": captured_at,
        },
    )


async def add_conversion(
    session: AsyncSession,
    dialect: str,
    *,
    lead_id: str,
    outcome_id: str,
    value_units: int,
    currency: str,
    occurred_at: datetime,
) -> None:
    """Record one won deal (once per outcome id)."""
    await session.execute(
        _conversion_statement(dialect),
        {
            "lead_id": lead_id,
            "outcome_id": outcome_id,
            "value_units": value_units,
            "currency": currency,
            "occurred_at": occurred_at,
        },
    )


async def put_spend(session: AsyncSession, dialect: str, channel: str, spend: DaySpend) -> None:
    """Store (or replace) a channel's spend of one day."""
    values = {
        "channel": channel,
        "day": spend.day,
        "amount_units": to_units(spend.amount),
        "impressions": spend.impressions,
        "clicks": spend.clicks,
        "updated_at": utcnow(),
    }
    await session.execute(
        upsert(
            channel_spend,
            dialect,
            ["channel", "day"],
            values,
            {k: v for k, v in values.items() if k not in ("channel", "day")},
        )
    )


async def posted_spend(
    session: AsyncSession, first_day: date, last_day: date, channel: str | None = None
) -> dict[str, list[DaySpend]]:
    """Posted spend per channel for the days first_day … last_day."""
    query = sa.select(channel_spend).where(channel_spend.c.day.between(first_day, last_day))
    if channel is not None:
        query = query.where(channel_spend.c.channel == channel)
    out: dict[str, list[DaySpend]] = defaultdict(list)
    for row in (await session.execute(query.order_by(channel_spend.c.day))).all():
        out[row.channel].append(
            DaySpend(row.day, from_units(row.amount_units), row.impressions, row.clicks)
        )
    return dict(out)


def _in_window(column: Any, window: Window) -> Any:
    return sa.and_(column >= window.start, column < window.end)


def _count_if(condition: Any) -> Any:
    return sa.func.sum(sa.case((condition, 1), else_=0))


async def channel_facts(
    session: AsyncSession, window: Window, currency: str
) -> dict[str, ChannelFacts]:
    """Counted facts per channel for leads captured in the window (test leads left out).

    Revenue in `currency` is summed; won value in other currencies is kept apart.
    """
    counted = sa.and_(
        leads.c.channel.is_not(None),
        leads.c.is_test.is_(False),
        _in_window(leads.c.captured_at, window),
    )
    query = (
        sa.select(
            leads.c.channel,
            sa.func.count().label("leads"),
            *(_count_if(leads.c.grade == grade).label(grade) for grade in GRADES),
            _count_if(leads.c.sales_ready_at.is_not(None)).label("sales_ready"),
            _count_if(leads.c.routed_at.is_not(None)).label("routed"),
            _count_if(leads.c.converted_at.is_not(None)).label("converted"),
            _count_if(leads.c.disqualified_at.is_not(None)).label("disqualified"),
            _count_if(leads.c.engaged_at.is_not(None)).label("engaged"),
            _count_if(leads.c.unsubscribed_at.is_not(None)).label("unsubscribed"),
            _count_if(leads.c.delivery_failed_at.is_not(None)).label("delivery_failed"),
            _count_if(leads.c.erased_at.is_not(None)).label("erased"),
        )
        .where(counted)
        .group_by(leads.c.channel)
    )
    facts: dict[str, ChannelFacts] = defaultdict(ChannelFacts)
    for row in (await session.execute(query)).all():
        facts[row.channel] = ChannelFacts(
            leads=row.leads,
            grades={grade: int(getattr(row, grade) or 0) for grade in GRADES},
            sales_ready=int(row.sales_ready or 0),
            routed=int(row.routed or 0),
            converted=int(row.converted or 0),
            disqualified=int(row.disqualified or 0),
            engaged=int(row.engaged or 0),
            unsubscribed=int(row.unsubscribed or 0),
            delivery_failed=int(row.delivery_failed or 0),
            erased=int(row.erased or 0),
        )

    real_touches = sa.and_(touches.c.is_test.is_(False), _in_window(touches.c.captured_at, window))
    touch_query = (
        sa.select(
            touches.c.channel,
            _count_if(touches.c.is_new_lead.is_(False)).label("repeats"),
            sa.func.coalesce(sa.func.sum(touches.c.cost_units), 0).label("cost_units"),
        )
        .where(real_touches)
        .group_by(touches.c.channel)
    )
    for row in (await session.execute(touch_query)).all():
        facts[row.channel].repeat_touches = int(row.repeats or 0)
        facts[row.channel].lead_cost_units = int(row.cost_units or 0)

    revenue_query = (
        sa.select(
            leads.c.channel,
            conversions.c.currency,
            sa.func.sum(conversions.c.value_units).label("units"),
        )
        .join(conversions, conversions.c.lead_id == leads.c.lead_id)
        .where(counted)
        .group_by(leads.c.channel, conversions.c.currency)
    )
    for row in (await session.execute(revenue_query)).all():
        units = int(row.units or 0)
        if row.currency.upper() == currency.upper():
            facts[row.channel].revenue_units += units
        else:
            others = facts[row.channel].other_revenue_units
            others[row.currency.upper()] = others.get(row.currency.upper(), 0) + units

    durations_query = (
        sa.select(leads.c.channel, leads.c.speed_to_lead_ms)
        .where(counted, leads.c.speed_to_lead_ms.is_not(None))
        .order_by(leads.c.channel, leads.c.speed_to_lead_ms)
    )
    for row in (await session.execute(durations_query)).all():
        facts[row.channel].speed_to_lead_ms.append(int(row.speed_to_lead_ms))
    return dict(facts)
