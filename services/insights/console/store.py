"""The console's read model: a searchable profile and a timeline per lead, and their queries.

Unlike the funnel tables these hold personal data (the contact of the newest
capture), so `lead.erased` empties them: the profile keeps only ids, channel,
grade and times, and the timeline keeps nothing but the erasure (a tombstone).
They are written by `ConsoleRepository` (repository.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from services.insights.store import leads as funnel_leads
from services.insights.store import metadata
from shared.db.statements import utc_day
from shared.db.tables import (
    channel_column,
    column_names,
    event_id_column,
    json_columns,
    lead_id_column,
    stamps,
    times,
)

# The newest capture's contact, by column and length; searches match the indexed
# lower-cased `_lc` copies.
CONTACT_LENGTHS = {
    "email": 320,
    "email_lc": 320,
    "first_name": 200,
    "last_name": 200,
    "name_lc": 401,
    "company": 300,
    "company_lc": 300,
    "job_title": 300,
    "phone": 40,
    "country": 8,
}
CONTACT_COLUMNS = tuple(CONTACT_LENGTHS)

profiles = sa.Table(
    "console_leads",
    metadata,
    lead_id_column(primary_key=True),
    *(
        sa.Column(name, sa.String(length), nullable=True, index=name.endswith("_lc"))
        for name, length in CONTACT_LENGTHS.items()
    ),
    channel_column(nullable=True),
    # How sure the channel is: 2 from a capture's first touch, 1 from a score or a routing.
    sa.Column("channel_rank", sa.SmallInteger, nullable=False, default=0),
    *stamps("captured_at"),
    sa.Column("grade", sa.String(8), nullable=True),
    sa.Column("score", sa.Float, nullable=True),
    *stamps("graded_at", "erased_at"),
    *times("updated_at"),
    # Keyset pagination newest/oldest first, alone or within a channel or a grade.
    sa.Index("ix_console_leads_captured", "captured_at", "lead_id"),
    sa.Index("ix_console_leads_channel_captured", "channel", "captured_at", "lead_id"),
    sa.Index("ix_console_leads_grade_captured", "grade", "captured_at", "lead_id"),
)

# One row per event of a lead (the primary key also serves `WHERE lead_id = ?`).
timeline = sa.Table(
    "console_timeline",
    metadata,
    lead_id_column(primary_key=True),
    event_id_column(primary_key=True),
    sa.Column("kind", sa.String(32), nullable=False),
    *times("at"),
    *json_columns("data"),
)

PROFILE_COLUMNS = column_names(profiles)
TIMELINE_COLUMNS = column_names(timeline)

# Queries ---------------------------------------------------------------------------------

PAGE_SIZE = 50


@dataclass(frozen=True)
class LeadSearch:
    """The leads page's filters, sort and position (keyset: after this time and id)."""

    q: str = ""
    channel: str = ""
    grade: str = ""
    since: datetime | None = None
    until: datetime | None = None
    newest_first: bool = True
    after: tuple[datetime, str] | None = None
    limit: int = PAGE_SIZE


def _prefix(column: sa.ColumnElement[Any], text: str) -> sa.ColumnElement[bool]:
    # A range, not LIKE: a plain b-tree index serves it on both databases.
    return sa.and_(column >= text, column < text + "\uffff")


async def search_leads(session: AsyncSession, search: LeadSearch) -> list[Any]:
    """One page of leads (one more row than `limit` tells there is a next page)."""
    p, f = profiles, funnel_leads
    query = (
        sa.select(
            p.c.lead_id,
            p.c.email,
            p.c.first_name,
            p.c.last_name,
            p.c.company,
            p.c.channel,
            p.c.grade,
            p.c.score,
            p.c.captured_at,
            p.c.erased_at,
            f.c.sales_ready_at,
            f.c.routed_at,
            f.c.converted_at,
            f.c.is_test,
        )
        .select_from(p.outerjoin(f, f.c.lead_id == p.c.lead_id))
        .where(p.c.captured_at.is_not(None))
    )
    q = search.q.strip().lower()
    if q:
        if "@" in q:
            query = query.where(_prefix(p.c.email_lc, q))
        else:
            query = query.where(
                sa.or_(
                    p.c.lead_id == search.q.strip(),
                    _prefix(p.c.email_lc, q),
                    _prefix(p.c.name_lc, q),
                    _prefix(p.c.company_lc, q),
                )
            )
    if search.channel:
        query = query.where(p.c.channel == search.channel)
    if search.grade:
        query = query.where(p.c.grade == search.grade)
    if search.since is not None:
        query = query.where(p.c.captured_at >= search.since)
    if search.until is not None:
        query = query.where(p.c.captured_at < search.until)
    if search.after is not None:
        at, lead_id = search.after
        if search.newest_first:
            query = query.where(
                sa.or_(p.c.captured_at < at, sa.and_(p.c.captured_at == at, p.c.lead_id < lead_id))
            )
        else:
            query = query.where(
                sa.or_(p.c.captured_at > at, sa.and_(p.c.captured_at == at, p.c.lead_id > lead_id))
            )
    if search.newest_first:
        query = query.order_by(p.c.captured_at.desc(), p.c.lead_id.desc())
    else:
        query = query.order_by(p.c.captured_at.asc(), p.c.lead_id.asc())
    rows = await session.execute(query.limit(search.limit + 1))
    return list(rows)


async def get_profile(session: AsyncSession, lead_id: str) -> Any | None:
    """The lead's profile and funnel facts, or None."""
    p, f = profiles, funnel_leads
    row = await session.execute(
        sa.select(
            p,
            f.c.sales_ready_at,
            f.c.routed_at,
            f.c.speed_to_lead_ms,
            f.c.converted_at,
            f.c.disqualified_at,
            f.c.engaged_at,
            f.c.unsubscribed_at,
            f.c.delivery_failed_at,
            f.c.is_test,
        )
        .select_from(p.outerjoin(f, f.c.lead_id == p.c.lead_id))
        .where(p.c.lead_id == lead_id)
    )
    return row.first()


async def lead_timeline(session: AsyncSession, lead_id: str) -> Sequence[Any]:
    """Every entry of a lead, oldest first."""
    rows = await session.execute(
        sa.select(timeline.c.kind, timeline.c.at, timeline.c.data, timeline.c.event_id)
        .where(timeline.c.lead_id == lead_id)
        .order_by(timeline.c.at, timeline.c.event_id)
    )
    return list(rows)


async def leads_per_day(session: AsyncSession, start: datetime, end: datetime) -> dict[str, int]:
    """New (non-test) leads per UTC day of first capture in [start, end)."""
    f = funnel_leads
    day = utc_day(f.c.captured_at)
    rows = await session.execute(
        sa.select(day.label("day"), sa.func.count())
        .where(
            f.c.captured_at >= start,
            f.c.captured_at < end,
            f.c.is_test.is_(False),
            f.c.channel.is_not(None),
        )
        .group_by(day)
    )
    return {str(d): int(n) for d, n in rows}
