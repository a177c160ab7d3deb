"""Insights' tables: the per-lead read model, touches, conversions, posted spend.

The read model holds no PII: ids, channel, grade, timestamps and amounts only,
so an erased lead stays counted with nothing left to forget. Money is stored
as integer ten-thousandths (exact on both databases). The lead rows are written
through `LeadCache` (lead_cache.py), spend through `SpendRepository`
(spend_repository.py); the report reads them in report_queries.py.
"""

from __future__ import annotations

import sqlalchemy as sa

from shared.db.tables import flags, lead_id_column, service_metadata, stamps, times

metadata, outbox, inbox = service_metadata()

leads = sa.Table(
    "leads",
    metadata,
    lead_id_column(primary_key=True),
    sa.Column("channel", sa.String(100), nullable=True, index=True),
    sa.Column("channel_rank", sa.SmallInteger, nullable=False, default=0),
    *times("captured_at", nullable=True, index=True),
    *flags("is_test", default=False),
    sa.Column("grade", sa.String(8), nullable=True),
    *stamps("graded_at", "sales_ready_at", "routed_at"),
    sa.Column("speed_to_lead_ms", sa.BigInteger, nullable=True),
    *stamps(
        "converted_at",
        "disqualified_at",
        "engaged_at",
        "unsubscribed_at",
        "delivery_failed_at",
        "erased_at",
    ),
    *times("updated_at"),
)

# One row per submission: repeat touches count for the channel they came through.
touches = sa.Table(
    "touches",
    metadata,
    sa.Column("submission_id", sa.String(64), primary_key=True),
    lead_id_column(nullable=False, index=True),
    sa.Column("channel", sa.String(100), nullable=False),
    *flags("is_new_lead", "is_test"),
    sa.Column("cost_units", sa.BigInteger, nullable=True),
    *times("captured_at", index=True),
)

# One row per CRM outcome (deal): a lead may be won more than once.
conversions = sa.Table(
    "conversions",
    metadata,
    lead_id_column(primary_key=True),
    sa.Column("outcome_id", sa.String(200), primary_key=True),
    sa.Column("value_units", sa.BigInteger, nullable=False),
    sa.Column("currency", sa.String(16), nullable=False),
    *times("occurred_at"),
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
    *times("updated_at"),
)
