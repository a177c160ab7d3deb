"""Insights' tables: the per-lead read model, touches, conversions, posted spend.

The read model holds no PII: ids, channel, grade, timestamps and amounts only,
so an erased lead stays counted with nothing left to forget. Money is stored
as integer ten-thousandths (exact on both databases). The lead rows are written
through `LeadCache` (lead_cache.py), spend through `SpendRepository`
(spend_repository.py); the report reads them in report_queries.py.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from shared.db.tables import (
    channel_column,
    flags,
    lead_id_column,
    service_metadata,
    stamps,
    times,
)

metadata, outbox, inbox = service_metadata()


def money_columns(*names: str, nullable: bool = False) -> list[sa.Column[Any]]:
    """Money as stored: integer ten-thousandths (`money.MONEY_SCALE`), exact on both
    databases."""
    return [sa.Column(name, sa.BigInteger, nullable=nullable) for name in names]


# What a lead may reach after capture, each kept at its earliest time.
MILESTONES = (
    "converted_at",
    "disqualified_at",
    "engaged_at",
    "unsubscribed_at",
    "delivery_failed_at",
    "erased_at",
)

leads = sa.Table(
    "leads",
    metadata,
    lead_id_column(primary_key=True),
    channel_column(nullable=True, index=True),
    sa.Column("channel_rank", sa.SmallInteger, nullable=False, default=0),
    *times("captured_at", nullable=True, index=True),
    *flags("is_test", default=False),
    sa.Column("grade", sa.String(8), nullable=True),
    *stamps("graded_at", "sales_ready_at", "routed_at"),
    sa.Column("speed_to_lead_ms", sa.BigInteger, nullable=True),
    *stamps(*MILESTONES),
    *times("updated_at"),
)

# One row per submission: repeat touches count for the channel they came through.
touches = sa.Table(
    "touches",
    metadata,
    sa.Column("submission_id", sa.String(64), primary_key=True),
    lead_id_column(nullable=False, index=True),
    channel_column(nullable=False),
    *flags("is_new_lead", "is_test"),
    *money_columns("cost_units", nullable=True),
    *times("captured_at", index=True),
)

# One row per CRM outcome (deal): a lead may be won more than once.
conversions = sa.Table(
    "conversions",
    metadata,
    lead_id_column(primary_key=True),
    sa.Column("outcome_id", sa.String(200), primary_key=True),
    *money_columns("value_units"),
    sa.Column("currency", sa.String(16), nullable=False),
    *times("occurred_at"),
)

# Spend posted per channel and day; overrides the config for that day.
channel_spend = sa.Table(
    "channel_spend",
    metadata,
    channel_column(primary_key=True),
    sa.Column("day", sa.Date, primary_key=True),
    *money_columns("amount_units"),
    sa.Column("impressions", sa.BigInteger, nullable=True),
    sa.Column("clicks", sa.BigInteger, nullable=True),
    *times("updated_at"),
)
