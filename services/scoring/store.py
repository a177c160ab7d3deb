"""Scoring's tables and queries: per-lead state, the event log, the history of changes.

Handlers touch leads through a `LeadCache`, one per transaction: each lead is
read once (locked on PostgreSQL), and every new state, logged event and history
row is written in three statements when the unit of work commits, however many
events the consumer's batch held. Repositories flush, never commit.
"""

from __future__ import annotations

import functools
from collections import Counter, namedtuple
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session
from sqlalchemy.types import TypeDecorator

from services.scoring.domain import LeadState, Reason, Score, Snapshot
from shared.db import UnitOfWork, add_plumbing_tables, make_metadata
from shared.db.bulk import BulkStatement, Values
from shared.db.types import JSONType, UTCDateTime

metadata = make_metadata()
outbox, inbox = add_plumbing_tables(metadata)

# One row per lead: the snapshot, the model's memory and the last score.
lead_scores = sa.Table(
    "lead_scores",
    metadata,
    sa.Column("lead_id", sa.String(64), primary_key=True),
    sa.Column("snapshot", JSONType(), nullable=True),
    sa.Column("memory", JSONType(), nullable=False),
    sa.Column("model_version", sa.String(32), nullable=True),
    sa.Column("events", sa.Integer, nullable=False),
    sa.Column("score", sa.Float, nullable=True),
    sa.Column("fit", sa.Float, nullable=True),
    sa.Column("engagement", sa.Float, nullable=True),
    sa.Column("grade", sa.String(8), nullable=True, index=True),
    sa.Column("sales_ready", sa.Boolean, nullable=False),
    sa.Column("disqualified", sa.Boolean, nullable=False),
    sa.Column("reasons", JSONType(), nullable=False),
    sa.Column("score_version", sa.String(32), nullable=True),
    sa.Column("scored_at", UTCDateTime(), nullable=True),
    # When decay alone changes the grade or sales-readiness: the sweep's work list.
    sa.Column("regrade_due_at", UTCDateTime(), nullable=True, index=True),
    sa.Column("erased_at", UTCDateTime(), nullable=True),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
)

# Every event that scored a lead, in order: what replay folds again.
score_events = sa.Table(
    "score_events",
    metadata,
    sa.Column("event_id", sa.String(200), primary_key=True),
    sa.Column("lead_id", sa.String(64), nullable=False),
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("event_type", sa.String(100), nullable=False),
    sa.Column("payload", JSONType(), nullable=False),
    sa.Column("occurred_at", UTCDateTime(), nullable=False),
    sa.Column("received_at", UTCDateTime(), nullable=False),
    sa.UniqueConstraint("lead_id", "seq"),
)

# Every change of a lead's score, grade or sales-readiness, with its cause.
score_changes = sa.Table(
    "score_changes",
    metadata,
    sa.Column(
        "id",
        sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
        primary_key=True,
        autoincrement=True,
    ),
    sa.Column("lead_id", sa.String(64), nullable=False, index=True),
    sa.Column("at", UTCDateTime(), nullable=False),
    sa.Column("score", sa.Float, nullable=False),
    sa.Column("fit", sa.Float, nullable=False),
    sa.Column("engagement", sa.Float, nullable=False),
    sa.Column("grade", sa.String(8), nullable=False),
    sa.Column("previous_grade", sa.String(8), nullable=True),
    sa.Column("sales_ready", sa.Boolean, nullable=False),
    sa.Column("became_sales_ready", sa.Boolean, nullable=False),
    sa.Column("disqualified", sa.Boolean, nullable=False),
    sa.Column("published", sa.Boolean, nullable=False),
    sa.Column("model_version", sa.String(32), nullable=False),
    sa.Column("cause_event_id", sa.String(200), nullable=False),
    sa.Column("cause_type", sa.String(100), nullable=False),
    sa.Column("reasons", JSONType(), nullable=False),
)

_STATE_COLUMNS = (
    "snapshot",
    "memory",
    "model_version",
    "events",
    "score",
    "fit",
    "engagement",
    "grade",
    "sales_ready",
    "disqualified",
    "reasons",
    "score_version",
    "scored_at",
    "regrade_due_at",
    "erased_at",
    "updated_at",
)
_EVENT_COLUMNS = (
    "event_id",
    "lead_id",
    "seq",
    "event_type",
    "payload",
    "occurred_at",
    "received_at",
)
_CHANGE_COLUMNS = (
    "lead_id",
    "at",
    "score",
    "fit",
    "engagement",
    "grade",
    "previous_grade",
    "sales_ready",
    "became_sales_ready",
    "disqualified",
    "published",
    "model_version",
    "cause_event_id",
    "cause_type",
    "reasons",
)


class _OrjsonJSON(TypeDecorator[Any]):
    """The JSON columns as the batch reads see them: decoded with orjson where the driver
    hands back text (SQLite; asyncpg decodes JSONB itself). Writes go through
    `shared.db.bulk`, which encodes with orjson too."""

    impl = sa.JSON
    cache_ok = True

    def load_dialect_impl(self, dialect: sa.Dialect) -> sa.types.TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(postgresql.JSONB())
        return dialect.type_descriptor(sa.JSON())

    def bind_processor(self, dialect: sa.Dialect) -> Callable[[Any], str]:
        # As sa.JSON: None is the JSON null.
        def process(value: Any) -> str:
            return orjson.dumps(value).decode()

        return process

    def result_processor(self, dialect: sa.Dialect, coltype: object) -> Callable[[Any], Any] | None:
        if dialect.name == "postgresql":
            return None

        def process(value: Any) -> Any:
            return None if value is None else orjson.loads(value)

        return process


_JSON = _OrjsonJSON()


