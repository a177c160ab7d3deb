"""`leadflow keys create`: the cost per lead is kept to the ten-thousandth, on both databases."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from typer.testing import CliRunner

from leadflow import registry
from leadflow.cli import app as cli
from services.capture import store
from shared.db.engine import Database
from shared.db.migrate import pending_changes, upgrade
from tests.conftest import migrate_service


def _database(settings: Any) -> Database:
    return Database(
        settings.database_url_for("capture"),
        service="capture",
        schema=settings.schema_for("capture"),
    )


async def _costs(settings: Any) -> dict[str, Decimal | None]:
    db = _database(settings)
    try:
        async with db.session() as session:
            rows = (await session.execute(sa.select(store.api_keys))).all()
    finally:
        await db.dispose()
    return {row.name: row.cost_per_lead for row in rows}


async def test_the_migrated_tables_match_the_models(backend, settings_factory):
    settings = settings_factory(backend)
    await migrate_service(settings, "capture")
    db = _database(settings)
    try:
        assert await pending_changes(db, store.metadata) == []
    finally:
        await db.dispose()


async def test_the_migration_keeps_the_costs_of_existing_keys(backend, settings_factory):
    settings = settings_factory(backend)
    db = _database(settings)
    try:
        await upgrade(db, registry.migrations_dir("capture"), "2d58302640c9")
        async with db.session() as session:
            await session.execute(
                sa.insert(store.api_keys).values(
                    key_id="k1",
                    key_hash="h1",
                    name="before",
                    source="vendor",
                    cost_per_lead=Decimal("12.50"),
                    scopes=["leads:write"],
                    created_at=datetime.now(UTC),
                )
            )
            await session.commit()
        await upgrade(db, registry.migrations_dir("capture"))
    finally:
        await db.dispose()
    assert await _costs(settings) == {"before": Decimal("12.5")}


async def test_keys_create_keeps_four_decimals_and_refuses_more(backend, settings_factory):
    settings = settings_factory(backend)
    await migrate_service(settings, "capture")
    env = {
        "LEADFLOW_DATABASE_URL": settings.database_url,
        "LEADFLOW_DATABASE_SCHEMA_PREFIX": settings.database_schema_prefix,
        "LEADFLOW_VAR_DIR": str(settings.var_dir),
        "COLUMNS": "200",  # the error box must not wrap the message
    }
    runner = CliRunner()

    def create(name: str, cost: str) -> Any:
        args = ["keys", "create", "--name", name, "--source", "vendor", "--cost", cost]
        return runner.invoke(cli, args, env=env, catch_exceptions=False)

    exact = await asyncio.to_thread(create, "exact", "2.4575")
    assert exact.exit_code == 0, exact.output
    assert exact.stdout.strip().startswith("lf_")
    assert await _costs(settings) == {"exact": Decimal("2.4575")}
    for name, cost, reason in (
        ("finer", "2.45755", "more than four decimals"),
        ("negative", "-1", "not a non-negative amount"),
        ("words", "two dollars", "not an amount"),
    ):
        refused = await asyncio.to_thread(create, name, cost)
        assert refused.exit_code == 2, refused.output
        assert "--cost" in refused.output and reason in refused.output
    assert list(await _costs(settings)) == ["exact"]  # nothing stored for the refused ones
