"""The lead cache: the leads one transaction works on, read once, written once.

Handlers touch leads through a `LeadCache`, one per transaction: each lead is
read once (locked on PostgreSQL), and every new state, logged event and history
row is written in three statements when the unit of work commits, however many
events the consumer's batch held. It flushes, never commits.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy.orm import Session

from services.scoring.lead_rows import (
    SELECT_STATES,
    lead_row_reader,
    select_leads,
    state_from_row,
    state_row,
)
from services.scoring.leads import LeadState
from services.scoring.scores import Score
from services.scoring.store import (
    _CHANGE_COLUMNS,
    _EVENT_COLUMNS,
    _STATE_COLUMNS,
    lead_scores,
    score_changes,
    score_events,
)
from shared.db import UnitOfWork
from shared.db.bulk import BulkStatement


@dataclass
class _Rows:
    """Writes of one or more events: lead rows (by lead), log rows, history rows."""

    # lead id → (state, now, erased_at): the row is built once, at write time, however
    # many events of the lead the batch held.
    states: dict[str, tuple[LeadState, datetime, datetime | None]] = field(default_factory=dict)
    # Log and history rows as the driver takes them (the values of `_EVENT_COLUMNS` and
    # `_CHANGE_COLUMNS`), built when staged: plain values the collector need not track.
    events: list[tuple[Any, ...]] = field(default_factory=list)
    changes: list[tuple[Any, ...]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.states or self.events or self.changes)

    def clear(self) -> None:
        self.states.clear()
        self.events.clear()
        self.changes.clear()

    def extend(self, other: _Rows) -> None:
        self.states.update(other.states)
        self.events += other.events
        self.changes += other.changes


class LeadCache:
    """The leads one transaction works on: a per-transaction cache of lead state.

    Two ways of working, picked by where the handler runs:

    - In a whole batch (the batch consumer's fast path, the decay sweep, replay): each
      lead is read once (locked on PostgreSQL) and kept; every write is queued and
      goes out in one statement per table when the unit of work commits.
    - Inside a savepoint (the consumer handling a failed batch event by event): reads
      go to the database and writes are made at once, so a bad row fails its own
      event, which is retried and dead-lettered like any other, and a rolled-back
      attempt leaves nothing behind.
    """

    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow
        self.session = uow.session
        self._dialect = uow.dialect
        self._values = uow.values
        self._statements = _statements(uow.dialect)
        self._states: dict[str, LeadState | None] = {}
        self._stored: set[str] = set()
        self._erased_at: dict[str, datetime | None] = {}
        self._staged = _Rows()
        self._queued = _Rows()
        # Counted and timed by the handlers, observed once the transaction has committed.
        self.tally: Counter[Any] = Counter()
        self.timings: dict[str, list[float]] = {}
        self._times: dict[datetime | None, Any] = {}

    @classmethod
    def of(cls, uow: UnitOfWork) -> LeadCache:
        """The lead cache of this unit of work's transaction."""
        return uow.cache("scoring_lead_cache", cls)

    @property
    def one_by_one(self) -> bool:
        """Inside a savepoint: each event's rows are written at once."""
        return self.session.sync_session.in_nested_transaction()

    # Reads ---------------------------------------------------------------------------------

    async def load(self, lead_ids: Iterable[str]) -> None:
        """Read (and on PostgreSQL lock) the leads not read yet, in one query per 500."""
        missing = [i for i in dict.fromkeys(lead_ids) if i not in self._states]
        for start in range(0, len(missing), 500):
            chunk = missing[start : start + 500]
            connection = await self.session.connection()
            rows = await connection.exec_driver_sql(*select_leads(self._dialect, chunk))
            make = lead_row_reader(self._dialect)
            for raw in rows:
                self._remember(make(raw))
            for lead_id in chunk:
                self._states.setdefault(lead_id, None)

    def _remember(self, row: Any) -> LeadState:
        state = state_from_row(row)
        self._states[row.lead_id] = state
        self._stored.add(row.lead_id)
        self._erased_at[row.lead_id] = row.erased_at
        return state

    async def get(self, lead_id: str) -> LeadState:
        """The lead's state (a fresh one for a lead never seen)."""
        if self.one_by_one:
            row = (
                await self.session.execute(
                    SELECT_STATES.where(lead_scores.c.lead_id == lead_id).with_for_update()
                )
            ).first()
            if row is None:
                self._stored.discard(lead_id)
                self._erased_at.pop(lead_id, None)
                return LeadState(lead_id=lead_id)
            return self._remember(row)
        if lead_id not in self._states:
            await self.load([lead_id])
        return self._states.get(lead_id) or LeadState(lead_id=lead_id)

    async def due(self, now: datetime, limit: int) -> list[LeadState]:
        """Leads whose decay deadline has passed, oldest first; locked rows are skipped."""
        rows = (
            await self.session.execute(
                SELECT_STATES.where(
                    lead_scores.c.regrade_due_at <= now,
                    lead_scores.c.erased_at.is_(None),
                )
                .order_by(lead_scores.c.regrade_due_at)
                .limit(limit)
                .with_for_update(skip_locked=True)
            )
        ).all()
        return [self._remember(row) for row in rows]

    # Writes --------------------------------------------------------------------------------

    def save(self, state: LeadState, now: datetime, *, erased_at: datetime | None = None) -> None:
        """Stage the lead's new state."""
        erased_at = erased_at or self._erased_at.get(state.lead_id)
        self._erased_at[state.lead_id] = erased_at
        self._states[state.lead_id] = state
        self._staged.states[state.lead_id] = (state, now, erased_at)

    def _time(self, value: datetime | None) -> Any:
        # Equal instants (an event's rows, a lead's row and its events) converted once.
        converted = self._times.get(value)
        if converted is None:
            converted = self._times[value] = self._values.time(value)
        return converted

    def log_event(
        self,
        *,
        event_id: str,
        lead_id: str,
        seq: int,
        event_type: str,
        payload: str,
        occurred_at: datetime,
        received_at: datetime,
    ) -> None:
        """Stage an event for the lead's log; `payload` is its body as JSON text."""
        self._staged.events.append(
            (
                event_id,
                lead_id,
                seq,
                event_type,
                payload,
                self._time(occurred_at),
                self._time(received_at),
            )
        )

    def record_change(
        self,
        score: Score,
        *,
        lead_id: str,
        at: datetime,
        previous_grade: str | None,
        became_sales_ready: bool,
        published: bool,
        cause_event_id: str,
        cause_type: str,
    ) -> None:
        """Stage a row of the lead's history: its new score and what caused it."""
        self._staged.changes.append(
            (
                lead_id,
                self._time(at),
                score.score,
                score.fit,
                score.engagement,
                score.grade,
                previous_grade,
                score.sales_ready,
                became_sales_ready,
                score.disqualified,
                published,
                score.model_version,
                cause_event_id,
                cause_type,
                score.reasons_json,
            )
        )

    async def settle(self) -> None:
        """Write what is staged now (event by event), or queue it for the commit."""
        staged = self._staged
        if not staged:
            return
        if self.one_by_one:
            self._staged = _Rows()
            await self.session.run_sync(lambda session: self._write(session, staged))
        elif not self._queued:
            # The first rows of this transaction: written by the commit, in one go.
            self._uow.before_commit(self._flush)
            self._queued, self._staged = staged, self._queued
        else:
            self._queued.extend(staged)
            staged.clear()

    def scrub(self, lead_id: str, scrubbed: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
        """Remove the person from events of this lead not written yet."""
        for rows in (self._staged.events, self._queued.events):
            for i, row in enumerate(rows):
                if row[1] == lead_id:
                    payload = orjson.dumps(scrubbed(orjson.loads(row[4]))).decode()
                    rows[i] = (*row[:4], payload, *row[5:])

    def _write(self, session: Session, rows: _Rows) -> None:
        values, statements = self._values, self._statements
        statements.events.run_in(session, rows.events)
        new, known = [], []
        for lead_id, staged in rows.states.items():
            row = state_row(*staged, self._time, values.json)
            if lead_id in self._stored:
                known.append((*row, lead_id))
            else:
                new.append((lead_id, *row))
        statements.insert_state.run_in(session, new)
        statements.update_state.run_in(session, known)
        statements.changes.run_in(session, rows.changes)
        self._stored.update(rows.states)

    async def _flush(self) -> None:
        # Just before the unit of work commits: everything queued, one statement per table.
        queued, self._queued = self._queued, _Rows()
        if queued:
            await self.session.run_sync(lambda session: self._write(session, queued))


@dataclass(frozen=True)
class _Statements:
    """The batch's writes, in the driver's terms (see shared.db.bulk)."""

    events: BulkStatement
    insert_state: BulkStatement
    update_state: BulkStatement
    changes: BulkStatement


@functools.cache
def _statements(dialect: str) -> _Statements:
    return _Statements(
        events=BulkStatement.insert(score_events, _EVENT_COLUMNS, dialect),
        insert_state=BulkStatement.insert(lead_scores, ("lead_id", *_STATE_COLUMNS), dialect),
        update_state=BulkStatement.update(lead_scores, _STATE_COLUMNS, "lead_id", dialect),
        changes=BulkStatement.insert(score_changes, _CHANGE_COLUMNS, dialect),
    )
