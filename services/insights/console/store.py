"""The console's read model: a searchable profile and a timeline per lead.

Unlike the funnel tables these hold personal data (the contact of the newest
capture), so `lead.erased` empties them: the profile keeps only ids, channel,
grade and times, and the timeline keeps nothing but the erasure (a tombstone).

Writes are cheap by design: a consumer batch queues its timeline entries and
profile changes in memory (`ConsoleBatch`) and writes them when the unit of work
commits, in one statement per kind; profiles are merged in SQL (ON CONFLICT ...
DO UPDATE), so no profile row is read before it is written. Inside a savepoint
(the consumer's one-by-one path) each event writes at once.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from services.insights.store import leads as funnel_leads
from services.insights.store import metadata
from shared.db import UnitOfWork
from shared.db.bulk import BulkStatement, Values
from shared.db.types import JSONType, UTCDateTime, utcnow

profiles = sa.Table(
    "console_leads",
    metadata,
    sa.Column("lead_id", sa.String(64), primary_key=True),
    sa.Column("email", sa.String(320), nullable=True),
    sa.Column("email_lc", sa.String(320), nullable=True, index=True),
    sa.Column("first_name", sa.String(200), nullable=True),
    sa.Column("last_name", sa.String(200), nullable=True),
    sa.Column("name_lc", sa.String(401), nullable=True, index=True),
    sa.Column("company", sa.String(300), nullable=True),
    sa.Column("company_lc", sa.String(300), nullable=True, index=True),
    sa.Column("job_title", sa.String(300), nullable=True),
    sa.Column("phone", sa.String(40), nullable=True),
    sa.Column("country", sa.String(8), nullable=True),
    sa.Column("channel", sa.String(100), nullable=True),
    # How sure the channel is: 2 from a capture's first touch, 1 from a score or a routing.
    sa.Column("channel_rank", sa.SmallInteger, nullable=False, default=0),
    sa.Column("captured_at", UTCDateTime(), nullable=True),
    sa.Column("grade", sa.String(8), nullable=True),
    sa.Column("score", sa.Float, nullable=True),
    sa.Column("graded_at", UTCDateTime(), nullable=True),
    sa.Column("erased_at", UTCDateTime(), nullable=True),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    # Keyset pagination newest/oldest first, alone or within a channel or a grade.
    sa.Index("ix_console_leads_captured", "captured_at", "lead_id"),
    sa.Index("ix_console_leads_channel_captured", "channel", "captured_at", "lead_id"),
    sa.Index("ix_console_leads_grade_captured", "grade", "captured_at", "lead_id"),
)

# One row per event of a lead (the primary key also serves `WHERE lead_id = ?`).
timeline = sa.Table(
    "console_timeline",
    metadata,
    sa.Column("lead_id", sa.String(64), primary_key=True),
    sa.Column("event_id", sa.String(200), primary_key=True),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("at", UTCDateTime(), nullable=False),
    sa.Column("data", JSONType(), nullable=False),
)

CONTACT_COLUMNS = (
    "email",
    "email_lc",
    "first_name",
    "last_name",
    "name_lc",
    "company",
    "company_lc",
    "job_title",
    "phone",
    "country",
)
PROFILE_COLUMNS = (
    "lead_id",
    *CONTACT_COLUMNS,
    "channel",
    "channel_rank",
    "captured_at",
    "grade",
    "score",
    "graded_at",
    "erased_at",
    "updated_at",
)
TIMELINE_COLUMNS: tuple[str, ...] = ("lead_id", "event_id", "kind", "at", "data")


@dataclass(slots=True)
class ProfileChange:
    """What a batch learned about one lead; None means "nothing new"."""

    contact: tuple[str | None, ...] | None = None  # CONTACT_COLUMNS order
    channel: str | None = None
    channel_rank: int = 0
    captured_at: datetime | None = None
    grade: str | None = None
    score: float | None = None
    graded_at: datetime | None = None
    erased_at: datetime | None = None

    def merge(self, other: ProfileChange) -> None:
        """Fold a later change of the same lead in (same rules as the SQL merge)."""
        if other.contact is not None:
            self.contact = tuple(
                new if new is not None else old
                for new, old in zip(other.contact, self.contact or (None,) * 10, strict=True)
            )
        if other.channel is not None and other.channel_rank > self.channel_rank:
            self.channel, self.channel_rank = other.channel, other.channel_rank
        if other.captured_at is not None and (
            self.captured_at is None or other.captured_at < self.captured_at
        ):
            self.captured_at = other.captured_at
        if other.graded_at is not None and (
            self.graded_at is None or other.graded_at > self.graded_at
        ):
            self.grade, self.score, self.graded_at = other.grade, other.score, other.graded_at
        self.erased_at = self.erased_at or other.erased_at


def contact_values(
    email: str | None,
    first_name: str | None,
    last_name: str | None,
    company: str | None,
    job_title: str | None,
    phone: str | None,
    country: str | None,
) -> tuple[str | None, ...]:
    """The contact columns, with the lower-cased search keys."""
    name = " ".join(p for p in (first_name, last_name) if p) or None
    return (
        email,
        email.lower() if email else None,
        first_name,
        last_name,
        name.lower() if name else None,
        company,
        company.lower() if company else None,
        job_title,
        phone,
        country,
    )


class ConsoleBatch:
    """The profile changes and timeline rows of one transaction."""

    def __init__(self, uow: UnitOfWork) -> None:
        self.session = uow.session
        self.dialect = uow.dialect
        self.values = Values(uow.dialect)
        self._statements = _statements(uow.dialect)
        self._changes: dict[str, ProfileChange] = {}
        self._rows: list[tuple[Any, ...]] = []
        self._erased: set[str] = set()
        sa.event.listen(self.session.sync_session, "before_commit", self._flush)

    @classmethod
    def of(cls, uow: UnitOfWork) -> ConsoleBatch:
        """The batch of this unit of work's transaction."""
        info = uow.session.info
        batch = info.get("console_batch")
        if batch is None:
            batch = info["console_batch"] = cls(uow)
        return batch  # type: ignore[no-any-return]

    async def add(
        self,
        lead_id: str,
        event_id: str,
        kind: str,
        at: datetime,
        data: dict[str, Any],
        change: ProfileChange | None,
    ) -> None:
        """Queue one timeline entry (and what it says about the lead's profile)."""
        row = (lead_id, event_id, kind, self.values.time(at), self.values.json(data))
        if self.session.in_nested_transaction():
            await self._write_now(lead_id, row, change)
            return
        self._rows.append(row)
        if change is not None:
            known = self._changes.get(lead_id)
            if known is None:
                self._changes[lead_id] = change
            else:
                known.merge(change)
            if change.erased_at is not None:
                self._erased.add(lead_id)

    def _profile_rows(self, changes: dict[str, ProfileChange]) -> list[tuple[Any, ...]]:
        time, now = self.values.time, self.values.time(utcnow())
        empty = (None,) * len(CONTACT_COLUMNS)
        return [
            (
                lead_id,
                *(empty if c.erased_at is not None else (c.contact or empty)),
                c.channel,
                c.channel_rank,
                time(c.captured_at),
                c.grade,
                c.score,
                time(c.graded_at),
                time(c.erased_at),
                now,
            )
            for lead_id, c in changes.items()
        ]

    def _flush(self, session: Session) -> None:
        # Inside the commit, in SQLAlchemy's greenlet (see services.insights.store).
        if session.in_nested_transaction():
            return
        rows, self._rows = self._rows, []
        changes, self._changes = self._changes, {}
        erased, self._erased = self._erased, set()
        statements = self._statements
        # Profiles first: an erased lead's later entries find its erasure and are skipped.
        statements.profiles.run_in(session, self._profile_rows(changes))
        tombstones = [row for row in rows if row[2] == "erased"]
        statements.timeline.run_in(session, tombstones)
        statements.guarded.run_in(
            session, [statements.guard(row) for row in rows if row[2] != "erased"]
        )
        if erased:
            statements.forget.run_in(session, [(lead_id,) for lead_id in sorted(erased)])

    async def _write_now(
        self, lead_id: str, row: tuple[Any, ...], change: ProfileChange | None
    ) -> None:
        statements, session = self._statements, self.session
        if change is not None:
            await statements.profiles.run_async(session, self._profile_rows({lead_id: change}))
        if row[2] == "erased":
            await statements.timeline.run_async(session, [row])
            await statements.forget.run_async(session, [(lead_id,)])
        else:
            await statements.guarded.run_async(session, [statements.guard(row)])


