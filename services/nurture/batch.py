"""How the consumer's handlers reach nurture's tables: row by row, or a whole batch at once.

Handlers ask `leads_of(uow)` for a repository and call the same methods either way:

- `Direct`: each call is a statement (the store's queries), as HTTP routes, the
  scheduler and the consumer's event-by-event fallback (inside a savepoint) use it.
- `LeadBatch`: the consumer's whole-batch path. Before the handlers run, the batch's
  leads (locked on PostgreSQL), their enrollments and the suppression entries of
  their addresses are read in one query each; the handlers then read and change
  them in memory, and the new and changed rows go out in one statement per table
  when the unit of work commits. Reads of the send queue (rare: exits, double
  opt-in, erasure) go to the database, after the sends queued so far are written.

Both give the same rows: a row the database refuses at commit fails the batch,
and the consumer handles it again event by event, directly.
"""

from __future__ import annotations

import collections
import functools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from services.nurture import domain, send_queue, store
from shared.db import UnitOfWork
from shared.db.bulk import BulkStatement, Values
from shared.events import Envelope, LeadScored

_INFO_KEY = "nurture_batch"
_CHUNK = 500

_LEAD_COLUMNS = tuple(c.name for c in store.leads.columns)
assert _LEAD_COLUMNS[0] == "lead_id"  # the update's key: the rest are its columns
_RUN_COLUMNS = tuple(c.name for c in store.enrollments.columns)
# Rows as the handlers see them: attribute access like `sa.Row`, immutable, cheap to copy.
LeadRow: Any = collections.namedtuple("LeadRow", _LEAD_COLUMNS)  # type: ignore[misc]
RunRow: Any = collections.namedtuple("RunRow", _RUN_COLUMNS)  # type: ignore[misc]

_RUN_CHANGES = ("status", "exit_reason", "ended_at")
_SEND_COLUMNS = (
    "send_id",
    "kind",
    "lead_id",
    "enrollment_id",
    "sequence_id",
    "step",
    "step_id",
    "status",
    "due_at",
    "next_attempt_at",
    "claims",
    "attempts",
    "links",
    "clicked_links",
    "opens",
    "clicks",
    "created_at",
)
_SUPPRESSION_COLUMNS = ("email_hash", "reason", "lead_id", "created_at")

_IDS: sa.BindParameter[Any] = sa.bindparam("ids", expanding=True)
_SELECT_LEADS = (
    sa.select(store.leads)
    .where(store.leads.c.lead_id.in_(_IDS))
    .order_by(store.leads.c.lead_id)
    .with_for_update()
)
_SELECT_RUNS = (
    sa.select(store.enrollments)
    .where(store.enrollments.c.lead_id.in_(_IDS))
    .order_by(store.enrollments.c.enrolled_at, store.enrollments.c.run)
)
_SELECT_SUPPRESSED = sa.select(store.suppressions.c.email_hash).where(
    store.suppressions.c.email_hash.in_(_IDS)
)


def _run_order(run: Any) -> tuple[datetime, int]:
    return run.enrolled_at, run.run


def _address(email: str | None) -> str | None:
    """The lead's stored address for an event's email (as lead.scored stores it)."""
    return (email or "").strip().lower() or None


class Direct:
    """One statement per call: the store's queries on the unit of work's session."""

    def __init__(self, uow: UnitOfWork) -> None:
        self.session = uow.session
        self.dialect = uow.dialect

    async def ensure_lead(self, lead_id: str, now: datetime) -> Any:
        return await store.ensure_lead(self.session, self.dialect, lead_id, now)

    async def get_lead(self, lead_id: str) -> Any:
        return await store.get_lead(self.session, lead_id)

    async def update_lead(self, lead_id: str, **values: Any) -> None:
        await store.update_lead(self.session, lead_id, **values)

    async def is_suppressed(self, email_hash: str) -> bool:
        return await store.is_suppressed(self.session, email_hash)

    async def suppress(
        self, email_hash: str, reason: str, lead_id: str | None, now: datetime
    ) -> None:
        await store.suppress(self.session, self.dialect, email_hash, reason, lead_id, now)

    async def lead_enrollments(self, lead_id: str) -> list[Any]:
        return await store.lead_enrollments(self.session, lead_id)

    async def insert_enrollment(self, **values: Any) -> None:
        await store.insert_enrollment(self.session, **values)

    async def update_enrollment(self, enrollment_id: str, **values: Any) -> None:
        await store.update_enrollment(self.session, enrollment_id, **values)

    async def insert_send(self, **values: Any) -> None:
        await send_queue.insert_send(self.session, **values)

    async def lead_sends(self, lead_id: str, *, kind: str | None = None) -> list[Any]:
        return await send_queue.lead_sends(self.session, lead_id, kind=kind)

    async def cancel_sends(
        self,
        lead_id: str,
        reason: str,
        now: datetime,
        *,
        enrollment_ids: Iterable[str] | None = None,
    ) -> int:
        return await send_queue.cancel_sends(
            self.session, lead_id, reason, now, enrollment_ids=enrollment_ids
        )

    async def forget_links(self, lead_id: str) -> None:
        """Clear the links of the lead's emails (they may carry personal data)."""
        await self.session.execute(
            sa.update(store.sends).where(store.sends.c.lead_id == lead_id).values(links={})
        )


