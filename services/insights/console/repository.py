"""The console's writes: profile changes and timeline entries, queued per transaction.

Writes are cheap by design: a consumer batch queues its timeline entries and
profile changes in memory (`ConsoleRepository`) and writes them just before the
unit of work commits, in one statement per kind; profiles are merged in SQL (ON
CONFLICT ... DO UPDATE), so no profile row is read before it is written. Inside a
savepoint (the consumer's one-by-one path) each event writes at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from services.insights.bulk_writes import run_writes
from services.insights.console.store import (
    CONTACT_COLUMNS,
    PROFILE_COLUMNS,
    TIMELINE_COLUMNS,
    profiles,
    timeline,
)
from shared.clock import Clock, utc_now
from shared.db import UnitOfWork
from shared.db.bulk import Values
from shared.db.statement_sets import StatementSet, insert, text


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


class ConsoleRepository:
    """The profile changes and timeline rows of one transaction."""

    def __init__(self, uow: UnitOfWork, clock: Clock = utc_now) -> None:
        self.session = uow.session
        self.values: Values = uow.values
        self.clock = clock
        self._statements = _Statements.of(uow.dialect)
        self._changes: dict[str, ProfileChange] = {}
        self._rows: list[tuple[Any, ...]] = []
        self._erased: set[str] = set()
        uow.before_commit(self._write)

    @classmethod
    def of(cls, uow: UnitOfWork) -> ConsoleRepository:
        """The repository of this unit of work's transaction."""
        return uow.cache("insights_console_repository", cls)

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
        time, now = self.values.time, self.values.time(self.clock())
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

    async def _write(self) -> None:
        rows, self._rows = self._rows, []
        changes, self._changes = self._changes, {}
        erased, self._erased = self._erased, set()
        statements = self._statements
        # Profiles first: an erased lead's later entries find its erasure and are skipped.
        await run_writes(
            self.session,
            [
                (statements.upsert_profiles, self._profile_rows(changes)),
                (statements.insert_timeline, [r for r in rows if r[2] == "erased"]),
                (statements.insert_guarded, [r for r in rows if r[2] != "erased"]),
                (statements.forget, [(lead_id,) for lead_id in sorted(erased)]),
            ],
        )

    async def _write_now(
        self, lead_id: str, row: tuple[Any, ...], change: ProfileChange | None
    ) -> None:
        statements, session = self._statements, self.session
        if change is not None:
            await statements.upsert_profiles.run_async(
                session, self._profile_rows({lead_id: change})
            )
        if row[2] == "erased":
            await statements.insert_timeline.run_async(session, [row])
            await statements.forget.run_async(session, [(lead_id,)])
        else:
            await statements.insert_guarded.run_async(session, [row])


def _newer_grade(table: str) -> str:
    return (
        'excluded."graded_at" IS NOT NULL AND '
        f'({table}."graded_at" IS NULL OR excluded."graded_at" > {table}."graded_at")'
    )


def _profile_merge() -> str:
    """The SET list of the profile upsert: the same rules as `ProfileChange.merge`."""
    table = f'"{profiles.name}"'
    erased = f'({table}."erased_at" IS NOT NULL OR excluded."erased_at" IS NOT NULL)'
    newer_grade = _newer_grade(table)
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
    return ", ".join(sets)


def _profile_changes() -> str:
    """The upsert's WHERE: true unless the SET list would change nothing but `updated_at`
    (a routing or score naming a channel the profile already has from a capture), so
    such a change writes no row and none of the profile's seven indexes."""
    table = f'"{profiles.name}"'
    newer_grade = _newer_grade(table)
    return " OR ".join(
        (
            *(f'excluded."{c}" IS NOT NULL' for c in CONTACT_COLUMNS),
            f'excluded."channel_rank" > {table}."channel_rank"',
            f'(excluded."captured_at" IS NOT NULL AND ({table}."captured_at" IS NULL'
            f' OR excluded."captured_at" < {table}."captured_at"))',
            f"({newer_grade})",
            f'(excluded."erased_at" IS NOT NULL AND {table}."erased_at" IS NULL)',
        )
    )


def _names_and_marks(columns: tuple[str, ...]) -> tuple[str, str]:
    """The quoted column list of a hand-written statement and its `:name` parameters."""
    return ", ".join(f'"{c}"' for c in columns), ", ".join(f":{c}" for c in columns)


def _upsert_sql() -> str:
    """The profile upsert: insert, or merge by `_profile_merge` where anything changes."""
    names, marks = _names_and_marks(PROFILE_COLUMNS)
    return (
        f'INSERT INTO "{profiles.name}" ({names}) VALUES ({marks})'
        f' ON CONFLICT ("lead_id") DO UPDATE SET {_profile_merge()} WHERE {_profile_changes()}'
    )


def _guarded_sql() -> str:
    """A timeline row, unless its lead is erased."""
    names, marks = _names_and_marks(TIMELINE_COLUMNS)
    return (
        f'INSERT INTO "{timeline.name}" ({names}) SELECT {marks} WHERE NOT EXISTS'
        f' (SELECT 1 FROM "{profiles.name}" WHERE "lead_id" = :lead_id'
        ' AND "erased_at" IS NOT NULL) ON CONFLICT DO NOTHING'
    )


# A lead's timeline after its erasure: nothing but the erasure itself.
_FORGET_SQL = f'DELETE FROM "{timeline.name}" WHERE "lead_id" = :lead_id AND "kind" <> \'erased\''
# Parameters of a SELECT list have no column to take their type from.
_SELECTED_TYPES = {
    "lead_id": "VARCHAR",
    "event_id": "VARCHAR",
    "kind": "VARCHAR",
    "at": "TIMESTAMPTZ",
    "data": "JSONB",
}


class _Statements(StatementSet):
    """The repository's writes in the driver's terms, per dialect."""

    insert_timeline = insert(timeline, TIMELINE_COLUMNS, ignore=True)
    insert_guarded = text(_guarded_sql(), TIMELINE_COLUMNS, types=_SELECTED_TYPES)
    upsert_profiles = text(_upsert_sql(), PROFILE_COLUMNS)
    forget = text(_FORGET_SQL, ("lead_id",))
