"""a rep's load is counted in one covering index

Revision ID: b7e3f19c4d21
Revises: ae25b2168b8f
Create Date: 2026-12-07 16:00:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "b7e3f19c4d21"
down_revision: str | None = "ae25b2168b8f"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Counting today's assignments of each rep read every one of them from the table; the
    # index (rep_id first, so it serves lookups by rep as the one it replaces) holds them all.
    with op.batch_alter_table("assignments", schema=None) as batch_op:
        batch_op.create_index(
            "ix_assignments_rep_load", ["rep_id", "created_at", "status"], unique=False
        )
        batch_op.drop_index(batch_op.f("ix_assignments_rep_id"))


def downgrade() -> None:
    with op.batch_alter_table("assignments", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_assignments_rep_id"), ["rep_id"], unique=False)
        batch_op.drop_index("ix_assignments_rep_load")
