"""Group commit on both databases: shared transactions, isolated failures, one answer each."""

from __future__ import annotations

import asyncio

import pytest
import sqlalchemy as sa

from shared.db import Database, UnitOfWork, add_plumbing_tables, make_metadata
from shared.db.group_commit import GroupCommitter

metadata = make_metadata()
outbox, inbox = add_plumbing_tables(metadata)
rows = sa.Table(
    "rows",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(50), unique=True, nullable=False),
)


async def test_concurrent_writes_commit_together_and_failures_stay_isolated(
    backend, settings_factory
):
    settings = settings_factory(backend)
    db = Database(settings.database_url_for("gc"), service="gc", schema=settings.schema_for("gc"))
    await db.ensure_schema()
    async with db.engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    committer = GroupCommitter(lambda: UnitOfWork(db, outbox, inbox, "test"))

    def insert(name: str):
        async def work(uow: UnitOfWork) -> str:
            await uow.session.execute(sa.insert(rows).values(name=name))
            return name

        return work

    names = [f"n{i}" for i in range(60)] + ["n7"]  # the duplicate must fail alone
    results = await asyncio.gather(
        *(committer.run(insert(n)) for n in names), return_exceptions=True
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
    committer = GroupCommitter(lambda: UnitOfWork(db, outbox, inbox, "test"))

    async def work(uow: UnitOfWork) -> None:
        await uow.session.execute(sa.insert(rows).values(name="x"))

    with pytest.raises(sa.exc.OperationalError):
        await committer.run(work)
    await committer.stop()
    await db.dispose()
