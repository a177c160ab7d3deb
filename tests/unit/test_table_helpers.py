"""The column helpers of shared.db.tables: one declaration for a column many tables share."""

from __future__ import annotations

import sqlalchemy as sa

from shared.db.tables import channel_column, event_id_column, make_metadata


def test_event_id_and_channel_columns_are_declared_once_with_the_table_options() -> None:
    table = sa.Table(
        "t",
        make_metadata(),
        event_id_column(primary_key=True),
        event_id_column("cause_event_id", nullable=True),
        channel_column(nullable=False, index=True),
    )
    event_id, cause, channel = table.c.event_id, table.c.cause_event_id, table.c.channel
    assert isinstance(event_id.type, sa.String) and event_id.type.length == 200
    assert event_id.primary_key and cause.nullable and not cause.primary_key
    assert isinstance(channel.type, sa.String) and channel.type.length == 100
    assert not channel.nullable and channel.index
    # A new column on every call: two tables never share one.
    assert event_id_column() is not event_id_column()
