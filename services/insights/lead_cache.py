"""The lead rows one transaction folds events into (`LeadCache`), and the row lock.

The consumer's handlers fold events through a `LeadCache`, one per transaction:
each lead's row is written once however many of its events the batch held (in a
consumer batch, merged in SQL without being read: lead_merge.py), and touches and
conversions go out in one statement each. The writes are queued and go out just
before the unit of work commits; the cache never commits.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from services.insights import lead_merge
from services.insights.bulk_writes import run_writes
from services.insights.lead_facts import LeadFacts
from services.insights.store import conversions, leads, touches
from shared.clock import Clock, utc_now
from shared.db import UnitOfWork
from shared.db.bulk import BulkStatement, Values, placeholders

_FACT_COLUMNS = tuple(f.name for f in dataclasses.fields(LeadFacts))
_LOCK_CHUNK = 500

_save_statement = (
    sa.update(leads)
    .where(leads.c.lead_id == sa.bindparam("key_lead_id"))
    .values({name: sa.bindparam(f"new_{name}") for name in (*_FACT_COLUMNS, "updated_at")})
)


@dataclass(frozen=True)
class _Statements:
    """The cache's reads and writes in the driver's terms (see shared.db.bulk), per dialect."""

    dialect: str
    values: Values
    read: Callable[[Any], tuple[Any, ...]]  # (lead_id, *facts) as the driver returns them
    save: BulkStatement
    touches: BulkStatement
    conversions: BulkStatement

    def lock_sql(self, count: int) -> str:
        return _lock_many_sql(self.dialect, count)


@functools.cache
def _statements(dialect: str) -> _Statements:
    values = Values(dialect)
    return _Statements(
        dialect=dialect,
        values=values,
        read=values.reader([leads.c.lead_id, *(leads.c[name] for name in _FACT_COLUMNS)]),
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
    """INSERT the rows of `count` leads if new, else a no-op update that locks them;
    RETURNING their facts. Each row's parameters are (lead_id, updated_at)."""
    marks = iter(placeholders(dialect, 2 * count))
    rows = ", ".join(f"({m}, 0, false, {n})" for m, n in zip(marks, marks, strict=True))
    returned = ", ".join(f'"{name}"' for name in _FACT_COLUMNS)
    return (
        f'INSERT INTO "{leads.name}" ("lead_id", "channel_rank", "is_test", "updated_at")'
        f" VALUES {rows}"
        ' ON CONFLICT ("lead_id") DO UPDATE SET "lead_id" = excluded."lead_id"'
        f' RETURNING "lead_id", {returned}'
    )


async def _lock(
    session: AsyncSession, statements: _Statements, lead_ids: list[str], now: datetime
) -> dict[str, LeadFacts]:
    """Read, create if new and lock these leads' rows, 500 per statement, in the given order."""
    connection = await session.connection()
    stored_now = statements.values.time(now)
    found: dict[str, LeadFacts] = {}
    for start in range(0, len(lead_ids), _LOCK_CHUNK):
        chunk = lead_ids[start : start + _LOCK_CHUNK]
        params: list[Any] = []
        for lead_id in chunk:
            params += (lead_id, stored_now)
        result = await connection.exec_driver_sql(statements.lock_sql(len(chunk)), tuple(params))
        for row in result:
            lead_id, *facts = statements.read(row)
            found[lead_id] = LeadFacts(*facts)
    return found


async def lock_lead(
    session: AsyncSession, dialect: str, lead_id: str, clock: Clock = utc_now
) -> LeadFacts:
    """The lead's facts, its row created if new and locked until the transaction ends.

    Events of one lead arrive on several topics, which different replicas may
    consume at once; the row lock makes their read-merge-write updates queue.
    One statement: INSERT ... ON CONFLICT DO UPDATE locks an existing row on
    PostgreSQL as SELECT ... FOR UPDATE would (SQLite serializes writers anyway).
    """
    return (await _lock(session, _statements(dialect), [lead_id], clock()))[lead_id]


async def save_lead(
    session: AsyncSession, lead_id: str, facts: LeadFacts, clock: Clock = utc_now
) -> None:
    """Write the lead's merged facts."""
    params: dict[str, Any] = {f"new_{name}": getattr(facts, name) for name in _FACT_COLUMNS}
    params["new_updated_at"] = clock()
    params["key_lead_id"] = lead_id
    await session.execute(_save_statement, params)


