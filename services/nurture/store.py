"""Nurture's tables, and the queries on leads, suppressions and enrollments.

The send queue's queries are in send_queue.py. Repositories flush, never commit;
the unit of work commits.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from shared.db import tables
from shared.db.rows import row_by_key, rows_by_key
from shared.db.statements import insert_ignore

metadata, outbox, inbox = tables.service_metadata()

# Consent: none → pending (double opt-in asked, not confirmed) → granted.
NO_CONSENT, CONSENT_PENDING, CONSENT_GRANTED = "none", "pending", "granted"

# The lead as nurture last saw it (from lead.scored), its consent and its exits.
leads = sa.Table(
    "leads",
    metadata,
    tables.lead_id_column(primary_key=True),
    *tables.lead_contact_columns(),
    sa.Column("channel", sa.String(100), nullable=True),
    sa.Column("form_id", sa.String(200), nullable=True),
    sa.Column("form_type", sa.String(100), nullable=True),
    sa.Column("grade", sa.String(8), nullable=True),
    sa.Column("score", sa.Float, nullable=True),
    *tables.flags("sales_ready", "disqualified", "is_test", default=False),
    sa.Column("consent", sa.String(16), nullable=False, default=NO_CONSENT),
    sa.Column("consent_source", sa.String(16), nullable=True),  # form | double_opt_in
    *tables.stamps("consent_at"),
    sa.Column("consent_ip", sa.String(64), nullable=True),
    *tables.stamps("unsubscribed_at", "bounced_at", "converted_at", "erased_at"),
    *tables.times("created_at", "updated_at"),
)

# Addresses never to email again, by a SHA-256 of the lower-cased address, so the
# list outlives erasure without keeping the address itself.
suppressions = sa.Table(
    "suppressions",
    metadata,
    sa.Column("email_hash", sa.String(64), primary_key=True),
    sa.Column("reason", sa.String(16), nullable=False),  # unsubscribed | bounced | complaint
    tables.lead_id_column(nullable=True),
    *tables.times("created_at"),
)

ACTIVE, COMPLETED, EXITED, FAILED_RUN = "active", "completed", "exited", "failed"

enrollments = sa.Table(
    "enrollments",
    metadata,
    sa.Column("enrollment_id", sa.String(36), primary_key=True),
    tables.lead_id_column(nullable=False, index=True),
    sa.Column("sequence_id", sa.String(100), nullable=False),
    sa.Column("run", sa.Integer, nullable=False),  # 1 for the first time through
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("exit_reason", sa.String(32), nullable=True),
    *tables.times("enrolled_at"),
    *tables.stamps("ended_at"),
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
    tables.lead_id_column(nullable=False, index=True),
    sa.Column("enrollment_id", sa.String(36), nullable=True),
    sa.Column("sequence_id", sa.String(100), nullable=True),
    sa.Column("step", sa.Integer, nullable=True),
    sa.Column("step_id", sa.String(100), nullable=True),
    sa.Column("status", sa.String(16), nullable=False),
    *tables.times("due_at"),
    # When the scheduler may take it: moved by quiet hours, the frequency cap and retries.
    *tables.times("next_attempt_at"),
    *tables.stamps("claimed_until"),
    sa.Column("claims", sa.Integer, nullable=False, default=0),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("message_id", sa.String(300), nullable=True),
    # link id → URL of this email: the only places its click redirect may go.
    *tables.json_columns("links", "clicked_links"),
    sa.Column("last_error", sa.Text, nullable=True),
    *tables.times("created_at"),
    *tables.stamps("sent_at", "ended_at", "opened_at"),
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
    *tables.json_columns("sent"),
    *tables.times("updated_at"),
)

RATE_KEY = "smtp"


# Leads ---------------------------------------------------------------------------------


async def get_lead(
    session: AsyncSession, lead_id: str, *, for_update: bool = False
) -> sa.Row[Any] | None:
    return await row_by_key(session, leads.c.lead_id, lead_id, for_update=for_update)


def bare_lead(lead_id: str, now: datetime) -> dict[str, Any]:
    """The values of a lead nurture has not seen yet (what `ensure_lead` inserts)."""
    return {
        "lead_id": lead_id,
        "contact": {},
        "fields": {},
        "sales_ready": False,
        "disqualified": False,
        "is_test": False,
        "consent": NO_CONSENT,
        "created_at": now,
        "updated_at": now,
    }


async def ensure_lead(
    session: AsyncSession, dialect: str, lead_id: str, now: datetime
) -> sa.Row[Any]:
    """The lead's row, locked until commit; a bare one when nurture has not seen it yet."""
    await session.execute(
        insert_ignore(leads, dialect, "lead_id").values(**bare_lead(lead_id, now))
    )
    row = await get_lead(session, lead_id, for_update=True)
    assert row is not None
    return row


async def update_lead(session: AsyncSession, lead_id: str, **values: Any) -> None:
    await session.execute(sa.update(leads).where(leads.c.lead_id == lead_id).values(**values))


async def clear_exits_of_address(session: AsyncSession, address: str, now: datetime) -> None:
    """Forget the unsubscribe and bounce of the leads with this (lower-cased) address."""
    await session.execute(
        sa.update(leads)
        .where(leads.c.email == address)
        .values(unsubscribed_at=None, bounced_at=None, updated_at=now)
    )


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
    e = enrollments.c
    return await rows_by_key(session, e.lead_id, lead_id, e.enrolled_at, e.run)


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
