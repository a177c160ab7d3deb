"""The routing cache: a consumer batch routed in one transaction reads once and writes
once per table.

When the consumer hands the router a batch whole, the routing lock is taken once,
the batch's leads, which of them already have an owner, the strategy states and the
reps' loads are read in one query each, and every lead snapshot, assignment,
delivery and strategy state the batch produces is written in one statement per
table when the unit of work commits. Decisions see exactly what the one-by-one path
would read: the in-memory copies are updated as each lead is routed.

Inside a savepoint (the consumer handling a failed batch event by event), or in any
transaction the batch hook did not start, there is no cache: handlers read and
write directly (see `RoutingCache.of`).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from types import SimpleNamespace
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from services.router import store
from shared.db import UnitOfWork
from shared.db.bulk import BulkStatement
from shared.db.types import UTCDateTime

_CACHE_KEY = "router_routing_cache"

# What lead.scored gives of a lead: every column but when it was erased.
LEAD_COLUMNS = tuple(c.name for c in store.leads.columns if c.name != "erased_at")
# A stored lead is refreshed by everything but its id and when it was captured.
LEAD_UPDATE_COLUMNS = tuple(c for c in LEAD_COLUMNS if c not in ("lead_id", "captured_at"))
ASSIGNMENT_COLUMNS = tuple(c.name for c in store.assignments.columns)
DELIVERY_COLUMNS = tuple(c.name for c in store.deliveries.columns)
_JSON = {"contact", "fields", "reason", "progress"}
_TIMES = {
    c.name
    for table in (store.leads, store.assignments, store.deliveries)
    for c in table.columns
    if isinstance(c.type, UTCDateTime)
}

# The leads with whether each has an active assignment (assignments are only ever made for
# stored leads, so a lead not stored has none).
_SELECT_LEADS = sa.select(
    store.leads,
    sa.exists()
    .where(
        store.assignments.c.lead_id == store.leads.c.lead_id,
        store.assignments.c.status.in_(store.ACTIVE),
    )
    .label("owned"),
).where(store.leads.c.lead_id.in_(sa.bindparam("ids", expanding=True)))
_SELECT_STATES = sa.select(store.routing_state.c.key, store.routing_state.c.state)


@dataclass(frozen=True)
class _Statements:
    insert_leads: BulkStatement
    update_leads: BulkStatement
    insert_assignments: BulkStatement
    insert_deliveries: BulkStatement
    insert_state: BulkStatement
    update_state: BulkStatement


@functools.cache
def _statements(dialect: str) -> _Statements:
    update_leads = BulkStatement.update(store.leads, LEAD_UPDATE_COLUMNS, "lead_id", dialect)
    return _Statements(
        insert_leads=BulkStatement.insert(store.leads, LEAD_COLUMNS, dialect),
        # As `store.save_lead`: an erased lead keeps its scrubbed snapshot.
        update_leads=BulkStatement(
            f'{update_leads.sql} AND "erased_at" IS NULL', update_leads.columns
        ),
        insert_assignments=BulkStatement.insert(store.assignments, ASSIGNMENT_COLUMNS, dialect),
        insert_deliveries=BulkStatement.insert(store.deliveries, DELIVERY_COLUMNS, dialect),
        insert_state=BulkStatement.insert(
            store.routing_state, ("key", "state", "updated_at"), dialect
        ),
        update_state=BulkStatement.update(
            store.routing_state, ("state", "updated_at"), "key", dialect
        ),
    )


class RoutingCache:
    """A per-transaction cache: what its routing decisions read, and the rows they write,
    queued and written in one statement per table when the unit of work commits."""

    def __init__(self, uow: UnitOfWork) -> None:
        self.session = uow.session
        self.dialect = uow.dialect
        self._values = uow.values
        self._times: dict[datetime, Any] = {}  # times as stored, for this transaction
        self._statements = _statements(uow.dialect)
        # Lead id → the stored lead as routing sees it (None: not stored).
        self._leads: dict[str, SimpleNamespace | None] = {}
        self._owned: set[str] = set()  # leads with an active assignment
        self._states: dict[str, dict[str, Any]] = {}
        self._stored_states: set[str] = set()
        self._loads: tuple[dict[str, datetime], dict[str, int]] | None = None
        self._new_leads: dict[str, SimpleNamespace] = {}
        self._changed_leads: dict[str, SimpleNamespace] = {}
        self._assignments: list[dict[str, Any]] = []
        self._deliveries: list[dict[str, Any]] = []
        self._changed_states: dict[str, tuple[dict[str, Any], datetime]] = {}
        # Queued rows are written when the unit of work commits (once, for the outer
        # transaction: savepoints do not run commit hooks).
        uow.before_commit(self.flush)

    @classmethod
    def of(cls, uow: UnitOfWork) -> RoutingCache | None:
        """The cache of this transaction, or None where handlers work directly."""
        cache: RoutingCache | None = uow.cached(_CACHE_KEY)
        if cache is None or uow.session.in_nested_transaction():
            return None
        return cache

    @classmethod
    async def start(cls, uow: UnitOfWork, lead_ids: Iterable[str], now: datetime) -> RoutingCache:
        """Lock routing and read what routing these leads needs, in one query each."""
        cache = uow.cache(_CACHE_KEY, cls)
        await store.lock_routing(cache.session, cache.dialect, now)
        await cache._load(list(dict.fromkeys(lead_ids)))
        return cache

    async def _load(self, lead_ids: list[str]) -> None:
        session = self.session
        for start in range(0, len(lead_ids), 500):
            chunk = lead_ids[start : start + 500]
            rows = await session.execute(_SELECT_LEADS, {"ids": chunk})
            for row in rows:
                values = dict(row._mapping)
                if values.pop("owned"):
                    self._owned.add(row.lead_id)
                self._leads[row.lead_id] = SimpleNamespace(**values)
            for lead_id in chunk:
                self._leads.setdefault(lead_id, None)
        for key, state in (await session.execute(_SELECT_STATES)).all():
            self._stored_states.add(key)
            if key != store.LOCK_KEY:
                self._states[key] = dict(state or {})

    # Leads ---------------------------------------------------------------------------------

    async def save_lead(self, values: dict[str, Any]) -> bool:
        """As `store.save_lead`: insert or refresh the snapshot; True when the lead was new."""
        lead_id = values["lead_id"]
        if lead_id not in self._leads:
            await self._load([lead_id])
        lead = self._leads[lead_id]
        if lead is None:
            lead = self._leads[lead_id] = SimpleNamespace(**values, erased_at=None)
            self._new_leads[lead_id] = lead
            return True
        if lead.erased_at is None:
            for column in LEAD_UPDATE_COLUMNS:
                setattr(lead, column, values[column])
            if lead_id not in self._new_leads:
                self._changed_leads[lead_id] = lead
        return False

    def lead(self, lead_id: str) -> Any:
        """The lead as stored now (after this batch's changes)."""
        return self._leads[lead_id]

    def has_owner(self, lead_id: str) -> bool:
        return lead_id in self._owned

    async def erase_lead(self, lead_id: str, erased_at: datetime) -> None:
        """As `store.erase_lead`, on what this batch has written so far too."""
        await self.flush()
        await store.erase_lead(self.session, lead_id, erased_at)
        lead = self._leads.get(lead_id)
        if lead is not None:
            lead.email, lead.contact, lead.fields = None, {}, {}
            lead.erased_at = lead.updated_at = erased_at

    # Routing state -------------------------------------------------------------------------

    def strategy_states(self) -> dict[str, dict[str, Any]]:
        return {key: dict(state) for key, state in self._states.items()}

    def save_strategy_state(self, key: str, state: dict[str, Any], now: datetime) -> None:
        self._states[key] = dict(state)
        self._changed_states[key] = (state, now)

    async def loads_since(self, starts: dict[str, datetime]) -> dict[str, int]:
        """As `store.loads_since`, counting this batch's assignments too."""
        if self._loads is None or self._loads[0] != starts:
            await self.flush()  # a new day somewhere: count again from the table
            self._loads = (dict(starts), await store.loads_since(self.session, starts))
        return dict(self._loads[1])

    # Assignments and deliveries ------------------------------------------------------------

    def insert_assignment(self, values: dict[str, Any]) -> None:
        self._assignments.append(values)
        if values["status"] in store.ACTIVE:
            self._owned.add(values["lead_id"])
        rep_id = values["rep_id"]
        if self._loads is not None and rep_id is not None and values["status"] != "reassigned":
            since, counts = self._loads
            if rep_id in since and values["created_at"] >= since[rep_id]:
                counts[rep_id] = counts.get(rep_id, 0) + 1

    def enqueue_deliveries(self, rows: Iterable[dict[str, Any]]) -> None:
        self._deliveries.extend(rows)

    # Writing -------------------------------------------------------------------------------

    async def flush(self) -> None:
        """Write what is queued now (before a statement that must see it)."""
        await self.session.run_sync(self._write)

    def _write(self, session: Session) -> None:
        statements, values = self._statements, self._values
        row = self._row
        if self._new_leads:
            statements.insert_leads.run_in(
                session, [row(vars(lead), LEAD_COLUMNS) for lead in self._new_leads.values()]
            )
            self._new_leads = {}
        if self._changed_leads:
            statements.update_leads.run_in(
                session,
                [
                    row(vars(lead), statements.update_leads.columns)
                    for lead in self._changed_leads.values()
                ],
            )
            self._changed_leads = {}
        if self._assignments:
            statements.insert_assignments.run_in(
                session, [row(a, ASSIGNMENT_COLUMNS) for a in self._assignments]
            )
            self._assignments = []
        if self._deliveries:
            statements.insert_deliveries.run_in(
                session, [row(d, DELIVERY_COLUMNS) for d in self._deliveries]
            )
            self._deliveries = []
        if self._changed_states:
            new, known = [], []
            for key, (state, now) in self._changed_states.items():
                if key in self._stored_states:
                    known.append((values.json(state), values.time(now), key))
                else:
                    new.append((key, values.json(state), values.time(now)))
            statements.update_state.run_in(session, known)
            statements.insert_state.run_in(session, new)
            self._stored_states.update(self._changed_states)
            self._changed_states = {}

    def _row(self, values: dict[str, Any], columns: tuple[str, ...]) -> tuple[Any, ...]:
        json, time, times = self._values.json, self._values.time, self._times
        row = [values.get(c) for c in columns]
        for i, kind in _kinds(columns):
            value = row[i]
            if kind is _JSON_KIND:
                row[i] = json(value)
            elif value is not None:
                # The rows of one lead share a few times (its `now`): each converted once.
                stored = times.get(value)
                if stored is None:
                    stored = times[value] = time(value)
                row[i] = stored
        return tuple(row)


_JSON_KIND, _TIME_KIND = "json", "time"


@functools.cache
def _kinds(columns: tuple[str, ...]) -> tuple[tuple[int, str], ...]:
    """The positions of `columns` stored as JSON or as times, and which."""
    return tuple(
        (i, _JSON_KIND if c in _JSON else _TIME_KIND)
        for i, c in enumerate(columns)
        if c in _JSON or c in _TIMES
    )
