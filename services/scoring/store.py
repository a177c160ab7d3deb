"""Scoring's tables: per-lead state, the event log, the history of changes.

The column tuples name each table's columns (in declaration order, less the key
the writes leave out) in the order the bulk writes of `lead_cache.py` (and the
lead rows of `lead_rows.py`) take them.
"""

from __future__ import annotations

import sqlalchemy as sa

from shared.db.tables import (
    column_names,
    event_id_column,
    flags,
    json_columns,
    lead_id_column,
    serial_id,
    service_metadata,
    stamps,
    times,
)

metadata, outbox, inbox = service_metadata()

# One row per lead: the snapshot, the model's memory and the last score.
lead_scores = sa.Table(
    "lead_scores",
    metadata,
    lead_id_column(primary_key=True),
    *json_columns("snapshot", nullable=True),
    *json_columns("memory"),
    sa.Column("model_version", sa.String(32), nullable=True),
    sa.Column("events", sa.Integer, nullable=False),
    sa.Column("score", sa.Float, nullable=True),
    sa.Column("fit", sa.Float, nullable=True),
    sa.Column("engagement", sa.Float, nullable=True),
    sa.Column("grade", sa.String(8), nullable=True, index=True),
    *flags("sales_ready", "disqualified"),
    *json_columns("reasons"),
    sa.Column("score_version", sa.String(32), nullable=True),
    *stamps("scored_at"),
    # When decay alone changes the grade or sales-readiness: the sweep's work list.
    *times("regrade_due_at", nullable=True, index=True),
    *stamps("erased_at"),
    *times("updated_at"),
)

# Every event that scored a lead, in order: what replay folds again.
score_events = sa.Table(
    "score_events",
    metadata,
    event_id_column(primary_key=True),
    lead_id_column(nullable=False),
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("event_type", sa.String(100), nullable=False),
    *json_columns("payload"),
    *times("occurred_at", "received_at"),
    sa.UniqueConstraint("lead_id", "seq"),
)

# Every change of a lead's score, grade or sales-readiness, with its cause.
score_changes = sa.Table(
    "score_changes",
    metadata,
    serial_id(),
    lead_id_column(nullable=False, index=True),
    *times("at"),
    sa.Column("score", sa.Float, nullable=False),
    sa.Column("fit", sa.Float, nullable=False),
    sa.Column("engagement", sa.Float, nullable=False),
    sa.Column("grade", sa.String(8), nullable=False),
    sa.Column("previous_grade", sa.String(8), nullable=True),
    *flags("sales_ready", "became_sales_ready", "disqualified", "published"),
    sa.Column("model_version", sa.String(32), nullable=False),
    event_id_column("cause_event_id", nullable=False),
    sa.Column("cause_type", sa.String(100), nullable=False),
    *json_columns("reasons"),
)

_STATE_COLUMNS = column_names(lead_scores, without=("lead_id",))
_EVENT_COLUMNS = column_names(score_events)
_CHANGE_COLUMNS = column_names(score_changes, without=("id",))
