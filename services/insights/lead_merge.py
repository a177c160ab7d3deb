"""One statement that folds a batch's partial facts of many leads into their rows.

A consumer batch folds each lead's events into facts that start empty (`PARTIAL`):
what the batch alone says about the lead. `merge_statement` inserts the lead's row
with those facts, or merges them into the stored row in SQL by the same rules as
`LeadFacts` (earliest time wins, newest score wins, a surer channel source wins), so
no row is read before it is written. Folding the stored facts and then the batch's
events one by one gives the same row as merging the batch's fold into the stored one:

- channel: the batch's channel if its rank is higher (ties keep the stored one);
- is_test: set by a new lead's capture, or by a score while no new lead's capture was
  seen; the batch's value (None when its events set nothing) wins unless the stored
  row already holds a new lead's capture and the batch holds none;
- grade: the batch's newest score if it is at least as new as the stored one;
- routed_at and speed-to-lead: the batch's earliest routing if strictly earlier;
- captured_at, sales_ready_at and every milestone: the earliest.
"""

from __future__ import annotations

import functools
from typing import Any

from services.insights.lead_facts import RANK_FIRST_TOUCH, LeadFacts
from services.insights.store import MILESTONES, leads
from shared.db.bulk import BulkStatement

# A lead's facts before its batch's events: `is_test` None means "no event set it".
PARTIAL = LeadFacts()._with(is_test=None)

_EARLIEST = ("captured_at", "sales_ready_at", *MILESTONES)

# The statement's parameters, in the order of `row`: the table's columns.
COLUMNS = tuple(column.name for column in leads.columns)


def row(lead_id: str, facts: LeadFacts, time: Any, now: Any) -> tuple[Any, ...]:
    """The statement's parameters for one lead; `time` stores a datetime as the driver
    does (`shared.db.bulk.Values.time`), `now` is the stored write time."""
    return (
        lead_id,
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
    )


def _sql() -> str:
    table = f'"{leads.name}"'

    def old(column: str) -> str:
        return f'{table}."{column}"'

    def new(column: str) -> str:
        return f'excluded."{column}"'

    def when(condition: str, column: str) -> str:
        return f'"{column}" = CASE WHEN {condition} THEN {new(column)} ELSE {old(column)} END'

    surer = f"{new('channel_rank')} > {old('channel_rank')}"
    newer_grade = (
        f"{new('graded_at')} IS NOT NULL AND"
        f" ({old('graded_at')} IS NULL OR {new('graded_at')} >= {old('graded_at')})"
    )
    earlier_routing = (
        f"{new('routed_at')} IS NOT NULL AND"
        f" ({old('routed_at')} IS NULL OR {new('routed_at')} < {old('routed_at')})"
    )
    keeps_test_flag = (
        f":is_test IS NULL OR ({old('channel_rank')} = {RANK_FIRST_TOUCH}"
        f" AND {new('channel_rank')} < {RANK_FIRST_TOUCH})"
    )
    sets = [
        when(surer, "channel"),
        when(surer, "channel_rank"),
        f'"is_test" = CASE WHEN {keeps_test_flag} THEN {old("is_test")} ELSE {new("is_test")} END',
        when(newer_grade, "grade"),
        when(newer_grade, "graded_at"),
        when(earlier_routing, "routed_at"),
        when(earlier_routing, "speed_to_lead_ms"),
        *(
            when(f"{new(c)} IS NOT NULL AND ({old(c)} IS NULL OR {new(c)} < {old(c)})", c)
            for c in _EARLIEST
        ),
        f'"updated_at" = {new("updated_at")}',
    ]
    names = ", ".join(f'"{c}"' for c in COLUMNS)
    marks = ", ".join("COALESCE(:is_test, FALSE)" if c == "is_test" else f":{c}" for c in COLUMNS)
    return (
        f"INSERT INTO {table} ({names}) VALUES ({marks})"
        f' ON CONFLICT ("lead_id") DO UPDATE SET {", ".join(sets)}'
    )


@functools.cache
def merge_statement(dialect: str) -> BulkStatement:
    """The insert-or-merge of lead rows, for rows made by `row`."""
    return BulkStatement.text(_sql(), COLUMNS, dialect, types={"is_test": "BOOLEAN"})
