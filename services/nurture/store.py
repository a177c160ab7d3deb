"""Nurture's tables and queries: leads, enrollments, the send queue, suppressions.

The send queue *is* the scheduler: every due email is a row with the time it
may go out (`next_attempt_at`). Repositories flush, never commit; the unit of
work commits.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from shared.db import add_plumbing_tables, make_metadata
from shared.db.engine import insert_ignore
from shared.db.types import JSONType, UTCDateTime

metadata = make_metadata()
outbox, inbox = add_plumbing_tables(metadata)

# Consent: none → pending (double opt-in asked, not confirmed) → granted.
NO_CONSENT, CONSENT_PENDING, CONSENT_GRANTED = "none", "pending", "granted"

# The lead as nurture last saw it (from lead.scored), its consent and its exits.
leads = sa.Table(
    "leads",
    metadata,
    sa.Column("lead_id", sa.String(64), primary_key=True),
    sa.Column("email", sa.String(320), nullable=True, index=True),
    sa.Column("contact", JSONType(), nullable=False),
    sa.Column("fields", JSONType(), nullable=False),
    sa.Column("channel", sa.String(100), nullable=True),
    sa.Column("form_id", sa.String(200), nullable=True),
    sa.Column("form_type", sa.String(100), nullable=True),
    sa.Column("grade", sa.String(8), nullable=True),
    sa.Column("score", sa.Float, nullable=True),
    sa.Column("sales_ready", sa.Boolean, nullable=False, default=False),
    sa.Column("disqualified", sa.Boolean, nullable=False, default=False),
    sa.Column("is_test", sa.Boolean, nullable=False, default=False),
    sa.Column("consent", sa.String(16), nullable=False, default=NO_CONSENT),
    sa.Column("consent_source", sa.String(16), nullable=True),  # form | double_opt_in
    sa.Column("consent_at", UTCDateTime(), nullable=True),
    sa.Column("consent_ip", sa.String(64), nullable=True),
    sa.Column("unsubscribed_at", UTCDateTime(), nullable=True),
    sa.Column("bounced_at", UTCDateTime(), nullable=True),
    sa.Column("converted_at", UTCDateTime(), nullable=True),
    sa.Column("erased_at", UTCDateTime(), nullable=True),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
)

# Addresses never to email again, by a SHA-256 of the lower-cased address, so the
# list outlives erasure without keeping the address itself.
suppressions = sa.Table(
    "suppressions",
    metadata,
    sa.Column("email_hash", sa.String(64), primary_key=True),
    sa.Column("reason", sa.String(16), nullable=False),  # unsubscribed | bounced | complaint
    sa.Column("lead_id", sa.String(64), nullable=True),
    sa.Column("created_at", UTCDateTime(), nullable=False),
)

ACTIVE, COMPLETED, EXITED, FAILED_RUN = "active", "completed", "exited", "failed"

enrollments = sa.Table(
    "enrollments",
    metadata,
    sa.Column("enrollment_id", sa.String(36), primary_key=True),
    sa.Column("lead_id", sa.String(64), nullable=False, index=True),
    sa.Column("sequence_id", sa.String(100), nullable=False),
    sa.Column("run", sa.Integer, nullable=False),  # 1 for the first time through
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("exit_reason", sa.String(32), nullable=True),
    sa.Column("enrolled_at", UTCDateTime(), nullable=False),
    sa.Column("ended_at", UTCDateTime(), nullable=True),
    sa.UniqueConstraint("lead_id", "sequence_id", "run"),
)

STEP, CONFIRM = "step", "confirm"
SCHEDULED, SENDING, SENT, FAILED, CANCELLED, SUPPRESSED = (
    "scheduled",
    "sending",
    "sent",
    "failed",
    "cancelled",
    "suppressed",
)

# The send queue: one row per email (a sequence step, or a double opt-in confirmation).
sends = sa.Table(
    "sends",
    metadata,
    sa.Column("send_id", sa.String(32), primary_key=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("lead_id", sa.String(64), nullable=False, index=True),
    sa.Column("enrollment_id", sa.String(36), nullable=True),
    sa.Column("sequence_id", sa.String(100), nullable=True),
    sa.Column("step", sa.Integer, nullable=True),
    sa.Column("step_id", sa.String(100), nullable=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("due_at", UTCDateTime(), nullable=False),
    # When the scheduler may take it: moved by quiet hours, the frequency cap and retries.
    sa.Column("next_attempt_at", UTCDateTime(), nullable=False),
    sa.Column("claimed_until", UTCDateTime(), nullable=True),
    sa.Column("claims", sa.Integer, nullable=False, default=0),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("message_id", sa.String(300), nullable=True),
    # link id → URL of this email: the only places its click redirect may go.
    sa.Column("links", JSONType(), nullable=False),
    sa.Column("clicked_links", JSONType(), nullable=False),
    sa.Column("last_error", sa.Text, nullable=True),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("sent_at", UTCDateTime(), nullable=True),
    sa.Column("ended_at", UTCDateTime(), nullable=True),
    sa.Column("opened_at", UTCDateTime(), nullable=True),
    sa.Column("opens", sa.Integer, nullable=False, default=0),
    sa.Column("clicks", sa.Integer, nullable=False, default=0),
    sa.UniqueConstraint("enrollment_id", "step"),
    sa.Index("ix_sends_due", "status", "next_attempt_at"),
)

# The SMTP send-rate window shared by replicas (a rolling list of send times).
send_state = sa.Table(
    "send_state",
    metadata,
    sa.Column("key", sa.String(100), primary_key=True),
    sa.Column("sent", JSONType(), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
)

RATE_KEY = "smtp"


# Leads ---------------------------------------------------------------------------------


async def get_lead(
    session: AsyncSession, lead_id: str, *, for_update: bool = False
) -> sa.Row[Any] | None:
    query = sa.select(leads).where(leads.c.lead_id == lead_id)
    if for_update:
        query = query.with_for_update()
    return (await session.execute(query)).first()


async def ensure_lead(
    session: AsyncSession, dialect: str, lead_id: str, now: datetime
) -> sa.Row[Any]:
    """The lead's row, locked until commit; a bare one when nurture has not seen it yet."""
    await session.execute(
        insert_ignore(leads, dialect, "lead_id").values(
            lead_id=lead_id,
            contact={},
            fields={},
            sales_ready=False,
            disqualified=False,
            is_test=False,
            consent=NO_CONSENT,
            created_at=now,
            updated_at=now,
        )
    )
    row = await get_lead(session, lead_id, for_update=True)
    assert row is not None
    return row