class LeadBatch(Direct):
    """The leads of one consumer batch, read once and written once (see the module)."""

    def __init__(self, uow: UnitOfWork) -> None:
        super().__init__(uow)
        self._values = Values(uow.dialect)
        self._statements = _statements(uow.dialect)
        self._lead_row, self._run_row = _writers(uow.dialect)
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
        sa.event.listen(self.session.sync_session, "before_commit", self._flush)

    @classmethod
    async def load(cls, uow: UnitOfWork, events: Sequence[Envelope[Any]]) -> LeadBatch:
        """Start the batch of this transaction with what `events` will need."""
        batch = cls(uow)
        uow.session.info[_INFO_KEY] = batch
        lead_ids = list(dict.fromkeys(e.data.lead_id for e in events))
        await batch._load_leads(lead_ids)
        addresses = {_address(e.data.contact.email) for e in events if type(e.data) is LeadScored}
        addresses.update(row.email for row in batch._leads.values() if row is not None)
        addresses.discard(None)
        await batch._load_suppressed(domain.email_hash(a) for a in addresses if a)
        return batch

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
        for row in await self._select(_SELECT_LEADS, missing):
            self._leads[row.lead_id] = LeadRow(*row)
        for row in await self._select(_SELECT_RUNS, missing):
            self._runs[row.lead_id].append(RunRow(*row))
            self._run_lead[row.enrollment_id] = row.lead_id

    async def _load_suppressed(self, hashes: Iterable[str]) -> None:
        missing = [h for h in dict.fromkeys(hashes) if h not in self._suppressed]
        if not missing:
            return
        for email_hash in missing:
            self._suppressed[email_hash] = False
        for row in await self._select(_SELECT_SUPPRESSED, missing):
            self._suppressed[row.email_hash] = True

    # Leads ---------------------------------------------------------------------------------

    async def ensure_lead(self, lead_id: str, now: datetime) -> Any:
        await self._load_leads([lead_id])
        row = self._leads[lead_id]
        if row is None:
            row = self._leads[lead_id] = LeadRow(**_bare_lead(lead_id, now))
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
        row: Any = RunRow(**{**dict.fromkeys(_RUN_COLUMNS), **values})
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
        values.setdefault("enrollment_id", None)
        values.setdefault("sequence_id", None)
        values.setdefault("step", None)
        values.setdefault("step_id", None)
        values.setdefault("next_attempt_at", values["due_at"])
        time, json = self._values.time, self._values.json
        self._sends.append(
            (
                values["send_id"],
                values["kind"],
                values["lead_id"],
                values["enrollment_id"],
                values["sequence_id"],
                values["step"],
                values["step_id"],
                values["status"],
                time(values["due_at"]),
                time(values["next_attempt_at"]),
                values.get("claims", 0),
                values.get("attempts", 0),
                json(values.get("links", {})),
                json(values.get("clicked_links", [])),
                values.get("opens", 0),
                values.get("clicks", 0),
                time(values["created_at"]),
            )
        )

    async def _write_sends(self) -> None:
        sends, self._sends = self._sends, []
        await self._statements.insert_sends.run_async(self.session, sends)

    async def lead_sends(self, lead_id: str, *, kind: str | None = None) -> list[Any]:
        await self._write_sends()
        return await super().lead_sends(lead_id, kind=kind)

    async def cancel_sends(
        self,
        lead_id: str,
        reason: str,
        now: datetime,
        *,
        enrollment_ids: Iterable[str] | None = None,
    ) -> int:
        await self._write_sends()
        return await super().cancel_sends(lead_id, reason, now, enrollment_ids=enrollment_ids)

    async def forget_links(self, lead_id: str) -> None:
        await self._write_sends()
        await super().forget_links(lead_id)

    # Commit --------------------------------------------------------------------------------

    def _flush(self, session: Session) -> None:
        # Runs inside the commit, in SQLAlchemy's greenlet: plain (sync) executes are
        # awaited by the async driver. Only the outer commit writes.
        if session.in_nested_transaction():
            return
        statements, values = self._statements, self._values
        lead_row, run_row = self._lead_row, self._run_row
        new = [lead_row(self._leads[i]) for i in self._new_leads]
        changed = [
            (*lead_row(self._leads[i])[1:], i)
            for i in self._changed_leads
            if i not in self._new_leads
        ]
        statements.insert_leads.run_in(session, new)
        statements.update_leads.run_in(session, changed)
        self._new_leads.clear()
        self._changed_leads.clear()
        runs = {r.enrollment_id: r for i in self._runs for r in self._runs[i]}
        statements.insert_runs.run_in(session, [run_row(runs[i]) for i in self._new_runs])
        time = values.time
        statements.update_runs.run_in(
            session,
            [
                (runs[i].status, runs[i].exit_reason, time(runs[i].ended_at), i)
                for i in self._changed_runs
                if i not in self._new_runs
            ],
        )
        self._new_runs.clear()
        self._changed_runs.clear()
        sends, self._sends = self._sends, []
        statements.insert_sends.run_in(session, sends)
        suppressions, self._new_suppressions = self._new_suppressions, []
        statements.insert_suppressions.run_in(
            session, [(h, reason, lead, time(at)) for h, reason, lead, at in suppressions]
        )


