"""Bulk writes through the driver store exactly what SQLAlchemy's portable types store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import sqlalchemy as sa

from services.scoring import store as scoring_store
from shared.db import Database, make_metadata
from shared.db.bulk import BulkStatement, Values
from shared.db.types import JSONType, UTCDateTime

metadata = make_metadata()
things = sa.Table(
    "things",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("at", UTCDateTime(), nullable=True),
    sa.Column("doc", JSONType(), nullable=True),
    sa.Column("flag", sa.Boolean, nullable=False),
    sa.Column("key", sa.String(20), nullable=False),
)

TIMES = [
    datetime(2026, 11, 2, 9, 0, tzinfo=UTC),  # no microseconds
    datetime(2026, 11, 2, 9, 0, 0, 5, tzinfo=UTC),
    datetime(2026, 11, 2, 10, 30, 0, 123456, tzinfo=timezone(timedelta(hours=1, minutes=30))),
]
DOCS = [{"a": [1, 2.5, "x"], "b": None}, [], None]


async def test_rows_written_in_bulk_read_and_compare_like_orm_rows(backend, settings_factory):
    settings = settings_factory(backend)
    db = Database(
        settings.database_url_for("bulk"), service="bulk", schema=settings.schema_for("bulk")
    )
    await db.ensure_schema()
    try:
        async with db.engine.begin() as conn:
            await conn.run_sync(metadata.create_all)
        values = Values(db.dialect)
        columns = ("id", "at", "doc", "flag", "key")
        insert = BulkStatement.insert(things, columns, db.dialect)
        async with db.session() as session, session.begin():
            await session.execute(
                sa.insert(things),
                [
                    {"id": i, "at": at, "doc": doc, "flag": i % 2 == 0, "key": f"k{i}"}
                    for i, (at, doc) in enumerate(zip(TIMES, DOCS, strict=True))
                ],
            )
            await insert.run_async(
                session,
                [
                    (100 + i, values.time(at), values.json(doc), i % 2 == 0, f"k{i}")
                    for i, (at, doc) in enumerate(zip(TIMES, DOCS, strict=True))
                ],
            )
            update = BulkStatement.update(things, ("key",), "id", db.dialect)
            await update.run_async(session, [("renamed", 101)])
        async with db.session() as session:
            rows = {r.id: r for r in (await session.execute(sa.select(things))).all()}
            for i, at in enumerate(TIMES):
                orm, bulk = rows[i], rows[100 + i]
                assert bulk.at == orm.at == at
                assert bulk.doc == orm.doc
                assert bulk.flag == orm.flag
            assert rows[101].key == "renamed"
            # Stored times order and compare the same, whichever way they were written.
            later = (
                await session.execute(
                    sa.select(things.c.id).where(things.c.at > TIMES[0]).order_by(things.c.id)
                )
            ).scalars()
            assert list(later) == [1, 2, 101, 102]
            if db.is_sqlite:
                raw = (
                    await session.execute(sa.text("SELECT id, at FROM things ORDER BY id"))
                ).all()
                text = dict(raw)
                assert [text[100 + i] for i in range(3)] == [text[i] for i in range(3)]
    finally:
        await db.dispose()


def test_scoring_bulk_statements_name_every_column():
    state = {c.name for c in scoring_store.lead_scores.columns} - {"lead_id"}
    assert set(scoring_store._STATE_COLUMNS) == state
    assert set(scoring_store._EVENT_COLUMNS) == {c.name for c in scoring_store.score_events.columns}
    changes = {c.name for c in scoring_store.score_changes.columns} - {"id"}
    assert set(scoring_store._CHANGE_COLUMNS) == changes
