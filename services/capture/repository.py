"""Capture's unit of work and its submission repository: preloaded reads, writes at commit.

A batch of submissions (one or many, the same road) reads what it may look up with one
query per table (`preload`), decides each submission in memory in arrival order, and
writes leads, submissions and consents with one multi-row statement per table just
before the unit of work commits.

Both the reads and the writes are hand-written statements run through the driver in
one hop into SQLAlchemy's sync context each: an intake group is often a few
submissions, so what a statement costs besides its rows (compiling, result objects,
a greenlet per awaited call) is much of a submission's CPU.
"""

from __future__ import annotations

import functools
import json as json_module
from collections.abc import Callable, Iterable, Sequence
from types import SimpleNamespace
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from services.capture import store
from shared.db.bulk import BulkStatement, Values, placeholders
from shared.db.uow import UnitOfWork

# Rows are plain namespaces here: the handler reads them by attribute, like sa.Row.
Row = Any

# What the handlers read of a stored lead and of a submission found by its dedupe key.
LEAD_COLUMNS = ("lead_id", "email", "phone", "contact", "first_touch", "touches", "created_at")
KEYED_COLUMNS = ("dedupe_key", "lead_id", "submission_id", "channel")
# Values per IN list: one statement reads a whole intake group (at most 256 submissions).
CHUNK = 512


class SubmissionRepository:
    """Leads, submissions and consents of one transaction: reads answered from what was
    preloaded, writes buffered until `flush` (run by the unit of work before it commits)."""

    def __init__(self, session: AsyncSession, dialect: str, values: Values) -> None:
        self.session = session
        self.dialect = dialect
        self._values = values
        self._by_key: dict[str, Row] = {}
        self._by_id: dict[str, Row] = {}
        self._by_email: dict[str, Row] = {}
        self._by_phone: dict[str, Row] = {}
        self._new_leads: dict[str, dict[str, Any]] = {}
        self._lead_updates: dict[str, dict[str, Any]] = {}
        self._submissions: list[dict[str, Any]] = []
        self._consents: list[dict[str, Any]] = []

    async def preload(
        self, keys: Iterable[str], emails: Iterable[str], phones: Iterable[str]
    ) -> None:
        """One query per table for everything the batch may look up, in one hop."""
        reads = _reads(self.dialect, sorted(set(keys)), sorted(set(emails)), sorted(set(phones)))
        if not reads:
            return
        found = await self.session.run_sync(_run_reads, reads)
        read_lead = _lead_reader(self.dialect)
        for (columns, _, _), rows in zip(reads, found, strict=True):
            for row in rows:
                if columns is KEYED_COLUMNS:
                    submission = SimpleNamespace(**dict(zip(columns, row, strict=True)))
                    self._by_key[submission.dedupe_key] = submission
                else:
                    lead = SimpleNamespace(**dict(zip(columns, read_lead(row), strict=True)))
                    self._remember(lead)

    def _remember(self, lead: Row) -> None:
        self._by_id[lead.lead_id] = lead
        if lead.email:
            self._by_email[lead.email] = lead
        if lead.phone:
            self._by_phone[lead.phone] = lead

    async def submission_by_key(self, dedupe_key: str) -> Row | None:
        return self._by_key.get(dedupe_key)

    async def lead_of(self, email: str | None, phone: str | None) -> Row | None:
        # The same order as store.find_lead: email first, then phone.
        if email and email in self._by_email:
            return self._by_email[email]
        return self._by_phone.get(phone) if phone else None

    async def insert_lead(self, **values: Any) -> None:
        self._new_leads[values["lead_id"]] = values
        self._remember(SimpleNamespace(**values))

    async def update_lead(self, lead_id: str, **values: Any) -> None:
        if lead_id in self._new_leads:
            self._new_leads[lead_id].update(values)
        else:
            self._lead_updates.setdefault(lead_id, {}).update(values)
        lead = self._by_id.get(lead_id)
        if lead is not None:
            for name, value in values.items():
                setattr(lead, name, value)
            self._remember(lead)

    async def insert_submission(self, **values: Any) -> None:
        self._submissions.append(values)
        if values.get("dedupe_key"):
            self._by_key[values["dedupe_key"]] = SimpleNamespace(**values)

    async def insert_consent(self, **values: Any) -> None:
        self._consents.append(values)

    async def flush(self) -> None:
        """Write the batch: one multi-row statement per table (and column set), all in
        one hop. The rows are turned into what the driver stores (`Values`: the column
        types' own conversions), so no statement is compiled and no value goes through
        SQLAlchemy's per-row processing."""
        writes: list[Write] = []
        # A submission's rows all carry the instant it was received: each is converted once.
        times: dict[Any, Any] = {}
        for columns, rows in _by_columns(self._new_leads.values()):
            writes.append(self._rows(store.leads, columns, rows, None, times))
        # In lead id order: two groups written at once (PostgreSQL) lock the leads they
        # both touch in the same order, so they never wait on each other in a cycle.
        updates = [{**v, "lead_id": k} for k, v in sorted(self._lead_updates.items())]
        for columns, rows in _by_columns(updates):
            writes.append(self._rows(store.leads, columns, rows, "lead_id", times))
        for table, queued in (
            (store.submissions, self._submissions),
            (store.consents, self._consents),
        ):
            for columns, rows in _by_columns(queued):
                writes.append(self._rows(table, columns, rows, None, times))
        self._new_leads, self._lead_updates, self._submissions, self._consents = {}, {}, [], []
        if writes:
            await self.session.run_sync(_run_writes, writes)

    def _rows(
        self,
        table: sa.Table,
        columns: tuple[str, ...],
        rows: list[dict[str, Any]],
        key: str | None,
        times: dict[Any, Any],
    ) -> Write:
        """The statement for `columns` (an UPDATE by `key`, else an INSERT) and its rows
        as the driver stores them, in the statement's column order (`times`: the times
        converted so far)."""
        if key is not None:
            columns = (*(c for c in columns if c != key), key)
            statement = _update_statement(columns[:-1], self.dialect)
        else:
            statement = _insert_statement(table, columns, self.dialect)
        kinds = _kinds(table, columns)
        time = self._values.time
        out = []
        for row in rows:
            values = [row[name] for name in columns]
            for i, kind in kinds:
                value = values[i]
                if kind is _JSON:
                    values[i] = _json(value)
                elif value in times:
                    values[i] = times[value]
                else:
                    values[i] = times[value] = time(value)
            out.append(tuple(values))
        return statement, out


