"""Capture's tables and queries: leads, submissions, consent ledger, retrievals, API keys.

The file is over 300 lines because it holds the five tables' definitions with every
query on them, each a few lines, so a schema change is checked in one file.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from shared.db.statements import insert_ignore
from shared.db.tables import flags, json_columns, lead_id_column, service_metadata, stamps, times

metadata, outbox, inbox = service_metadata()

leads = sa.Table(
    "leads",
    metadata,
    lead_id_column(36, primary_key=True),
    # One lead per person: the database enforces it, not only the code.
    sa.Column("email", sa.String(320), unique=True, nullable=True),
    sa.Column("phone", sa.String(32), unique=True, nullable=True),
    *json_columns("contact", "first_touch", "last_touch"),
    sa.Column("touches", sa.Integer, nullable=False, default=1),
    *times("created_at", "updated_at"),
    *stamps("erased_at"),
)

submissions = sa.Table(
    "submissions",
    metadata,
    sa.Column("submission_id", sa.String(36), primary_key=True),
    lead_id_column(36, nullable=True, index=True),
    sa.Column("source", sa.String(32), nullable=False),
    sa.Column("form_id", sa.String(200), nullable=True),
    # Retries and double-clicks: the same key (per source) is the same submission.
    sa.Column("dedupe_key", sa.String(300), nullable=True, unique=True),
    sa.Column("status", sa.String(16), nullable=False),  # accepted | quarantined | released
    sa.Column("quarantine_reason", sa.String(64), nullable=True, index=True),
    sa.Column("quarantine_detail", sa.String(200), nullable=True),
    sa.Column("channel", sa.String(100), nullable=False),
    # Normalized identity keys of the submitter, so erasure also reaches held-back submissions.
    sa.Column("email", sa.String(320), nullable=True, index=True),
    sa.Column("phone", sa.String(32), nullable=True, index=True),
    *json_columns("payload"),
    # What a quarantined submission needs to be captured on release (cleared then).
    *json_columns("raw", "platform", nullable=True),
    *json_columns("attribution", "consent"),
    sa.Column("client_ip", sa.String(64), nullable=True),
    *flags("is_test", default=False),
    *times("received_at", index=True),
    *stamps("released_at"),
)

consents = sa.Table(
    "consents",
    metadata,
    sa.Column("consent_id", sa.String(36), primary_key=True),
    lead_id_column(36, nullable=False, index=True),
    sa.Column("submission_id", sa.String(36), nullable=False, unique=True),
    sa.Column("source", sa.String(32), nullable=False),
    sa.Column("form_id", sa.String(200), nullable=True),
    *flags("marketing", "double_opt_in"),
    sa.Column("text", sa.Text, nullable=True),
    sa.Column("version", sa.String(64), nullable=True),
    sa.Column("ip", sa.String(64), nullable=True),
    *times("recorded_at"),
)

retrievals = sa.Table(
    "retrievals",
    metadata,
    sa.Column("retrieval_id", sa.String(36), primary_key=True),
    sa.Column("platform", sa.String(32), nullable=False),
    sa.Column("external_id", sa.String(256), nullable=False),
    *json_columns("notification"),
    sa.Column("status", sa.String(16), nullable=False),  # pending | done | deleted
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    *times("next_attempt_at", index=True),
    sa.Column("last_error", sa.String(300), nullable=True),
    sa.Column("submission_id", sa.String(36), nullable=True),
    *times("created_at", "updated_at"),
    sa.UniqueConstraint("platform", "external_id"),
)

api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("key_id", sa.String(36), primary_key=True),
    sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("source", sa.String(100), nullable=False),
    # Money keeps four decimals (ten-thousandths), as everywhere else it is stored.
    sa.Column("cost_per_lead", sa.Numeric(14, 4), nullable=True),
    *json_columns("scopes"),
    *times("created_at"),
    *stamps("revoked_at"),
)


async def find_lead(
    session: AsyncSession, email: str | None, phone: str | None
) -> sa.Row[Any] | None:
    """The lead of this person: matched on email first, then phone."""
    if email:
        row = (await session.execute(sa.select(leads).where(leads.c.email == email))).first()
        if row:
            return row
    if phone:
        return (await session.execute(sa.select(leads).where(leads.c.phone == phone))).first()
    return None


async def get_lead(session: AsyncSession, lead_id: str) -> sa.Row[Any] | None:
    return (await session.execute(sa.select(leads).where(leads.c.lead_id == lead_id))).first()


async def find_submission_by_key(session: AsyncSession, dedupe_key: str) -> sa.Row[Any] | None:
    return (
        await session.execute(sa.select(submissions).where(submissions.c.dedupe_key == dedupe_key))
    ).first()


async def get_submission(session: AsyncSession, submission_id: str) -> sa.Row[Any] | None:
    return (
        await session.execute(
            sa.select(submissions).where(submissions.c.submission_id == submission_id)
        )
    ).first()


async def release_submission(session: AsyncSession, submission_id: str, **values: Any) -> bool:
    """Update a quarantined submission; False when it was no longer quarantined."""
    result = await session.execute(
        sa.update(submissions)
        .where(submissions.c.submission_id == submission_id, submissions.c.status == "quarantined")
        .values(**values)
    )
    return bool(getattr(result, "rowcount", 0))


async def scrub_submission(session: AsyncSession, submission_id: str) -> None:
    """Remove what a platform asked us to delete from one submission."""
    await session.execute(
        sa.update(submissions)
        .where(submissions.c.submission_id == submission_id)
        .values(payload={}, raw=None, email=None, phone=None, client_ip=None)
    )


async def list_quarantined(
    session: AsyncSession,
    *,
    limit: int,
    before: datetime | None = None,
    form_id: str | None = None,
    reason: str | None = None,
) -> list[sa.Row[Any]]:
    """Held-back submissions, newest first."""
    query = sa.select(submissions).where(submissions.c.status == "quarantined")
    if before is not None:
        query = query.where(submissions.c.received_at < before)
    if form_id is not None:
        query = query.where(submissions.c.form_id == form_id)
    if reason is not None:
        query = query.where(submissions.c.quarantine_reason == reason)
    query = query.order_by(
        submissions.c.received_at.desc(), submissions.c.submission_id.desc()
    ).limit(limit)
    return list((await session.execute(query)).all())


async def delete_submission(session: AsyncSession, submission_id: str) -> None:
    await session.execute(
        sa.delete(submissions).where(submissions.c.submission_id == submission_id)
    )


async def list_consents(session: AsyncSession, lead_id: str) -> list[sa.Row[Any]]:
    """The consent ledger of one lead, oldest first."""
    query = (
        sa.select(consents).where(consents.c.lead_id == lead_id).order_by(consents.c.recorded_at)
    )
    return list((await session.execute(query)).all())


async def find_api_key(session: AsyncSession, key_hash: str) -> sa.Row[Any] | None:
    return (
        await session.execute(
            sa.select(api_keys).where(
                api_keys.c.key_hash == key_hash, api_keys.c.revoked_at.is_(None)
            )
        )
    ).first()


async def insert_api_key(session: AsyncSession, **values: Any) -> None:
    await session.execute(sa.insert(api_keys).values(**values))


async def erase_lead(session: AsyncSession, lead_id: str, erased_at: datetime) -> None:
    """Remove the person's PII; keep counts, attribution (channel) and consent facts anonymous."""
    await session.execute(
        sa.update(leads)
        .where(leads.c.lead_id == lead_id)
        .values(email=None, phone=None, contact={}, erased_at=erased_at, updated_at=erased_at)
    )
    await session.execute(
        sa.update(submissions)
        .where(submissions.c.lead_id == lead_id)
        .values(payload={}, raw=None, email=None, phone=None, client_ip=None, consent={})
    )
    await session.execute(sa.update(consents).where(consents.c.lead_id == lead_id).values(ip=None))


