"""The router's tables: lead snapshots, assignments, strategy state, the delivery queue,
received outcomes, per-destination rate limits."""

from __future__ import annotations

import sqlalchemy as sa

from shared.db.rows import row_by_key as row_by_key
from shared.db.tables import (
    channel_column,
    flags,
    json_columns,
    lead_contact_columns,
    lead_id_column,
    service_metadata,
    stamps,
    times,
)

metadata, outbox, inbox = service_metadata()

# The lead as the router last saw it (from lead.scored): what destinations are sent.
leads = sa.Table(
    "leads",
    metadata,
    lead_id_column(primary_key=True),
    *lead_contact_columns(),
    channel_column(nullable=False),
    sa.Column("form_id", sa.String(200), nullable=True),
    sa.Column("form_type", sa.String(100), nullable=True),
    sa.Column("score", sa.Float, nullable=True),
    sa.Column("grade", sa.String(8), nullable=True),
    *flags("is_test", default=False),
    *times("captured_at", "updated_at"),
    *stamps("erased_at"),
)

ACTIVE = ("open", "acknowledged", "queued")

assignments = sa.Table(
    "assignments",
    metadata,
    sa.Column("assignment_id", sa.String(36), primary_key=True),
    lead_id_column(nullable=False, index=True),
    sa.Column("rep_id", sa.String(100), nullable=True),
    sa.Column("queue", sa.String(100), nullable=True),
    sa.Column("rule_id", sa.String(100), nullable=False),
    # open → acknowledged | reassigned (SLA breach) | closed (outcome); queued: no rep.
    sa.Column("status", sa.String(16), nullable=False),
    *json_columns("reason"),
    sa.Column("reassigned_from", sa.String(36), nullable=True),
    sa.Column("reassignments", sa.Integer, nullable=False, default=0),
    sa.Column("cause_event_id", sa.String(200), nullable=True),
    *times("captured_at"),
    *times("created_at", index=True),
    *times("sla_due_at", nullable=True, index=True),
    *stamps("acknowledged_at", "breached_at", "delivered_at", "closed_at"),
    # A rep's load today (`store.loads_since`) is counted in this index alone.
    sa.Index("ix_assignments_rep_load", "rep_id", "created_at", "status"),
)

# Strategy state per rule (round-robin cursor, weighted credits) and the routing lock row.
routing_state = sa.Table(
    "routing_state",
    metadata,
    sa.Column("key", sa.String(100), primary_key=True),
    *json_columns("state"),
    *times("updated_at"),
)

PENDING, DELIVERED, FAILED, CANCELLED = "pending", "delivered", "failed", "cancelled"

# The delivery queue: one row per (assignment, destination, purpose).
deliveries = sa.Table(
    "deliveries",
    metadata,
    sa.Column("delivery_id", sa.String(36), primary_key=True),
    sa.Column("assignment_id", sa.String(36), nullable=False, index=True),
    lead_id_column(nullable=False, index=True),
    sa.Column("destination", sa.String(100), nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("purpose", sa.String(16), nullable=False),  # assigned | reassigned | escalation
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("claims", sa.Integer, nullable=False, default=0),
    *times("next_attempt_at"),
    *stamps("claimed_until"),
    sa.Column("last_error", sa.Text, nullable=True),
    sa.Column("last_status", sa.Integer, nullable=True),
    sa.Column("external_id", sa.String(200), nullable=True, index=True),
    # Progress of multi-step destinations (Pipedrive: the person id once created).
    *json_columns("progress"),
    sa.Column("redrives", sa.Integer, nullable=False, default=0),
    *times("created_at"),
    *stamps("delivered_at", "failed_at"),
    sa.UniqueConstraint("assignment_id", "destination", "purpose"),
    sa.Index("ix_deliveries_due", "status", "next_attempt_at"),
)

# Per-destination rate limit (a rolling window of request times) and pauses (429, quotas).
destination_state = sa.Table(
    "destination_state",
    metadata,
    sa.Column("destination", sa.String(100), primary_key=True),
    *json_columns("sent"),
    *stamps("paused_until"),
    *times("updated_at"),
)

outcomes = sa.Table(
    "outcomes",
    metadata,
    sa.Column("outcome_id", sa.String(200), primary_key=True),
    lead_id_column(nullable=False, index=True),
    sa.Column("kind", sa.String(16), nullable=False),
    *times("received_at"),
)

LOCK_KEY = "__routing_lock__"
