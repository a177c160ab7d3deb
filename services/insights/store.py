"""Insights' tables and queries: the per-lead read model, touches, conversions, spend.

The read model holds no PII: ids, channel, grade, timestamps and amounts only,
so an erased lead stays counted with nothing left to forget. Money is stored
as integer ten-thousandths (exact on both databases). Repositories flush,
never commit; the unit of work commits.

The consumer's handlers fold events through a `LeadBatch`, one per transaction:
each lead's row is read once and written once however many of its events the
batch held, and touches and conversions go out in one statement each.
"""

from __future__ import annotations

import dataclasses
import functools
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from services.insights.lead_facts import LeadFacts
from services.insights.money import from_units, to_units
from services.insights.report import GRADES, ChannelFacts
from services.insights.spend import DaySpend
from services.insights.window import Window
from shared.db import UnitOfWork, add_plumbing_tables, make_metadata
from shared.db.bulk import BulkStatement, Values
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


class LeadBatch:
    """The lead rows one transaction folds events into.

    Two ways of working, picked by where the handler runs:

    - In a whole batch (the consumer's fast path): the batch's leads are read in one
      statement that also creates the rows not there yet and locks them until the
      transaction ends (`load`, the consumer's `before_batch` hook; a lead it missed is
      read on its first event). Events are folded into the facts in memory; when the
      unit of work commits, every changed row is written in one statement, and the
      queued touches and conversions in one statement each.
    - Inside a savepoint (the consumer handling a failed batch event by event): each
      event locks, reads and writes its lead's row at once, so a rolled-back attempt
      leaves nothing behind.

    A transaction uses one way or the other, not both.
    """

    def __init__(self, uow: UnitOfWork) -> None:
        self.session = uow.session
        self.dialect = uow.dialect
        self._values = Values(uow.dialect)
        self._statements = _batch_statements(uow.dialect)
        self._read = _row_reader(uow.dialect)
        self._facts: dict[str, LeadFacts] = {}
        self._stored: dict[str, LeadFacts] = {}
        self._touches: list[tuple[Any, ...]] = []
        self._conversions: list[tuple[Any, ...]] = []
        sa.event.listen(self.session.sync_session, "before_commit", self._flush)

    @classmethod
    def of(cls, uow: UnitOfWork) -> LeadBatch:
        """The batch of this unit of work's transaction."""
        info = uow.session.info
        batch = info.get("insights_batch")
        if batch is None:
            batch = info["insights_batch"] = cls(uow)
        return batch  # type: ignore[no-any-return]

    async def load(self, lead_ids: Iterable[str]) -> None:
        """Read, create if new, and lock the rows of the leads not read yet.

        One statement per 500 leads, in lead id order (replicas locking the same rows
        take them in the same order). INSERT ... ON CONFLICT DO UPDATE locks an
        existing row on PostgreSQL as SELECT ... FOR UPDATE would, and returns the
        newest committed facts; SQLite serializes writers anyway.
        """
        missing = sorted({i for i in lead_ids if i not in self._facts})
        if not missing:
            return
        connection = await self.session.connection()
        now = self._values.time(utcnow())
        read = self._read
        for start in range(0, len(missing), 500):
            chunk = missing[start : start + 500]
            params: list[Any] = []
            for lead_id in chunk:
                params += (lead_id, now)
            result = await connection.exec_driver_sql(
                _lock_many_sql(self.dialect, len(chunk)), tuple(params)
            )
            for row in result:
                facts = read(row)
                self._facts[row[0]] = self._stored[row[0]] = facts

    async def update(self, lead_id: str, change: Callable[[LeadFacts], LeadFacts]) -> None:
        """Fold a change into the lead's facts."""
        if self.session.in_nested_transaction():
            facts = await lock_lead(self.session, self.dialect, lead_id)
            updated = change(facts)
            if updated != facts:
                await save_lead(self.session, lead_id, updated)
            return
        known = self._facts.get(lead_id)
        if known is None:
            await self.load((lead_id,))
            known = self._facts[lead_id]
        self._facts[lead_id] = change(known)

    async def add_touch(
        self,
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
        if self.session.in_nested_transaction():
            await add_touch(
                self.session,
                self.dialect,
                submission_id=submission_id,
                lead_id=lead_id,
                channel=channel,
                is_new_lead=is_new_lead,
                is_test=is_test,
                cost_units=cost_units,
                captured_at=captured_at,
            )
            return
        self._touches.append(
            (
                submission_id,
                lead_id,
                channel,
                is_new_lead,
                is_test,
                cost_units,
                self._values.time(captured_at),
            )
        )

    async def add_conversion(
        self,
        *,
        lead_id: str,
        outcome_id: str,
        value_units: int,
        currency: str,
        occurred_at: datetime,
    ) -> None:
        """Record one won deal (once per outcome id)."""
        if self.session.in_nested_transaction():
            await add_conversion(
                self.session,
                self.dialect,
                lead_id=lead_id,
                outcome_id=outcome_id,
                value_units=value_units,
                currency=currency,
                occurred_at=occurred_at,
            )
            return
        self._conversions.append(
            (lead_id, outcome_id, value_units, currency, self._values.time(occurred_at))
        )

    def _flush(self, session: Session) -> None:
        # Runs inside the commit, in SQLAlchemy's greenlet: plain (sync) executes are
        # awaited by the async driver. Savepoint commits fire this too: only the outer
        # commit writes.
        if session.in_nested_transaction():
            return
        statements, time = self._statements, self._values.time
        stored, now = self._stored, time(utcnow())
        changed = [
            (
                facts.channel,
                facts.channel_rank,
                time(facts.captured_at),
                facts.is_test,
                facts.grade,
                time(facts.graded_at),
                time(facts.sales_ready_at),
                time(facts.routed_at),
                facts.speed_to_lead_ms,
                time(facts.converted_at),
                time(facts.disqualified_at),
                time(facts.engaged_at),
                time(facts.unsubscribed_at),
                time(facts.delivery_failed_at),
                time(facts.erased_at),
                now,
                lead_id,
            )
            for lead_id, facts in self._facts.items()
            if facts != stored[lead_id]
        ]
        statements.save.run_in(session, changed)
        stored.update(self._facts)
        touches, self._touches = self._touches, []
        statements.touches.run_in(session, touches)
        conversions, self._conversions = self._conversions, []
        statements.conversions.run_in(session, conversions)


@dataclass(frozen=True)
class _BatchStatements:
    """The batch's writes, in the driver's terms (see shared.db.bulk)."""

    save: BulkStatement
    touches: BulkStatement
    conversions: BulkStatement


@functools.cache
def _batch_statements(dialect: str) -> _BatchStatements:
    return _BatchStatements(
        save=BulkStatement.update(leads, (*_FACT_COLUMNS, "updated_at"), "lead_id", dialect),
        touches=BulkStatement.insert(
            touches, tuple(c.name for c in touches.columns), dialect, ignore=True
        ),
        conversions=BulkStatement.insert(
            conversions, tuple(c.name for c in conversions.columns), dialect, ignore=True
        ),
    )


@functools.cache
def _lock_many_sql(dialect: str, count: int) -> str:
    """`_lock_statement` for `count` leads at once, in the driver's parameter style;
    each row's parameters are (lead_id, updated_at)."""
    if dialect == "postgresql":
        rows = ", ".join(f"(${2 * i + 1}, 0, false, ${2 * i + 2})" for i in range(count))
    else:
        rows = ", ".join(["(?, 0, false, ?)"] * count)
    returned = ", ".join(f'"{name}"' for name in _FACT_COLUMNS)
    return (
        f'INSERT INTO "{leads.name}" ("lead_id", "channel_rank", "is_test", "updated_at")'
        f" VALUES {rows}"
        ' ON CONFLICT ("lead_id") DO UPDATE SET "lead_id" = excluded."lead_id"'
        f' RETURNING "lead_id", {returned}'
    )


def _sqlite_time(value: str | None) -> datetime | None:
    # As UTCDateTime reads it: SQLite keeps naive UTC text.
    return None if value is None else datetime.fromisoformat(value).replace(tzinfo=UTC)


def _row_reader(dialect: str) -> Callable[[Any], LeadFacts]:
    """(lead_id, *facts) as the driver returns them → LeadFacts, as SQLAlchemy's column
    types would have read them."""
    if dialect == "postgresql":  # asyncpg gives aware UTC times and booleans
        return lambda row: LeadFacts(*row[1:])
    time = _sqlite_time

    def read(row: Any) -> LeadFacts:
        (
            _,
            channel,
            channel_rank,
            captured_at,
            is_test,
            grade,
            graded_at,
            sales_ready_at,
            routed_at,
            speed_to_lead_ms,
            converted_at,
            disqualified_at,
            engaged_at,
            unsubscribed_at,
            delivery_failed_at,
            erased_at,
        ) = row
        return LeadFacts(
            channel=channel,
            channel_rank=channel_rank,
            captured_at=time(captured_at),
            is_test=bool(is_test),
            grade=grade,
            graded_at=time(graded_at),
            sales_ready_at=time(sales_ready_at),
            routed_at=time(routed_at),
            speed_to_lead_ms=speed_to_lead_ms,
            converted_at=time(converted_at),
            disqualified_at=time(disqualified_at),
            engaged_at=time(engaged_at),
            unsubscribed_at=time(unsubscribed_at),
            delivery_failed_at=time(delivery_failed_at),
            erased_at=time(erased_at),
        )

    return read


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
