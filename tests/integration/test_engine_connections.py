"""PostgreSQL pool connections the server closed are replaced at checkout, without a
ping round trip, and one whose loss went unseen fails once, then the pool recovers."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import sqlalchemy as sa

from shared.db import Database
from shared.db.engine import is_transient_db_error
from tests.conftest import PG_AVAILABLE, PG_URL

EXAMPLE_CONFIG = Path(__file__).resolve().parents[2] / "leadflow.example.yaml"

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(not PG_AVAILABLE, reason="PostgreSQL is not reachable"),
]


async def _backend_pids(db: Database, count: int) -> list[int]:
    """Open `count` pooled connections at once and return their server process ids."""
    connections = [await db.engine.connect() for _ in range(count)]
    try:
        return [
            int((await c.execute(sa.text("SELECT pg_backend_pid()"))).scalar_one())
            for c in connections
        ]
    finally:
        for connection in connections:
            await connection.close()


async def _terminate(pids: list[int]) -> None:
    admin = Database(PG_URL, service="admin")
    try:
        async with admin.engine.connect() as connection:
            for pid in pids:
                await connection.execute(sa.text(f"SELECT pg_terminate_backend({pid})"))
    finally:
        await admin.dispose()


async def test_connections_closed_by_the_server_are_replaced_at_checkout():
    db = Database(PG_URL, service="pooltest", pool_size=3)
    try:
        old = await _backend_pids(db, 3)
        await _terminate(old)
        await asyncio.sleep(0.2)  # the loop reads the servers' goodbyes
        for _ in range(6):
            await db.ping()  # no error: every closed connection was swapped
        assert not set(await _backend_pids(db, 3)) & set(old)
    finally:
        await db.dispose()


async def test_a_loss_seen_only_by_the_statement_fails_once_then_the_pool_recovers():
    db = Database(PG_URL, service="pooltest", pool_size=2)
    try:
        pid = (await _backend_pids(db, 1))[0]
        async with db.engine.connect() as connection:
            await _terminate([pid])
            with pytest.raises(Exception) as failure:
                await connection.execute(sa.text("SELECT 1"))
        assert is_transient_db_error(failure.value)
        await db.ping()
    finally:
        await db.dispose()


async def _plans_of_a_repeated_lookup(db: Database) -> tuple[int, int]:
    """(generic, custom) plans PostgreSQL made for one prepared lookup run ten times on a
    table that starts empty, as capture's lookups do on a fresh install."""
    async with db.engine.connect() as connection:
        await connection.exec_driver_sql(
            "CREATE TEMPORARY TABLE grows (email varchar(320) PRIMARY KEY, lead_id text)"
        )
        lookup = "SELECT lead_id FROM grows WHERE email IN ($1, $2)"
        for i in range(10):
            await connection.exec_driver_sql(lookup, (f"a{i}@example.com", f"b{i}@example.com"))
        raw = await connection.get_raw_connection()
        row = await raw.driver_connection.fetchrow(
            "SELECT generic_plans, custom_plans FROM pg_prepared_statements WHERE statement = $1",
            lookup,
        )
        await connection.rollback()
    assert row is not None
    return int(row["generic_plans"]), int(row["custom_plans"])


async def test_a_database_that_plans_with_values_never_settles_on_a_generic_plan():
    # By default PostgreSQL switches to a generic plan after five executions: one costed
    # for the table as it was (empty), kept as the table grows. Capture plans with values.
    default = Database(PG_URL, service="plans")
    with_values = Database(PG_URL, service="plans", plan_with_values=True)
    try:
        generic, _ = await _plans_of_a_repeated_lookup(default)
        assert generic > 0
        assert await _plans_of_a_repeated_lookup(with_values) == (0, 10)
    finally:
        await default.dispose()
        await with_values.dispose()


async def test_capture_plans_its_statements_with_their_values(tmp_path):
    from services.capture.app import create_app
    from shared.settings import Settings

    app = create_app(
        Settings(
            env="test",
            database_url=PG_URL,
            var_dir=tmp_path,
            config=EXAMPLE_CONFIG,
        )
    )
    db = app.state.runtime.db
    try:
        async with db.engine.connect() as connection:
            mode = (await connection.exec_driver_sql("SHOW plan_cache_mode")).scalar_one()
        assert mode == "force_custom_plan"
    finally:
        await db.dispose()