async def update_lead(session: AsyncSession, lead_id: str, **values: Any) -> None:
    await session.execute(sa.update(leads).where(leads.c.lead_id == lead_id).values(**values))


# Suppressions --------------------------------------------------------------------------


async def suppress(
    session: AsyncSession,
    dialect: str,
    email_hash: str,
    reason: str,
    lead_id: str | None,
    now: datetime,
) -> None:
    await session.execute(
        insert_ignore(suppressions, dialect, "email_hash").values(
            email_hash=email_hash, reason=reason, lead_id=lead_id, created_at=now
        )
    )


async def is_suppressed(session: AsyncSession, email_hash: str) -> bool:
    row = await session.execute(
        sa.select(suppressions.c.email_hash).where(suppressions.c.email_hash == email_hash)
    )
    return row.first() is not None


async def suppressed_hashes(session: AsyncSession, hashes: Iterable[str]) -> set[str]:
    wanted = list(set(hashes))
    if not wanted:
        return set()
    rows = await session.execute(
        sa.select(suppressions.c.email_hash).where(suppressions.c.email_hash.in_(wanted))
    )
    return set(rows.scalars())


async def unsuppress(session: AsyncSession, email_hash: str) -> bool:
    result = await session.execute(
        sa.delete(suppressions).where(suppressions.c.email_hash == email_hash)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


# Enrollments ---------------------------------------------------------------------------


async def lead_enrollments(session: AsyncSession, lead_id: str) -> list[sa.Row[Any]]:
    rows = await session.execute(
        sa.select(enrollments)
        .where(enrollments.c.lead_id == lead_id)
        .order_by(enrollments.c.enrolled_at, enrollments.c.run)
    )
    return list(rows.all())


async def get_enrollment(session: AsyncSession, enrollment_id: str) -> sa.Row[Any] | None:
    return (
        await session.execute(
            sa.select(enrollments).where(enrollments.c.enrollment_id == enrollment_id)
        )
    ).first()


async def insert_enrollment(session: AsyncSession, **values: Any) -> None:
    await session.execute(sa.insert(enrollments).values(**values))


async def update_enrollment(session: AsyncSession, enrollment_id: str, **values: Any) -> None:
    await session.execute(
        sa.update(enrollments).where(enrollments.c.enrollment_id == enrollment_id).values(**values)
    )


# Sends ---------------------------------------------------------------------------------


async def insert_send(session: AsyncSession, **values: Any) -> None:
    values.setdefault("claims", 0)
    values.setdefault("attempts", 0)
    values.setdefault("links", {})
    values.setdefault("clicked_links", [])
    values.setdefault("opens", 0)
    values.setdefault("clicks", 0)
    values.setdefault("next_attempt_at", values["due_at"])
    await session.execute(sa.insert(sends).values(**values))


async def get_send(
    session: AsyncSession, send_id: str, *, for_update: bool = False
) -> sa.Row[Any] | None:
    query = sa.select(sends).where(sends.c.send_id == send_id)
    if for_update:
        query = query.with_for_update()
    return (await session.execute(query)).first()


async def update_send(session: AsyncSession, send_id: str, **values: Any) -> int:
    result = await session.execute(
        sa.update(sends).where(sends.c.send_id == send_id).values(**values)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


async def lead_sends(
    session: AsyncSession, lead_id: str, *, kind: str | None = None
) -> list[sa.Row[Any]]:
    query = sa.select(sends).where(sends.c.lead_id == lead_id).order_by(sends.c.created_at)
    if kind:
        query = query.where(sends.c.kind == kind)
    return list((await session.execute(query)).all())


async def cancel_sends(
    session: AsyncSession,
    lead_id: str,
    reason: str,
    now: datetime,
    *,
    enrollment_ids: Iterable[str] | None = None,
    kinds: Iterable[str] = (STEP, CONFIRM),
) -> int:
    """Scheduled sends of the lead (of these enrollments) will not go out."""
    query = sa.update(sends).where(
        sends.c.lead_id == lead_id,
        sends.c.status == SCHEDULED,
        sends.c.kind.in_(list(kinds)),
    )
    if enrollment_ids is not None:
        query = query.where(sends.c.enrollment_id.in_(list(enrollment_ids)))
    result = await session.execute(
        query.values(status=CANCELLED, ended_at=now, last_error=reason, claimed_until=None)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


async def claim_candidates(session: AsyncSession, now: datetime, limit: int) -> list[sa.Row[Any]]:
    """Due scheduled sends, locked; other replicas skip them (SKIP LOCKED)."""
    rows = await session.execute(
        sa.select(sends)
        .where(sends.c.status == SCHEDULED, sends.c.next_attempt_at <= now)
        .order_by(sends.c.next_attempt_at, sends.c.created_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return list(rows.all())


async def mark_sending(
    session: AsyncSession, send_id: str, claims: int, lease_until: datetime, **values: Any
) -> bool:
    """Claim one send: only a row still scheduled with the claim count we read is taken."""
    result = await session.execute(
        sa.update(sends)
        .where(sends.c.send_id == send_id, sends.c.status == SCHEDULED, sends.c.claims == claims)
        .values(status=SENDING, claimed_until=lease_until, claims=claims + 1, **values)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def interrupted_sends(session: AsyncSession, now: datetime, limit: int) -> list[sa.Row[Any]]:
    """Sends whose sender stopped mid-way (the lease ran out), locked."""
    rows = await session.execute(
        sa.select(sends)
        .where(sends.c.status == SENDING, sends.c.claimed_until <= now)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return list(rows.all())


async def recent_step_sends(
    session: AsyncSession, lead_ids: Iterable[str], since: datetime
) -> dict[str, list[datetime]]:
    """When each lead was last sent sequence emails (in flight ones count as now)."""
    ids = list(set(lead_ids))
    if not ids:
        return {}
    rows = await session.execute(
        sa.select(sends.c.lead_id, sends.c.status, sends.c.sent_at).where(
            sends.c.lead_id.in_(ids),
            sends.c.kind == STEP,
            sa.or_(
                sa.and_(sends.c.status == SENT, sends.c.sent_at > since),
                sends.c.status == SENDING,
            ),
        )
    )
    out: dict[str, list[datetime]] = {}
    for lead_id, status, sent_at in rows.all():
        out.setdefault(lead_id, []).append(sent_at if status == SENT and sent_at else since)
    return out


async def next_due_at(session: AsyncSession) -> datetime | None:
    return (
        await session.execute(
            sa.select(sa.func.min(sends.c.next_attempt_at)).where(sends.c.status == SCHEDULED)
        )
    ).scalar_one_or_none()


async def due_count(session: AsyncSession, now: datetime) -> int:
    return int(
        (
            await session.execute(
                sa.select(sa.func.count())
                .select_from(sends)
                .where(sends.c.status == SCHEDULED, sends.c.next_attempt_at <= now)
            )
        ).scalar_one()
    )


async def list_sends(
    session: AsyncSession,
    *,
    status: str | None = None,
    lead_id: str | None = None,
    limit: int = 100,
) -> list[sa.Row[Any]]:
    query = sa.select(sends).order_by(sends.c.created_at.desc()).limit(limit)
    if status:
        query = query.where(sends.c.status == status)
    if lead_id:
        query = query.where(sends.c.lead_id == lead_id)
    return list((await session.execute(query)).all())


# Send-rate window ----------------------------------------------------------------------


async def rate_window(session: AsyncSession, dialect: str, now: datetime) -> list[float]:
    """Recent send times (Unix seconds), the row locked until commit."""
    await session.execute(
        insert_ignore(send_state, dialect, "key").values(key=RATE_KEY, sent=[], updated_at=now)
    )
    row = (
        await session.execute(
            sa.select(send_state.c.sent).where(send_state.c.key == RATE_KEY).with_for_update()
        )
    ).scalar_one()
    return [float(t) for t in (row or [])]


async def save_rate_window(session: AsyncSession, sent: list[float], now: datetime) -> None:
    await session.execute(
        sa.update(send_state).where(send_state.c.key == RATE_KEY).values(sent=sent, updated_at=now)
    )