async def erase_held_submissions(
    session: AsyncSession, email: str | None, phone: str | None
) -> int:
    """Scrub quarantined submissions of a person who has no lead (yet); how many."""
    conditions = []
    if email:
        conditions.append(submissions.c.email == email)
    if phone:
        conditions.append(submissions.c.phone == phone)
    if not conditions:
        return 0
    result = await session.execute(
        sa.update(submissions)
        .where(sa.or_(*conditions), submissions.c.lead_id.is_(None))
        .values(
            payload={},
            raw=None,
            email=None,
            phone=None,
            client_ip=None,
            consent={},
            status="erased",
        )
    )
    return int(getattr(result, "rowcount", 0) or 0)


# Retrievals: ad-platform leads acknowledged by id, fetched later by the retrieval worker.


async def enqueue_retrieval(session: AsyncSession, dialect: str, **values: Any) -> bool:
    """Store a retrieval job; False when this platform lead is already known."""
    result = await session.execute(
        insert_ignore(retrievals, dialect, "platform", "external_id").values(**values)
    )
    return bool(getattr(result, "rowcount", 0))


async def due_retrievals(session: AsyncSession, now: datetime, limit: int) -> list[sa.Row[Any]]:
    query = (
        sa.select(retrievals)
        .where(retrievals.c.status == "pending", retrievals.c.next_attempt_at <= now)
        .order_by(retrievals.c.next_attempt_at)
        .limit(limit)
    )
    return list((await session.execute(query)).all())


