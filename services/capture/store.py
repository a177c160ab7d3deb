"""Capture's tables and queries: leads (one per person), submissions, API keys."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from shared.db import add_plumbing_tables, make_metadata
from shared.db.types import JSONType, UTCDateTime

metadata = make_metadata()
outbox, inbox = add_plumbing_tables(metadata)

leads = sa.Table(
    "leads",
    metadata,
    sa.Column("lead_id", sa.String(36), primary_key=True),
    # One lead per person: the database enforces it, not only the code.
    sa.Column("email", sa.String(320), unique=True, nullable=True),
    sa.Column("phone", sa.String(32), unique=True, nullable=True),
    sa.Column("contact", JSONType(), nullable=False),
    sa.Column("first_touch", JSONType(), nullable=False),
    sa.Column("last_touch", JSONType(), nullable=False),
    sa.Column("touches", sa.Integer, nullable=False, default=1),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    sa.Column("erased_at", UTCDateTime(), nullable=True),
)

submissions = sa.Table(
    "submissions",
    metadata,
    sa.Column("submission_id", sa.String(36), primary_key=True),
    sa.Column("lead_id", sa.String(36), nullable=True, index=True),
    sa.Column("source", sa.String(32), nullable=False),
    sa.Column("form_id", sa.String(200), nullable=True),
    # Retries and double-clicks: the same key (per source) is the same submission.
    sa.Column("dedupe_key", sa.String(300), nullable=True, unique=True),
    sa.Column("status", sa.String(16), nullable=False),  # accepted | quarantined | released
    sa.Column("quarantine_reason", sa.String(64), nullable=True),
    sa.Column("channel", sa.String(100), nullable=False),
    sa.Column("payload", JSONType(), nullable=False),
    sa.Column("attribution", JSONType(), nullable=False),
    sa.Column("consent", JSONType(), nullable=False),
    sa.Column("client_ip", sa.String(64), nullable=True),
    sa.Column("is_test", sa.Boolean, nullable=False, default=False),
    sa.Column("received_at", UTCDateTime(), nullable=False, index=True),
)

api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("key_id", sa.String(36), primary_key=True),
    sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("source", sa.String(100), nullable=False),
    sa.Column("cost_per_lead", sa.Numeric(12, 2), nullable=True),
    sa.Column("scopes", JSONType(), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("revoked_at", UTCDateTime(), nullable=True),
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


async def insert_lead(session: AsyncSession, **values: Any) -> None:
    await session.execute(sa.insert(leads).values(**values))


async def update_lead(session: AsyncSession, lead_id: str, **values: Any) -> None:
    await session.execute(sa.update(leads).where(leads.c.lead_id == lead_id).values(**values))


async def find_submission_by_key(session: AsyncSession, dedupe_key: str) -> sa.Row[Any] | None:
    return (
        await session.execute(sa.select(submissions).where(submissions.c.dedupe_key == dedupe_key))
    ).first()


async def insert_submission(session: AsyncSession, **values: Any) -> None:
    await session.execute(sa.insert(submissions).values(**values))


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
    """Remove the person's PII; keep counts and attribution (channel) anonymous."""
    await session.execute(
        sa.update(leads)
        .where(leads.c.lead_id == lead_id)
        .values(email=None, phone=None, contact={}, erased_at=erased_at, updated_at=erased_at)
    )
    await session.execute(
        sa.update(submissions)
        .where(submissions.c.lead_id == lead_id)
        .values(payload={}, client_ip=None, consent={})
    )