@dataclass(frozen=True)
class _Statements:
    timeline: BulkStatement
    guarded: BulkStatement  # a timeline row, unless its lead is erased
    profiles: BulkStatement
    forget: BulkStatement
    repeat_lead: bool  # SQLite's `?` cannot name the lead id twice

    def guard(self, row: tuple[Any, ...]) -> tuple[Any, ...]:
        return (*row, row[0]) if self.repeat_lead else row


def _marks(dialect: str, count: int) -> list[str]:
    if dialect == "postgresql":
        return [f"${i}" for i in range(1, count + 1)]
    return ["?"] * count


@functools.cache
def _statements(dialect: str) -> _Statements:
    table = f'"{profiles.name}"'
    erased = f'({table}."erased_at" IS NOT NULL OR excluded."erased_at" IS NOT NULL)'
    newer_grade = (
        'excluded."graded_at" IS NOT NULL AND '
        f'({table}."graded_at" IS NULL OR excluded."graded_at" > {table}."graded_at")'
    )
    sets = [
        f'"{c}" = CASE WHEN {erased} THEN NULL ELSE COALESCE(excluded."{c}", {table}."{c}") END'
        for c in CONTACT_COLUMNS
    ]
    sets += [
        *(
            f'"{c}" = CASE WHEN excluded."channel_rank" > {table}."channel_rank"'
            f' THEN excluded."{c}" ELSE {table}."{c}" END'
            for c in ("channel", "channel_rank")
        ),
        f'"captured_at" = CASE WHEN {table}."captured_at" IS NULL'
        f' OR excluded."captured_at" < {table}."captured_at"'
        f' THEN excluded."captured_at" ELSE {table}."captured_at" END',
        *(
            f'"{c}" = CASE WHEN {newer_grade} THEN excluded."{c}" ELSE {table}."{c}" END'
            for c in ("grade", "score", "graded_at")
        ),
        f'"erased_at" = COALESCE({table}."erased_at", excluded."erased_at")',
        '"updated_at" = excluded."updated_at"',
    ]
    names = ", ".join(f'"{c}"' for c in PROFILE_COLUMNS)
    marks = ", ".join(_marks(dialect, len(PROFILE_COLUMNS)))
    upsert_sql = (
        f"INSERT INTO {table} ({names}) VALUES ({marks})"
        f' ON CONFLICT ("lead_id") DO UPDATE SET {", ".join(sets)}'
    )
    [mark] = _marks(dialect, 1)
    forget_sql = f'DELETE FROM "{timeline.name}" WHERE "lead_id" = {mark} AND "kind" <> \'erased\''
    if dialect == "postgresql":
        # Parameters of a SELECT list have no column to take their type from.
        values = "CAST($1 AS VARCHAR), CAST($2 AS VARCHAR), CAST($3 AS VARCHAR), "
        values += "CAST($4 AS TIMESTAMPTZ), CAST($5 AS JSONB)"
        lead_mark, guard_columns = "$1", TIMELINE_COLUMNS
    else:
        values, lead_mark = "?, ?, ?, ?, ?", "?"
        guard_columns = (*TIMELINE_COLUMNS, "lead_id")
    names = ", ".join(f'"{c}"' for c in TIMELINE_COLUMNS)
    guarded_sql = (
        f'INSERT INTO "{timeline.name}" ({names}) SELECT {values} WHERE NOT EXISTS'
        f' (SELECT 1 FROM {table} WHERE "lead_id" = {lead_mark} AND "erased_at" IS NOT NULL)'
        " ON CONFLICT DO NOTHING"
    )
    return _Statements(
        timeline=BulkStatement.insert(timeline, TIMELINE_COLUMNS, dialect, ignore=True),
        guarded=BulkStatement(guarded_sql, guard_columns),
        profiles=BulkStatement(upsert_sql, PROFILE_COLUMNS),
        forget=BulkStatement(forget_sql, ("lead_id",)),
        repeat_lead=dialect != "postgresql",
    )


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


async def leads_per_day(
    session: AsyncSession, dialect: str, start: datetime, end: datetime
) -> dict[str, int]:
    """New (non-test) leads per UTC day of first capture in [start, end)."""
    f = funnel_leads
    if dialect == "postgresql":
        day: sa.ColumnElement[Any] = sa.func.to_char(
            sa.func.timezone("UTC", f.c.captured_at), "YYYY-MM-DD"
        )
    else:
        # SQLite stores UTC times as ISO text: the day is its first ten characters.
        day = sa.func.substr(sa.cast(f.c.captured_at, sa.String), 1, 10)
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