async def next_retrieval_at(session: AsyncSession) -> datetime | None:
    query = sa.select(sa.func.min(retrievals.c.next_attempt_at)).where(
        retrievals.c.status == "pending"
    )
    value = (await session.execute(query)).scalar()
    return value if isinstance(value, datetime) else None


async def claim_retrieval(
    session: AsyncSession, retrieval_id: str, attempts: int, lease_until: datetime, now: datetime
) -> bool:
    """Take a job for one attempt (optimistic: only if nobody took it since it was read)."""
    result = await session.execute(
        sa.update(retrievals)
        .where(
            retrievals.c.retrieval_id == retrieval_id,
            retrievals.c.status == "pending",
            retrievals.c.attempts == attempts,
        )
        .values(attempts=attempts + 1, next_attempt_at=lease_until, updated_at=now)
    )
    return bool(getattr(result, "rowcount", 0))


async def finish_retrieval(
    session: AsyncSession, retrieval_id: str, submission_id: str | None, now: datetime
) -> None:
    await session.execute(
        sa.update(retrievals)
        .where(retrievals.c.retrieval_id == retrieval_id)
        .values(status="done", submission_id=submission_id, last_error=None, updated_at=now)
    )


async def reschedule_retrieval(
    session: AsyncSession, retrieval_id: str, next_at: datetime, error: str, now: datetime
) -> None:
    await session.execute(
        sa.update(retrievals)
        .where(retrievals.c.retrieval_id == retrieval_id, retrievals.c.status == "pending")
        .values(next_attempt_at=next_at, last_error=error[:300], updated_at=now)
    )


async def cancel_retrieval(
    session: AsyncSession, platform: str, external_id: str, now: datetime
) -> None:
    """The platform reported the lead deleted: never fetch it."""
    await session.execute(
        sa.update(retrievals)
        .where(
            retrievals.c.platform == platform,
            retrievals.c.external_id == external_id,
            retrievals.c.status == "pending",
        )
        .values(status="deleted", updated_at=now)
    )


async def pending_retrievals(session: AsyncSession) -> dict[str, int]:
    """Pending jobs per platform."""
    query = (
        sa.select(retrievals.c.platform, sa.func.count())
        .where(retrievals.c.status == "pending")
        .group_by(retrievals.c.platform)
    )
    return {platform: int(count) for platform, count in (await session.execute(query)).all()}


async def retrieval_of(
    session: AsyncSession, platform: str, external_id: str
) -> sa.Row[Any] | None:
    query = sa.select(retrievals).where(
        retrievals.c.platform == platform, retrievals.c.external_id == external_id
    )
    return (await session.execute(query)).first()