# The lead rows with their JSON decoded by orjson.
_SELECT_STATES = sa.select(
    *(
        sa.type_coerce(c, _JSON).label(c.name) if isinstance(c.type, sa.JSON) else c
        for c in lead_scores.columns
    )
)


# A lead's row as the batch reads it: the driver's values (no SQLAlchemy result
# processing), with SQLite's text made into what the column types give back.
_ROW_COLUMNS: tuple[str, ...] = ("lead_id", *_STATE_COLUMNS)
_LeadRow = namedtuple("_LeadRow", _ROW_COLUMNS)  # type: ignore[misc]
_JSON_AT = tuple(_ROW_COLUMNS.index(c) for c in ("snapshot", "memory", "reasons"))
_BOOL_AT = tuple(_ROW_COLUMNS.index(c) for c in ("sales_ready", "disqualified"))
_TIME_AT = tuple(
    _ROW_COLUMNS.index(c) for c in ("scored_at", "regrade_due_at", "erased_at", "updated_at")
)


def _sqlite_lead_row(raw: Sequence[Any]) -> Any:
    values = list(raw)
    for i in _JSON_AT:
        if values[i] is not None:
            values[i] = orjson.loads(values[i])
    for i in _BOOL_AT:
        if values[i] is not None:
            values[i] = bool(values[i])
    for i in _TIME_AT:
        if values[i] is not None:
            # SQLAlchemy's SQLite DATETIME text: naive UTC.
            values[i] = datetime.fromisoformat(values[i]).replace(tzinfo=UTC)
    return _LeadRow._make(values)


@functools.cache
def _select_leads_sql(dialect: str, count: int) -> str:
    names = ", ".join(f'"{c}"' for c in _ROW_COLUMNS)
    if dialect == "postgresql":
        marks = ", ".join(f"${i}" for i in range(1, count + 1))
    else:
        marks = ", ".join("?" * count)
    sql = f'SELECT {names} FROM "lead_scores" WHERE "lead_id" IN ({marks})'
    return sql + " FOR UPDATE" if dialect == "postgresql" else sql


def state_from_row(row: Any) -> LeadState:
    """A lead's state from its row."""
    last = None
    if row.grade is not None:
        last = Score(
            score=row.score,
            fit=row.fit,
            engagement=row.engagement,
            grade=row.grade,
            sales_ready=row.sales_ready,
            disqualified=row.disqualified,
            reasons=tuple(Reason.from_dict(r) for r in row.reasons or ()),
            model_version=row.score_version or "",
            at=row.scored_at,
            due_at=row.regrade_due_at,
        )
    return LeadState(
        lead_id=row.lead_id,
        snapshot=Snapshot.from_dict(row.snapshot) if row.snapshot else None,
        memory=dict(row.memory or {}),
        model_version=row.model_version,
        events=row.events,
        last=last,
        erased=row.erased_at is not None,
    )


def state_row(
    state: LeadState,
    now: datetime,
    erased_at: datetime | None,
    time: Callable[[datetime | None], Any],
    json: Callable[[Any], str],
) -> tuple[Any, ...]:
    """A lead's row from its state: the values of `_STATE_COLUMNS`, as the driver takes them
    (`time` and `json` convert as `shared.db.bulk.Values` does)."""
    last = state.last
    snapshot = state.snapshot
    return (
        json(snapshot.as_dict() if snapshot else None),
        json(state.memory if type(state.memory) is dict else dict(state.memory)),
        state.model_version,
        state.events,
        last.score if last else None,
        last.fit if last else None,
        last.engagement if last else None,
        last.grade if last else None,
        bool(last and last.sales_ready),
        bool(last and last.disqualified),
        last.reasons_json if last else "[]",
        last.model_version if last else None,
        time(last.at if last else None),
        time(None if state.erased or last is None else last.due_at),
        time(erased_at),
        time(now),
    )


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
        self._values = Values(uow.dialect)
        self._statements = _statements(uow.dialect)
        self._states: dict[str, LeadState | None] = {}
        self._stored: set[str] = set()
        self._erased_at: dict[str, datetime | None] = {}
        self._staged = _Rows()
        self._queued = _Rows()
        self.tally: Counter[Any] = Counter()
        """What the handlers count once the transaction has committed (metrics)."""
        self._times: dict[datetime | None, Any] = {}

    @classmethod
    def of(cls, uow: UnitOfWork) -> LeadCache:
        """The lead cache of this unit of work's transaction."""
        info = uow.session.info
        cache = info.get("scoring_lead_cache")
        if cache is None:
            cache = info["scoring_lead_cache"] = cls(uow)
        return cache  # type: ignore[no-any-return]

    @property
    def one_by_one(self) -> bool:
        """Inside a savepoint: each event's rows are written at once."""
        return self.session.in_nested_transaction()

    # Reads ---------------------------------------------------------------------------------

    async def load(self, lead_ids: Iterable[str]) -> None:
        """Read (and on PostgreSQL lock) the leads not read yet, in one query per 500."""
        missing = [i for i in dict.fromkeys(lead_ids) if i not in self._states]
        for start in range(0, len(missing), 500):
            chunk = missing[start : start + 500]
            connection = await self.session.connection()
            rows = await connection.exec_driver_sql(
                _select_leads_sql(self._dialect, len(chunk)), tuple(chunk)
            )
            make = _sqlite_lead_row if self._dialect == "sqlite" else _LeadRow._make
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
                    _SELECT_STATES.where(lead_scores.c.lead_id == lead_id).with_for_update()
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
                _SELECT_STATES.where(
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
        # An event's rows share its `now`, and a lead's row the times of its events:
        # each converted once (equal instants are stored alike).
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
            self._staged = _Rows()

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


# Reads ---------------------------------------------------------------------------------


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
