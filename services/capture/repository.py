"""Capture's unit of work and its submission repository: preloaded reads, writes at commit.

A batch of submissions (one or many, the same road) reads what it may look up with one
query per table (`preload`), decides each submission in memory in arrival order, and
writes leads, submissions and consents with one multi-row statement per table just
before the unit of work commits.
"""

from __future__ import annotations

import functools
import json as json_module
from collections.abc import Iterable
from types import SimpleNamespace
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from services.capture import store
from shared.db.bulk import BulkStatement, Values
from shared.db.uow import UnitOfWork

# Rows are plain namespaces here: the handler reads them by attribute, like sa.Row.
Row = Any


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
        """One query per table for everything the batch may look up."""
        for row in await store.find_submissions_by_keys(self.session, set(keys)):
            self._by_key[row.dedupe_key] = row
        for row in await store.find_leads(self.session, set(emails), set(phones)):
            self._remember(SimpleNamespace(**row._mapping))

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
        self._remember(SimpleNamespace(**{"erased_at": None, **values}))

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
        """Write the batch: one multi-row statement per table, built once per column set.

        The rows are turned into what the driver stores (`Values`: the column types'
        own conversions), so no statement is compiled and no value goes through
        SQLAlchemy's per-row processing.
        """
        for rows in _by_columns(list(self._new_leads.values())):
            await self._insert(store.leads, rows)
        for rows in _by_columns([{**v, "lead_id": k} for k, v in self._lead_updates.items()]):
            await self._update_leads(rows)
        for rows in _by_columns(self._submissions):
            await self._insert(store.submissions, rows)
        for rows in _by_columns(self._consents):
            await self._insert(store.consents, rows)

    async def _insert(self, table: sa.Table, rows: list[dict[str, Any]]) -> None:
        """Insert rows that all carry the same columns (omitted columns stay NULL)."""
        columns = tuple(rows[0])
        statement = _insert_statement(table, columns, self.dialect)
        await statement.run_async(self.session, [self._row(table, columns, row) for row in rows])

    async def _update_leads(self, rows: list[dict[str, Any]]) -> None:
        """Update leads that all change the same columns (`lead_id` is the key)."""
        columns = tuple(name for name in rows[0] if name != "lead_id")
        statement = _update_statement(columns, self.dialect)
        await statement.run_async(
            self.session, [self._row(store.leads, (*columns, "lead_id"), row) for row in rows]
        )

    def _row(
        self, table: sa.Table, columns: tuple[str, ...], row: dict[str, Any]
    ) -> tuple[Any, ...]:
        """One row's values in `columns` order, as the driver stores them."""
        kinds = _KINDS[table.name]
        time = self._values.time
        values = []
        for name in columns:
            kind, value = kinds.get(name), row[name]
            values.append(
                time(value) if kind == "time" else _json(value) if kind == "json" else value
            )
        return tuple(values)


def _json(value: Any) -> str:
    """JSON text as the column type writes it (None is the JSON null). Values orjson
    does not take (platform numbers kept as written, integers past 64 bits) go through
    the standard library, as SQLAlchemy's own serializer would."""
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return json_module.dumps(value)


def _kinds(table: sa.Table) -> dict[str, str]:
    """Which columns need the time or JSON conversion of their column type."""
    kinds: dict[str, str] = {}
    for column in table.columns:
        if isinstance(column.type, sa.JSON):
            kinds[column.name] = "json"
        elif isinstance(column.type, sa.types.TypeDecorator) and isinstance(
            column.type.impl, sa.DateTime
        ):
            kinds[column.name] = "time"
    return kinds


_KINDS = {table.name: _kinds(table) for table in (store.leads, store.submissions, store.consents)}


@functools.cache
def _insert_statement(table: sa.Table, columns: tuple[str, ...], dialect: str) -> BulkStatement:
    return BulkStatement.insert(table, columns, dialect)


@functools.cache
def _update_statement(columns: tuple[str, ...], dialect: str) -> BulkStatement:
    return BulkStatement.update(store.leads, columns, "lead_id", dialect)


def _by_columns(rows: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Rows grouped by their keys (accepted and quarantined submissions differ), each
    row's values in its group's key order."""
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for row in rows:
        columns = tuple(sorted(row))
        groups.setdefault(columns, []).append({name: row[name] for name in columns})
    return list(groups.values())


class CaptureUnitOfWork(UnitOfWork):
    """Capture's unit of work: `submissions` is this transaction's `SubmissionRepository`,
    flushed just before the commit."""

    submissions: SubmissionRepository

    async def __aenter__(self) -> CaptureUnitOfWork:
        await super().__aenter__()
        self.submissions = SubmissionRepository(self.session, self.dialect, self.values)
        self.before_commit(self.submissions.flush)
        return self
