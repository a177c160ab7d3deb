"""Tables every service has (the outbox of events to publish, the inbox of events handled)
and the columns every service declares the same way.

The column helpers return new `sa.Column` objects on every call (a column belongs to
one table), declared exactly as the migrations create them.
"""

from __future__ import annotations

from typing import Any

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


def serial_id(name: str = "id") -> sa.Column[Any]:
    """An auto-incrementing primary key: BIGINT on PostgreSQL, INTEGER (the rowid) on SQLite."""
    return sa.Column(
        name,
        sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
        primary_key=True,
        autoincrement=True,
    )


def lead_id_column(length: int = 64, **options: Any) -> sa.Column[Any]:
    """The lead's id (`primary_key=True`, or `nullable=`/`index=` as the table needs)."""
    return sa.Column("lead_id", sa.String(length), **options)


def event_id_column(name: str = "event_id", **options: Any) -> sa.Column[Any]:
    """An event's id (its CloudEvents `ce_id`), as inboxes and event logs keep it."""
    return sa.Column(name, sa.String(200), **options)


def channel_column(**options: Any) -> sa.Column[Any]:
    """The channel a lead came through (`utm_source / utm_medium`, a platform, `direct`)."""
    return sa.Column("channel", sa.String(100), **options)


def lead_contact_columns() -> list[sa.Column[Any]]:
    """A lead as `lead.scored` carries it: its (indexed) email, contact and form fields."""
    return [
        sa.Column("email", sa.String(320), nullable=True, index=True),
        *json_columns("contact", "fields"),
    ]


def times(*names: str, nullable: bool = False, **options: Any) -> list[sa.Column[Any]]:
    """UTC time columns, required unless `nullable`."""
    return [sa.Column(name, UTCDateTime(), nullable=nullable, **options) for name in names]


def stamps(*names: str) -> list[sa.Column[Any]]:
    """When something happened to the row: UTC times, empty until it does."""
    return times(*names, nullable=True)


def json_columns(*names: str, nullable: bool = False) -> list[sa.Column[Any]]:
    """JSON columns (JSONB on PostgreSQL), required unless `nullable`."""
    return [sa.Column(name, JSONType(), nullable=nullable) for name in names]


def flags(*names: str, **options: Any) -> list[sa.Column[Any]]:
    """Required booleans (`default=False` where inserts may leave them out)."""
    return [sa.Column(name, sa.Boolean, nullable=False, **options) for name in names]


def column_names(table: sa.Table, *, without: tuple[str, ...] = ()) -> tuple[str, ...]:
    """The table's column names in declaration order, less `without` (bulk-write orders)."""
    return tuple(column.name for column in table.columns if column.name not in without)


def make_metadata() -> sa.MetaData:
    """A MetaData with leadflow's naming convention (one per service)."""
    return sa.MetaData(naming_convention=NAMING_CONVENTION)


def service_metadata() -> tuple[sa.MetaData, sa.Table, sa.Table]:
    """A service's MetaData (`make_metadata`) holding its outbox and inbox tables."""
    metadata = make_metadata()
    return (metadata, *add_plumbing_tables(metadata))


def add_plumbing_tables(metadata: sa.MetaData) -> tuple[sa.Table, sa.Table]:
    """Add the outbox and inbox tables to a service's metadata."""
    outbox = sa.Table(
        "outbox",
        metadata,
        serial_id(),
        sa.Column("event_id", sa.String(64), nullable=False),
        sa.Column("topic", sa.String(200), nullable=False),
        sa.Column("key", sa.String(200), nullable=False),
        *json_columns("headers"),
        sa.Column("value", sa.LargeBinary(), nullable=False),
        *times("created_at"),
    )
    inbox = sa.Table(
        "inbox",
        metadata,
        sa.Column("consumer", sa.String(100), primary_key=True),
        event_id_column(primary_key=True),
        *times("handled_at"),
    )
    return outbox, inbox
