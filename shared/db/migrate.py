"""Alembic per service: each service's migrations live in services/<name>/migrations/."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command, context
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext

from shared.db.engine import Database


def _config(script_location: Path, connection: Any = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(script_location))
    cfg.attributes["connection"] = connection
    return cfg


def run_env(metadata: sa.MetaData) -> None:
    """The body of every service's alembic env.py: migrate on the connection we are given."""
    connection = context.config.attributes.get("connection")
    if connection is None:
        raise RuntimeError("run migrations with `leadflow migrate`")
    context.configure(
        connection=connection,
        target_metadata=metadata,
        # SQLite cannot ALTER most things; batch mode rebuilds tables instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def upgrade(db: Database, script_location: Path, revision: str = "head") -> None:
    """Bring a service's database to `revision`."""
    await db.ensure_schema()
    async with db.engine.connect() as conn:
        await conn.run_sync(lambda sync: command.upgrade(_config(script_location, sync), revision))
        await conn.commit()


async def pending_changes(db: Database, metadata: sa.MetaData) -> list[Any]:
    """Differences between the migrated database and the models (empty when in sync)."""
    async with db.engine.connect() as conn:
        return await conn.run_sync(
            lambda sync: compare_metadata(MigrationContext.configure(sync), metadata)
        )


async def revision(db: Database, script_location: Path, message: str) -> None:
    """Autogenerate a new revision from the models (run against an up-to-date database)."""
    async with db.engine.connect() as conn:
        await conn.run_sync(
            lambda sync: command.revision(
                _config(script_location, sync), message=message, autogenerate=True
            )
        )
