"""api key cost per lead keeps four decimals

Revision ID: 255e60790ab4
Revises: 2d58302640c9
Create Date: 2026-11-30 10:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "255e60790ab4"
down_revision: str | None = "2d58302640c9"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Money is kept in ten-thousandths everywhere; two decimals rounded 2.4575 to 2.46.
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.alter_column(
            "cost_per_lead",
            existing_type=sa.Numeric(precision=12, scale=2),
            type_=sa.Numeric(precision=14, scale=4),
            existing_nullable=True,
        )


def downgrade() -> None:
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.alter_column(
            "cost_per_lead",
            existing_type=sa.Numeric(precision=14, scale=4),
            type_=sa.Numeric(precision=12, scale=2),
            existing_nullable=True,
        )
