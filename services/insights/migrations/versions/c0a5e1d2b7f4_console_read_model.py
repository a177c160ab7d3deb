"""console read model: lead profiles and timelines

Revision ID: c0a5e1d2b7f4
Revises: 6ab7f871f938
Create Date: 2026-12-01 10:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy import Text

import shared.db.types
from sqlalchemy.dialects import postgresql

revision: str = "c0a5e1d2b7f4"
down_revision: str | None = "6ab7f871f938"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "console_leads",
        sa.Column("lead_id", sa.String(length=64), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=True),
        sa.Column("email_lc", sa.String(length=320), nullable=True),
        sa.Column("first_name", sa.String(length=200), nullable=True),
        sa.Column("last_name", sa.String(length=200), nullable=True),
        sa.Column("name_lc", sa.String(length=401), nullable=True),
        sa.Column("company", sa.String(length=300), nullable=True),
        sa.Column("company_lc", sa.String(length=300), nullable=True),
        sa.Column("job_title", sa.String(length=300), nullable=True),
        sa.Column("phone", sa.String(length=40), nullable=True),
        sa.Column("country", sa.String(length=8), nullable=True),
        sa.Column("channel", sa.String(length=100), nullable=True),
        sa.Column("channel_rank", sa.SmallInteger(), nullable=False),
        sa.Column("captured_at", shared.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("grade", sa.String(length=8), nullable=True),
        sa.Column("score", sa.Float(), nullable=True),
        sa.Column("graded_at", shared.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("erased_at", shared.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("updated_at", shared.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("lead_id", name=op.f("pk_console_leads")),
    )
    with op.batch_alter_table("console_leads", schema=None) as batch_op:
        batch_op.create_index("ix_console_leads_captured", ["captured_at", "lead_id"], unique=False)
        batch_op.create_index(
            "ix_console_leads_channel_captured", ["channel", "captured_at", "lead_id"], unique=False
        )
        batch_op.create_index(
            "ix_console_leads_grade_captured", ["grade", "captured_at", "lead_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_console_leads_email_lc"), ["email_lc"], unique=False)
        batch_op.create_index(batch_op.f("ix_console_leads_name_lc"), ["name_lc"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_console_leads_company_lc"), ["company_lc"], unique=False
        )

    op.create_table(
        "console_timeline",
        sa.Column("lead_id", sa.String(length=64), nullable=False),
        sa.Column("event_id", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("at", shared.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column(
            "data",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), "postgresql"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("lead_id", "event_id", name=op.f("pk_console_timeline")),
    )


def downgrade() -> None:
    op.drop_table("console_timeline")
    with op.batch_alter_table("console_leads", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_console_leads_company_lc"))
        batch_op.drop_index(batch_op.f("ix_console_leads_name_lc"))
        batch_op.drop_index(batch_op.f("ix_console_leads_email_lc"))
        batch_op.drop_index("ix_console_leads_grade_captured")
        batch_op.drop_index("ix_console_leads_channel_captured")
        batch_op.drop_index("ix_console_leads_captured")
    op.drop_table("console_leads")
