"""PostgreSQL pool connections the server closed are replaced at checkout, without a
ping round trip, and one whose loss went unseen fails once, then the pool recovers."""

from __future__ import annotations

import asyncio

import pytest
import sqlalchemy as sa

from shared.db import Database
from shared.db.engine import is_transient_db_error
from tests.conftest import PG_AVAILABLE, PG_URL

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