Read = tuple[tuple[str, ...], str, tuple[str, ...]]  # the columns read, the SQL, its values
Write = tuple[BulkStatement, list[tuple[Any, ...]]]


def _reads(dialect: str, keys: list[str], emails: list[str], phones: list[str]) -> list[Read]:
    """The preload's statements and their parameters: submissions by key, leads by
    email or phone, CHUNK values per list."""
    reads: list[Read] = []
    for start in range(0, len(keys), CHUNK):
        chunk = _padded(keys[start : start + CHUNK])
        reads.append((KEYED_COLUMNS, _select_keyed(dialect, len(chunk)), tuple(chunk)))
    if len(emails) <= CHUNK and len(phones) <= CHUNK:
        pairs = [(emails, phones)] if emails or phones else []
    else:
        pairs = [(emails[i : i + CHUNK], []) for i in range(0, len(emails), CHUNK)]
        pairs += [([], phones[i : i + CHUNK]) for i in range(0, len(phones), CHUNK)]
    for by_email, by_phone in pairs:
        by_email, by_phone = _padded(by_email), _padded(by_phone)
        sql = _select_leads(dialect, len(by_email), len(by_phone))
        reads.append((LEAD_COLUMNS, sql, (*by_email, *by_phone)))
    return reads


def _padded(values: list[str]) -> list[str]:
    """`values`, the last one repeated up to a power of two: a few statement texts
    serve every group size (PostgreSQL prepares each text once per connection)."""
    if not values:
        return values
    size = 1 << (len(values) - 1).bit_length()
    return values + [values[-1]] * (size - len(values))


@functools.cache
def _select_keyed(dialect: str, count: int) -> str:
    marks = ", ".join(placeholders(dialect, count))
    columns = ", ".join(KEYED_COLUMNS)
    return f"SELECT {columns} FROM submissions WHERE dedupe_key IN ({marks})"


@functools.cache
def _select_leads(dialect: str, emails: int, phones: int) -> str:
    marks = placeholders(dialect, emails + phones)
    conditions = []
    if emails:
        conditions.append(f"email IN ({', '.join(marks[:emails])})")
    if phones:
        conditions.append(f"phone IN ({', '.join(marks[emails:])})")
    return f"SELECT {', '.join(LEAD_COLUMNS)} FROM leads WHERE {' OR '.join(conditions)}"


@functools.cache
def _lead_reader(dialect: str) -> Callable[[Sequence[Any]], tuple[Any, ...]]:
    """Driver rows of LEAD_COLUMNS → the values their column types give back."""
    return Values(dialect).reader([store.leads.c[name] for name in LEAD_COLUMNS])


def _run_reads(session: Session, reads: list[Read]) -> list[list[Any]]:
    connection = session.connection()
    return [list(connection.exec_driver_sql(sql, values).all()) for _, sql, values in reads]


def _run_writes(session: Session, writes: list[Write]) -> None:
    for statement, rows in writes:
        statement.run_in(session, rows)


def _json(value: Any) -> str:
    """JSON text as the column type writes it (None is the JSON null). Values orjson
    does not take (platform numbers kept as written, integers past 64 bits) go through
    the standard library, as SQLAlchemy's own serializer would."""
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return json_module.dumps(value)


_JSON, _TIME = "json", "time"


@functools.cache
def _kinds(table: sa.Table, columns: tuple[str, ...]) -> tuple[tuple[int, str], ...]:
    """The positions of `columns` whose column type converts the value before the
    driver gets it (JSON text, stored times), with which conversion."""
    kinds = []
    for i, name in enumerate(columns):
        kind = table.c[name].type
        if isinstance(kind, sa.JSON):
            kinds.append((i, _JSON))
        elif isinstance(kind, sa.types.TypeDecorator) and isinstance(kind.impl, sa.DateTime):
            kinds.append((i, _TIME))
    return tuple(kinds)


@functools.cache
def _insert_statement(table: sa.Table, columns: tuple[str, ...], dialect: str) -> BulkStatement:
    return BulkStatement.insert(table, columns, dialect)


@functools.cache
def _update_statement(columns: tuple[str, ...], dialect: str) -> BulkStatement:
    return BulkStatement.update(store.leads, columns, "lead_id", dialect)


def _by_columns(rows: Iterable[dict[str, Any]]) -> list[tuple[tuple[str, ...], list[Any]]]:
    """Rows grouped by the columns they carry (accepted and quarantined submissions
    differ; rows queued by one call site carry theirs in the same order)."""
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(tuple(row), []).append(row)
    return list(groups.items())


class CaptureUnitOfWork(UnitOfWork):
    """Capture's unit of work: `submissions` is this transaction's `SubmissionRepository`,
    flushed just before the commit."""

    submissions: SubmissionRepository

    async def __aenter__(self) -> CaptureUnitOfWork:
        await super().__aenter__()
        self.submissions = SubmissionRepository(self.session, self.dialect, self.values)
        self.before_commit(self.submissions.flush)
        return self
