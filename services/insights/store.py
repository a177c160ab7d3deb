"""Insights' tables: the per-lead read model, touches, conversions, posted spend.

The read model holds no PII: ids, channel, grade, timestamps and amounts only,
so an erased lead stays counted with nothing left to forget. Money is stored
as integer ten-thousandths (exact on both databases). The lead rows are written
through `LeadCache` (lead_cache.py), spend through `SpendRepository`
(spend_repository.py); the report reads them in report_queries.py.
"""

from __future__ import annotations

import sqlalchemy as sa

from shared.db import add_plumbing_tables, make_metadata
from shared.db.types import UTCDateTime

metadata = make_metadata()
outbox, inbox = add_plumbing_tables(metadata)

leads = sa.Table(
    "leads",
    metadata,
    sa.Column("lead_id", sa.String(64), primary_key=True),
    sa.Column("channel", sa.String(100), nullable=True, index=True),
    sa.Column("channel_rank", sa.SmallInteger, nullable=False, default=0),
    sa.Column("captured_at", UTCDateTime(), nullable=True, index=True),
    sa.Column("is_test", sa.Boolean, nullable=False, default=False),
    sa.Column("grade", sa.String(8), nullable=True),
    sa.Column("graded_at", UTCDateTime(), nullable=True),
    sa.Column("sales_ready_at", UTCDateTime(), nullable=True),
    sa.Column("routed_at", UTCDateTime(), nullable=True),
    sa.Column("speed_to_lead_ms", sa.BigInteger, nullable=True),
    sa.Column("converted_at", UTCDateTime(), nullable=True),
    sa.Column("disqualified_at", UTCDateTime(), nullable=True),
    sa.Column("engaged_at", UTCDateTime(), nullable=True),
    sa.Column("unsubscribed_at", UTCDateTime(), nullable=True),
    sa.Column("delivery_failed_at", UTCDateTime(), nullable=True),
    sa.Column("erased_at", UTCDateTime(), nullable=True),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
)

# One row per submission: repeat touches count for the channel they came through.
touches = sa.Table(
    "touches",
    metadata,
    sa.Column("submission_id", sa.String(64), primary_key=True),
    sa.Column("lead_id", sa.String(64), nullable=False, index=True),
    sa.Column("channel", sa.String(100), nullable=False),
    sa.Column("is_new_lead", sa.Boolean, nullable=False),
    sa.Column("is_test", sa.Boolean, nullable=False),
    sa.Column("cost_units", sa.BigInteger, nullable=True),
    sa.Column("captured_at", UTCDateTime(), nullable=False, index=True),
)

# One row per CRM outcome (deal): a lead may be won more than once.
conversions = sa.Table(
    "conversions",
    metadata,
    sa.Column("lead_id", sa.String(64), primary_key=True),
    sa.Column("outcome_id", sa.String(200), primary_key=True),
    sa.Column("value_units", sa.BigInteger, nullable=False),
    sa.Column("currency", sa.String(16), nullable=False),
    sa.Column("occurred_at", UTCDateTime(), nullable=False),
)

# Spend posted per channel and day; overrides the config for that day.
channel_spend = sa.Table(
    "channel_spend",
    metadata,
    sa.Column("channel", sa.String(100), primary_key=True),
    sa.Column("day", sa.Date, primary_key=True),
    sa.Column("amount_units", sa.BigInteger, nullable=False),
    sa.Column("impressions", sa.BigInteger, nullable=True),
    sa.Column("clicks", sa.BigInteger, nullable=True),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
)
