"""Scoring's tables: per-lead state, the event log, the history of changes.

The column tuples name each table's columns in the order the bulk writes of
`lead_cache.py` (and the lead rows of `lead_rows.py`) take them.
"""

from __future__ import annotations

import sqlalchemy as sa

from shared.db import add_plumbing_tables, make_metadata
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
