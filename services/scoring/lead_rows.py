"""A lead's row and its state: the batch's read of lead rows, and the row a state writes.

The batch reads lead rows through the driver (no SQLAlchemy result processing),
converted to what the column types give back; a lead's state is made from such a
row and written back as one (`state_row`), in the order of `store._STATE_COLUMNS`.
"""

from __future__ import annotations

import functools
from collections import namedtuple
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from services.scoring.leads import LeadState, Snapshot
from services.scoring.scores import Reason, Score
from services.scoring.store import _STATE_COLUMNS, lead_scores
from shared.db.bulk import Values, placeholders
from shared.db.statements import lock_rows
from shared.db.types import OrjsonJSON

_JSON = OrjsonJSON()

# The lead rows with their JSON decoded by orjson.
SELECT_STATES = sa.select(
    *(
        sa.type_coerce(c, _JSON).label(c.name) if isinstance(c.type, sa.JSON) else c
        for c in lead_scores.columns
    )
)


# A lead's row as the batch reads it.
_ROW_COLUMNS: tuple[str, ...] = ("lead_id", *_STATE_COLUMNS)
LeadRow = namedtuple("LeadRow", _ROW_COLUMNS)  # type: ignore[misc]


@functools.cache
def lead_row_reader(dialect: str) -> Callable[[Sequence[Any]], Any]:
    """A driver row of `select_leads` → its `LeadRow`."""
    read = Values(dialect).reader([lead_scores.c[name] for name in _ROW_COLUMNS])
    make = LeadRow._make

    def lead_row(raw: Sequence[Any]) -> Any:
        return make(read(raw))

    return lead_row


def select_leads(dialect: str, lead_ids: Sequence[str]) -> tuple[str, tuple[Any, ...]]:
    """The statement and parameters that read these leads' rows, locked until commit.

    PostgreSQL gets the ids as one array, joined: a generic plan of `lead_id IN ($1, ...)`
    made while the table was nearly empty tests every row against every id (a sequential
    scan, quadratic in effect: 9 ms for a batch of 500 at 4,000 leads).
    """
    if dialect == "postgresql":
        return _select_sql(dialect, 0), (list(lead_ids),)
    return _select_sql(dialect, len(lead_ids)), tuple(lead_ids)


@functools.cache
def _select_sql(dialect: str, count: int) -> str:
    if dialect == "postgresql":
        names = ", ".join(f's."{c}"' for c in _ROW_COLUMNS)
        return (
            f'SELECT {names} FROM unnest($1::varchar[]) AS u(id) JOIN "lead_scores" s'
            ' ON s."lead_id" = u.id FOR UPDATE OF s'
        )
    names = ", ".join(f'"{c}"' for c in _ROW_COLUMNS)
    marks = ", ".join(placeholders(dialect, count))
    return f'SELECT {names} FROM "lead_scores" WHERE "lead_id" IN ({marks})' + lock_rows(dialect)


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