class LeadCache:
    """The lead rows one transaction folds events into.

    Three ways of working, picked by where the handler runs:

    - In a consumer batch (the fast path, turned on by `merge_in_sql`, the consumer's
      `before_batch` hook): no row is read. Each lead's events are folded in memory
      into facts that start empty (`lead_merge.PARTIAL`); just before the unit of work
      commits, one statement inserts or merges every lead's facts into its row (in lead
      id order, so replicas lock the same rows in the same order), and the queued
      touches and conversions go out in one statement each.
    - Handlers called on their own (a transaction of a few events): each lead's row is
      read, created if new and locked on its first event (`load`), the events folded
      into it in memory, and every changed row written in one statement at commit.
    - Inside a savepoint (the consumer handling a failed batch event by event): each
      event locks, reads and writes its lead's row at once, so a rolled-back attempt
      leaves nothing behind.

    A transaction uses one way only.
    """

    def __init__(self, uow: UnitOfWork, clock: Clock = utc_now) -> None:
        self.session = uow.session
        self.dialect = uow.dialect
        self.clock = clock
        self._statements = _statements(uow.dialect)
        self._facts: dict[str, LeadFacts] = {}
        self._stored: dict[str, LeadFacts] = {}
        self._touches: list[tuple[Any, ...]] = []
        self._conversions: list[tuple[Any, ...]] = []
        self._merge = False
        uow.before_commit(self._write)

    @classmethod
    def of(cls, uow: UnitOfWork) -> LeadCache:
        """The cache of this unit of work's transaction."""
        return uow.cache("insights_lead_cache", cls)

    def merge_in_sql(self) -> None:
        """Fold this transaction's events without reading rows: see the class docstring."""
        self._merge = True

    async def load(self, lead_ids: Iterable[str]) -> None:
        """Read, create if new, and lock the rows of the leads not read yet.

        One statement per 500 leads, in lead id order (replicas locking the same rows
        take them in the same order), returning the newest committed facts.
        """
        missing = sorted({i for i in lead_ids if i not in self._facts})
        if missing:
            found = await _lock(self.session, self._statements, missing, self.clock())
            self._facts.update(found)
            self._stored.update(found)

    async def update(self, lead_id: str, change: Callable[[LeadFacts], LeadFacts]) -> None:
        """Fold a change into the lead's facts."""
        if self.session.in_nested_transaction():
            facts = await lock_lead(self.session, self.dialect, lead_id, self.clock)
            updated = change(facts)
            if updated != facts:
                await save_lead(self.session, lead_id, updated, self.clock)
            return
        known = self._facts.get(lead_id)
        if known is None:
            if self._merge:
                self._facts[lead_id] = change(lead_merge.PARTIAL)
                return
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
        time = self._statements.values.time(captured_at)
        row = (submission_id, lead_id, channel, is_new_lead, is_test, cost_units, time)
        await self._add(self._statements.touches, self._touches, row)

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
        time = self._statements.values.time(occurred_at)
        row = (lead_id, outcome_id, value_units, currency, time)
        await self._add(self._statements.conversions, self._conversions, row)

    async def _add(
        self, statement: BulkStatement, queue: list[tuple[Any, ...]], row: tuple[Any, ...]
    ) -> None:
        # Inside a savepoint the row goes out at once (a rollback takes it back).
        if self.session.in_nested_transaction():
            await statement.run_async(self.session, [row])
        else:
            queue.append(row)

    async def _write(self) -> None:
        """Every changed lead row, then the queued touches and conversions: one statement
        each, all in one hop (bulk_writes.py)."""
        statements = self._statements
        if self._merge:
            leads_write = (lead_merge.merge_statement(self.dialect), self._merged_rows())
        else:
            leads_write = (statements.save, self._changed_rows())
        touches, self._touches = self._touches, []
        conversions, self._conversions = self._conversions, []
        await run_writes(
            self.session,
            [leads_write, (statements.touches, touches), (statements.conversions, conversions)],
        )

    def _merged_rows(self) -> list[tuple[Any, ...]]:
        time = self._statements.values.time
        now, facts, row = time(self.clock()), self._facts, lead_merge.row
        self._facts = {}
        return [row(lead_id, facts[lead_id], time, now) for lead_id in sorted(facts)]

    def _changed_rows(self) -> list[tuple[Any, ...]]:
        time = self._statements.values.time
        stored, now = self._stored, time(self.clock())
        row = lead_merge.row
        # The UPDATE's parameters: the columns in `lead_merge.row`'s order, then the key.
        changed = [
            (*values[1:], lead_id)
            for lead_id, facts in self._facts.items()
            if facts != stored[lead_id]
            for values in (row(lead_id, facts, time, now),)
        ]
        stored.update(self._facts)
        return changed
