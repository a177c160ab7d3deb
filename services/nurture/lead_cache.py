"""The per-transaction lead cache of a consumer batch: read once, written once.

Before the handlers of a batch run, its leads (locked on PostgreSQL), their
enrollments and the suppression entries of their addresses are read in one query
each; the handlers then read and change them in memory through the same methods
as `LeadRepository`, and the new and changed rows go out in one statement per
table when the unit of work commits. Reads of the send queue (rare: exits, double
opt-in, erasure) go to the database, after the sends queued so far are written.

Both give the same rows: a row the database refuses at commit fails the batch,
and the consumer handles it again event by event, directly.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from services.nurture import domain
from services.nurture import lead_cache_sql as sql
from services.nurture.lead_repository import LeadRepository
from shared.db import UnitOfWork
from shared.events import Envelope, LeadScored

_CACHE_KEY = "nurture_lead_cache"
_CHUNK = 500


def _run_order(run: Any) -> tuple[datetime, int]:
    return run.enrolled_at, run.run


def _address(email: str | None) -> str | None:
    """The lead's stored address for an event's email (as lead.scored stores it)."""
    return (email or "").strip().lower() or None


class LeadCache(LeadRepository):
    """The leads of one consumer batch, read once and written once (see the module)."""

    def __init__(self, uow: UnitOfWork) -> None:
        super().__init__(uow)
        self._values = uow.values
        self._statements = sql.Statements.of(uow.dialect)
        self._lead_row, self._run_row = sql.writers(uow.dialect)
        self._leads: dict[str, Any] = {}  # lead id → LeadRow, or None: not stored
        self._new_leads: set[str] = set()
        self._changed_leads: set[str] = set()
        self._runs: dict[str, list[Any]] = {}  # lead id → its RunRows, in order
        self._run_lead: dict[str, str] = {}  # enrollment id → lead id
        self._new_runs: set[str] = set()
        self._changed_runs: set[str] = set()
        self._suppressed: dict[str, bool] = {}
        self._new_suppressions: list[tuple[Any, ...]] = []
        self._sends: list[tuple[Any, ...]] = []
        uow.before_commit(self._flush)

    @classmethod
    async def load(cls, uow: UnitOfWork, events: Sequence[Envelope[Any]]) -> LeadCache:
        """Start the cache of this transaction with what `events` will need."""
        cache = uow.cache(_CACHE_KEY, cls)
        lead_ids = list(dict.fromkeys(e.data.lead_id for e in events))
        await cache._load_leads(lead_ids)
        addresses = {_address(e.data.contact.email) for e in events if type(e.data) is LeadScored}
        addresses.update(row.email for row in cache._leads.values() if row is not None)
        addresses.discard(None)
        await cache._load_suppressed(domain.email_hash(a) for a in addresses if a)
        return cache

    async def _select(self, query: sa.Select[Any], keys: Sequence[str]) -> list[Any]:
        rows: list[Any] = []
        for start in range(0, len(keys), _CHUNK):
            chunk = list(keys[start : start + _CHUNK])
            rows += (await self.session.execute(query, {"ids": chunk})).all()
        return rows

    async def _load_leads(self, lead_ids: Sequence[str]) -> None:
        missing = [i for i in lead_ids if i not in self._leads]
        if not missing:
            return
        for lead_id in missing:
            self._leads[lead_id] = None
            self._runs[lead_id] = []
        for row in await self._select(sql.SELECT_LEADS, missing):
            self._leads[row.lead_id] = sql.LeadRow(*row)
        for row in await self._select(sql.SELECT_RUNS, missing):
            self._runs[row.lead_id].append(sql.RunRow(*row))
            self._run_lead[row.enrollment_id] = row.lead_id

    async def _load_suppressed(self, hashes: Iterable[str]) -> None:
        missing = [h for h in dict.fromkeys(hashes) if h not in self._suppressed]
        if not missing:
            return
        for email_hash in missing:
            self._suppressed[email_hash] = False
        for row in await self._select(sql.SELECT_SUPPRESSED, missing):
            self._suppressed[row.email_hash] = True

    # Leads ---------------------------------------------------------------------------------

    async def ensure_lead(self, lead_id: str, now: datetime) -> Any:
        await self._load_leads([lead_id])
        row = self._leads[lead_id]
        if row is None:
            row = self._leads[lead_id] = sql.LeadRow(**sql.bare_lead(lead_id, now))
            self._new_leads.add(lead_id)
        return row

    async def get_lead(self, lead_id: str) -> Any:
        await self._load_leads([lead_id])
        return self._leads[lead_id]

    async def update_lead(self, lead_id: str, **values: Any) -> None:
        await self._load_leads([lead_id])
        row = self._leads[lead_id]
        if row is not None:
            self._leads[lead_id] = row._replace(**values)
            self._changed_leads.add(lead_id)

    # Suppressions --------------------------------------------------------------------------

    async def is_suppressed(self, email_hash: str) -> bool:
        await self._load_suppressed([email_hash])
        return self._suppressed[email_hash]

    async def suppress(
        self, email_hash: str, reason: str, lead_id: str | None, now: datetime
    ) -> None:
        if self._suppressed.get(email_hash):
            return  # the first reason stays, as with INSERT ... ON CONFLICT DO NOTHING
        self._suppressed[email_hash] = True
        self._new_suppressions.append((email_hash, reason, lead_id, now))

    # Enrollments ---------------------------------------------------------------------------

    async def lead_enrollments(self, lead_id: str) -> list[Any]:
        await self._load_leads([lead_id])
        return sorted(self._runs[lead_id], key=_run_order)

    async def insert_enrollment(self, **values: Any) -> None:
        lead_id = values["lead_id"]
        await self._load_leads([lead_id])
        row: Any = sql.RunRow(**{**dict.fromkeys(sql.RUN_COLUMNS), **values})
        self._runs[lead_id].append(row)
        self._run_lead[row.enrollment_id] = lead_id
        self._new_runs.add(row.enrollment_id)

    async def update_enrollment(self, enrollment_id: str, **values: Any) -> None:
        lead_id = self._run_lead.get(enrollment_id)
        if lead_id is None:  # not one of the batch's leads' runs
            await super().update_enrollment(enrollment_id, **values)
            return
        runs = self._runs[lead_id]
        for i, run in enumerate(runs):
            if run.enrollment_id == enrollment_id:
                runs[i] = run._replace(**values)
        self._changed_runs.add(enrollment_id)

    # Sends ---------------------------------------------------------------------------------

    async def insert_send(self, **values: Any) -> None:
        self._sends.append(sql.send_row(values, self._values))

    async def before_send_queue_statement(self) -> None:
        sends, self._sends = self._sends, []
        await self._statements.insert_sends.run_async(self.session, sends)

    # Commit --------------------------------------------------------------------------------

    async def _flush(self) -> None:
        """Write what the batch added and changed, one statement per table (at commit)."""
        session, statements, time = self.session, self._statements, self._values.time
        lead_row, run_row = self._lead_row, self._run_row
        new = [lead_row(self._leads[i]) for i in self._new_leads]
        changed = [
            (*lead_row(self._leads[i])[1:], i)
            for i in self._changed_leads
            if i not in self._new_leads
        ]
        await statements.insert_leads.run_async(session, new)
        await statements.update_leads.run_async(session, changed)
        self._new_leads.clear()
        self._changed_leads.clear()
        runs = {r.enrollment_id: r for i in self._runs for r in self._runs[i]}
        await statements.insert_runs.run_async(session, [run_row(runs[i]) for i in self._new_runs])
        await statements.update_runs.run_async(
            session,
            [
                (runs[i].status, runs[i].exit_reason, time(runs[i].ended_at), i)
                for i in self._changed_runs
                if i not in self._new_runs
            ],
        )
        self._new_runs.clear()
        self._changed_runs.clear()
        await self.before_send_queue_statement()
        suppressions, self._new_suppressions = self._new_suppressions, []
        await statements.insert_suppressions.run_async(
            session, [(h, reason, lead, time(at)) for h, reason, lead, at in suppressions]
        )


def leads_of(uow: UnitOfWork) -> LeadRepository:
    """The repository for this unit of work: its cache, when the consumer started one."""
    cache: LeadCache | None = uow.cached(_CACHE_KEY)
    if cache is None or uow.session.in_nested_transaction():
        return LeadRepository(uow)
    return cache
