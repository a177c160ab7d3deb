"""Two insights replicas folding events of the same leads at once (PostgreSQL).

A lead's events travel on several topics, whose partitions may be consumed by
different replicas. Each replica's batch is one transaction; they lock the same
lead rows in opposite orders here, so PostgreSQL breaks the lock cycle by aborting
one. That abort must count as transient (the consumer retries the whole batch),
and no change may be lost.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy.exc import DBAPIError

from services.insights import handlers, lead_cache, store
from shared.db import Database, UnitOfWork, is_transient_db_error
from shared.events import Envelope, Event
from tests.conftest import PG_AVAILABLE, migrate_service
from tests.integration.insights.campaign import Campaign

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(not PG_AVAILABLE, reason="PostgreSQL is not reachable at 127.0.0.1:5432"),
]

Step = Callable[[UnitOfWork], Awaitable[None]]
HANDLERS: dict[str, Any] = {
    "LeadCaptured": handlers.handle_lead_captured,
    "LeadRouted": handlers.handle_lead_routed,
}


def step(envelope: Envelope[Event]) -> Step:
    handler = HANDLERS[type(envelope.data).__name__]
    return lambda uow: handler(envelope, uow)


async def replica(
    uow_factory: Callable[[], UnitOfWork],
    first: Step,
    second: Step,
    mine: asyncio.Event,
    theirs: asyncio.Event,
) -> int:
    """One batch of two events, retried whole on a transient error; returns the attempts."""
    attempts = 0
    while True:
        attempts += 1
        try:
            async with uow_factory() as uow:
                await first(uow)
                mine.set()
                await asyncio.wait_for(theirs.wait(), 5)
                await second(uow)
                await uow.commit()
                return attempts
        except DBAPIError as exc:
            assert is_transient_db_error(exc), exc
            assert attempts < 5


async def test_replicas_locking_the_same_leads_in_opposite_orders_lose_nothing(
    settings_factory: Any,
) -> None:
    settings = settings_factory("postgres")
    await migrate_service(settings, "insights")
    db = Database(
        settings.database_url_for("insights"),
        service="insights",
        schema=settings.schema_for("insights"),
    )

    def uow_factory() -> UnitOfWork:
        return UnitOfWork(db, store.outbox, store.inbox, "leadflow/test")

    campaign = Campaign()
    start = datetime(2024, 11, 2, 9, tzinfo=UTC)
    x_captured = campaign.capture("x", "google_ads", start)
    y_captured = campaign.capture("y", "radio", start)
    x_routed, y_routed = campaign.route("x", 30), campaign.route("y", 90)
    a_ready, b_ready = asyncio.Event(), asyncio.Event()
    try:
        attempts = await asyncio.gather(
            # replica A holds leads.captured[x] and leads.routed[y]; B the other way round
            replica(uow_factory, step(x_captured), step(y_routed), a_ready, b_ready),
            replica(uow_factory, step(y_captured), step(x_routed), b_ready, a_ready),
        )
        assert sorted(attempts) == [1, 2]  # PostgreSQL aborted exactly one of them once

        async with uow_factory() as uow:
            x = await lead_cache.lock_lead(uow.session, uow.dialect, campaign.lead("x"))
            y = await lead_cache.lock_lead(uow.session, uow.dialect, campaign.lead("y"))
        assert (x.channel, x.captured_at, x.speed_to_lead_ms) == ("google_ads", start, 30_000)
        assert (y.channel, y.captured_at, y.speed_to_lead_ms) == ("radio", start, 90_000)
        assert x.routed_at == start + timedelta(seconds=30)
    finally:
        await db.dispose()