def leads_of(uow: UnitOfWork) -> Direct:
    """The repository for this unit of work: its batch, when the consumer started one."""
    session = uow.session
    batch = session.info.get(_INFO_KEY)
    if batch is None or session.in_nested_transaction():
        return Direct(uow)
    return batch  # type: ignore[no-any-return]


def _bare_lead(lead_id: str, now: datetime) -> dict[str, Any]:
    """The row `store.ensure_lead` inserts for a lead nurture has not seen yet."""
    row: dict[str, Any] = dict.fromkeys(_LEAD_COLUMNS)
    row.update(
        lead_id=lead_id,
        contact={},
        fields={},
        sales_ready=False,
        disqualified=False,
        is_test=False,
        consent=store.NO_CONSENT,
        created_at=now,
        updated_at=now,
    )
    return row


def _row_writer(
    table: sa.Table, columns: Sequence[str], values: Values
) -> Callable[[Any], tuple[Any, ...]]:
    """A row's values (in `columns` order) as the driver stores them."""
    kinds = [table.c[name].type for name in columns]
    convert: list[Callable[[Any], Any] | None] = []
    for kind in kinds:
        if isinstance(kind, sa.JSON):
            convert.append(values.json)
        elif isinstance(kind, sa.types.TypeDecorator):
            convert.append(values.time)
        else:
            convert.append(None)

    def write(row: Any) -> tuple[Any, ...]:
        return tuple(v if c is None else c(v) for c, v in zip(convert, row, strict=True))

    return write


@functools.cache
def _writers(
    dialect: str,
) -> tuple[Callable[[Any], tuple[Any, ...]], Callable[[Any], tuple[Any, ...]]]:
    values = Values(dialect)
    return (
        _row_writer(store.leads, _LEAD_COLUMNS, values),
        _row_writer(store.enrollments, _RUN_COLUMNS, values),
    )


@dataclass(frozen=True)
class _Statements:
    """The batch's writes, in the driver's terms (see shared.db.bulk)."""

    insert_leads: BulkStatement
    update_leads: BulkStatement
    insert_runs: BulkStatement
    update_runs: BulkStatement
    insert_sends: BulkStatement
    insert_suppressions: BulkStatement


@functools.cache
def _statements(dialect: str) -> _Statements:
    return _Statements(
        insert_leads=BulkStatement.insert(store.leads, _LEAD_COLUMNS, dialect),
        update_leads=BulkStatement.update(store.leads, _LEAD_COLUMNS[1:], "lead_id", dialect),
        insert_runs=BulkStatement.insert(store.enrollments, _RUN_COLUMNS, dialect),
        update_runs=BulkStatement.update(store.enrollments, _RUN_CHANGES, "enrollment_id", dialect),
        insert_sends=BulkStatement.insert(store.sends, _SEND_COLUMNS, dialect),
        insert_suppressions=BulkStatement.insert(
            store.suppressions, _SUPPRESSION_COLUMNS, dialect, ignore=True
        ),
    )
