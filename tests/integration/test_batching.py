"""Group commit on both databases: shared transactions, isolated failures, one answer each."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pytest
import sqlalchemy as sa

from shared.db import Database, UnitOfWork, add_plumbing_tables, make_metadata
from shared.db.batching import Batcher
from shared.messagebus import MessageBus

metadata = make_metadata()
outbox, inbox = add_plumbing_tables(metadata)
rows = sa.Table(
    "rows",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(50), unique=True, nullable=False),
)


@dataclass(frozen=True)
class Insert:
    name: str


async def handle_insert(message: Insert, uow: UnitOfWork) -> str:
    await uow.session.execute(sa.insert(rows).values(name=message.name))
    return message.name


def batcher(db: Database) -> Batcher[Insert, str]:
    bus = MessageBus(lambda: UnitOfWork(db, outbox, inbox, "test"), {Insert: handle_insert})
    return Batcher(bus.handle_all, bus.handle)


async def test_concurrent_writes_commit_together_and_failures_stay_isolated(
    backend, settings_factory
):
    settings = settings_factory(backend)
    db = Database(settings.database_url_for("gc"), service="gc", schema=settings.schema_for("gc"))
    await db.ensure_schema()
    async with db.engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    committer = batcher(db)

    names = [f"n{i}" for i in range(60)] + ["n7"]  # the duplicate must fail alone
    results = await asyncio.gather(
        *(committer.submit(Insert(n)) for n in names), return_exceptions=True
    )
    await committer.stop()
    failures = [r for r in results if isinstance(r, Exception)]
    assert len(failures) == 1 and isinstance(failures[0], sa.exc.IntegrityError)
    async with db.engine.connect() as conn:
        stored = sorted((await conn.execute(sa.select(rows.c.name))).scalars())
    assert stored == sorted(set(names))
    await db.dispose()


async def test_a_failed_commit_answers_every_caller(settings_factory):
    settings = settings_factory("sqlite")
    db = Database(settings.database_url_for("gc2"), service="gc2")
    await db.ensure_schema()
    # No tables created: every statement fails, and nobody is told "stored".
    committer = batcher(db)

    with pytest.raises(sa.exc.OperationalError):
        await committer.submit(Insert("x"))
    await committer.stop()
    await db.dispose()
