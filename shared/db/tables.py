"""Tables every service has: the outbox (events to publish) and the inbox (events handled)."""

from __future__ import annotations

import sqlalchemy as sa

from shared.db.types import JSONType, UTCDateTime

# A naming convention makes constraint names identical on SQLite and PostgreSQL,
# so Alembic migrations can name (and later drop) them on both.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def make_metadata() -> sa.MetaData:
    """A MetaData with leadflow's naming convention (one per service)."""
    return sa.MetaData(naming_convention=NAMING_CONVENTION)


def add_plumbing_tables(metadata: sa.MetaData) -> tuple[sa.Table, sa.Table]:
    """Add the outbox and inbox tables to a service's metadata."""
    outbox = sa.Table(
        "outbox",
        metadata,
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("event_id", sa.String(64), nullable=False),
        sa.Column("topic", sa.String(200), nullable=False),
        sa.Column("key", sa.String(200), nullable=False),
        sa.Column("headers", JSONType(), nullable=False),
        sa.Column("value", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
    )
    inbox = sa.Table(
        "inbox",
        metadata,
        sa.Column("consumer", sa.String(100), primary_key=True),
        sa.Column("event_id", sa.String(200), primary_key=True),
        sa.Column("handled_at", UTCDateTime(), nullable=False),
    )
    return outbox, inbox
