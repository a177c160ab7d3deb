"""The lead cache's statements: what it reads before a batch and the bulk writes it flushes.

Rows are read as named tuples (attribute access like `sa.Row`, immutable, cheap to
copy) and written back through `BulkStatement`s, one statement per table, with
their values converted as the driver stores them (see shared.db.bulk).
"""

from __future__ import annotations

import collections
import functools
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from services.nurture import store
from shared.db.bulk import Values
from shared.db.statement_sets import StatementSet, insert, update

LEAD_COLUMNS = tuple(c.name for c in store.leads.columns)
assert LEAD_COLUMNS[0] == "lead_id"  # the update's key: the rest are its columns
RUN_COLUMNS = tuple(c.name for c in store.enrollments.columns)
# Rows as the handlers see them: attribute access like `sa.Row`, immutable, cheap to copy.
LeadRow: Any = collections.namedtuple("LeadRow", LEAD_COLUMNS)  # type: ignore[misc]
RunRow: Any = collections.namedtuple("RunRow", RUN_COLUMNS)  # type: ignore[misc]

RUN_CHANGES = ("status", "exit_reason", "ended_at")
SEND_COLUMNS = (
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
SUPPRESSION_COLUMNS = ("email_hash", "reason", "lead_id", "created_at")

_IDS: sa.BindParameter[Any] = sa.bindparam("ids", expanding=True)
SELECT_LEADS = (
    sa.select(store.leads)
    .where(store.leads.c.lead_id.in_(_IDS))
    .order_by(store.leads.c.lead_id)
    .with_for_update()
)
SELECT_RUNS = (
    sa.select(store.enrollments)
    .where(store.enrollments.c.lead_id.in_(_IDS))
    .order_by(store.enrollments.c.enrolled_at, store.enrollments.c.run)
)
SELECT_SUPPRESSED = sa.select(store.suppressions.c.email_hash).where(
    store.suppressions.c.email_hash.in_(_IDS)
)


def send_row(values: dict[str, Any], convert: Values) -> tuple[Any, ...]:
    """A new send (as `send_queue.insert_send` takes it) as the bulk insert's row."""
    time, json = convert.time, convert.json
    due = values["due_at"]
    return (
        values["send_id"],
        values["kind"],
        values["lead_id"],
        values.get("enrollment_id"),
        values.get("sequence_id"),
        values.get("step"),
        values.get("step_id"),
        values["status"],
        time(due),
        time(values.get("next_attempt_at", due)),
        values.get("claims", 0),
        values.get("attempts", 0),
        json(values.get("links", {})),
        json(values.get("clicked_links", [])),
        values.get("opens", 0),
        values.get("clicks", 0),
        time(values["created_at"]),
    )


def bare_lead(lead_id: str, now: datetime) -> dict[str, Any]:
    """The whole row `store.ensure_lead` inserts for a lead nurture has not seen yet."""
    return {**dict.fromkeys(LEAD_COLUMNS), **store.bare_lead(lead_id, now)}


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
def writers(
    dialect: str,
) -> tuple[Callable[[Any], tuple[Any, ...]], Callable[[Any], tuple[Any, ...]]]:
    values = Values(dialect)
    return (
        _row_writer(store.leads, LEAD_COLUMNS, values),
        _row_writer(store.enrollments, RUN_COLUMNS, values),
    )


class Statements(StatementSet):
    """The batch's writes, in the driver's terms (see shared.db.bulk): `Statements.of(dialect)`."""

    insert_leads = insert(store.leads, LEAD_COLUMNS)
    update_leads = update(store.leads, LEAD_COLUMNS[1:], "lead_id")
    insert_runs = insert(store.enrollments, RUN_COLUMNS)
    update_runs = update(store.enrollments, RUN_CHANGES, "enrollment_id")
    insert_sends = insert(store.sends, SEND_COLUMNS)
    insert_suppressions = insert(store.suppressions, SUPPRESSION_COLUMNS, ignore=True)
