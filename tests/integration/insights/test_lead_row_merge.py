"""Folding events into a lead's row: the one-statement paths never lose a change.

A process remembers the facts it last wrote per lead and updates the row only
if it still holds exactly those; a row changed elsewhere (another replica, a
rolled-back batch) must fall back to lock, read, merge and write.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.insights import handlers, lead_cache, store
from services.insights.consumers import HANDLERS
from services.insights.lead_facts import RANK_FIRST_TOUCH, LeadFacts
from shared.db import Database, UnitOfWork
from tests.conftest import migrate_service
from tests.integration.insights.campaign import Campaign

START = datetime(2024, 11, 2, 9, tzinfo=UTC)


@pytest.fixture
async def uow_factory(settings_factory: Any, backend: str) -> AsyncIterator[Any]:
    settings = settings_factory(backend)
    await migrate_service(settings, "insights")
    db = Database(
        settings.database_url_for("insights"),
        service="insights",
        schema=settings.schema_for("insights"),
    )

    def factory() -> UnitOfWork:
        return UnitOfWork(db, store.outbox, store.inbox, "leadflow/test")

    try:
        yield factory
    finally:
        await db.dispose()


async def read(uow_factory: Callable[[], UnitOfWork], lead_id: str) -> LeadFacts:
    async with uow_factory() as uow:
        return await lead_cache.lock_lead(uow.session, uow.dialect, lead_id)


async def test_a_captured_scored_routed_lead_has_every_fact(uow_factory: Any) -> None:
    campaign = Campaign()
    lead = campaign.lead("a")
    for envelope in (
        campaign.capture("a", "google_ads", START),
        campaign.score("a", "hot", timedelta(seconds=5), sales_ready=True),
        campaign.route("a", 30),
    ):
        async with uow_factory() as uow:
            await HANDLERS[envelope.type](envelope, uow)
            await uow.commit()

    facts = await read(uow_factory, lead)
    assert (facts.channel, facts.channel_rank, facts.captured_at) == (
        "google_ads",
        RANK_FIRST_TOUCH,
        START,
    )
    assert (facts.grade, facts.sales_ready_at) == ("hot", START + timedelta(seconds=5))
    assert (facts.routed_at, facts.speed_to_lead_ms) == (START + timedelta(seconds=30), 30_000)


async def test_a_row_changed_elsewhere_is_merged_not_overwritten(uow_factory: Any) -> None:
    campaign = Campaign()
    lead = campaign.lead("b")
    captured = campaign.capture("b", "radio", START)
    async with uow_factory() as uow:
        await handlers.handle_lead_captured(captured, uow)  # type: ignore[arg-type]
        await uow.commit()

    # another replica routes the lead: this process's memory of the row is now stale
    routed_at = START + timedelta(seconds=90)
    async with uow_factory() as uow:
        current = await lead_cache.lock_lead(uow.session, uow.dialect, lead)
        await lead_cache.save_lead(
            uow.session,
            lead,
            current.routed(channel="radio", captured_at=START, routed_at=routed_at),
        )
        await uow.commit()

    scored = campaign.score("b", "warm", timedelta(seconds=10))
    async with uow_factory() as uow:
        await handlers.handle_lead_scored(scored, uow)  # type: ignore[arg-type]
        await uow.commit()

    facts = await read(uow_factory, lead)
    assert facts.grade == "warm"
    assert (facts.routed_at, facts.speed_to_lead_ms) == (routed_at, 90_000)
    assert facts.channel == "radio"


async def test_a_rolled_back_change_is_not_taken_for_the_row(uow_factory: Any) -> None:
    campaign = Campaign()
    lead = campaign.lead("c")
    async with uow_factory() as uow:
        await handlers.handle_lead_captured(campaign.capture("c", "seo", START), uow)  # type: ignore[arg-type]
        await uow.commit()

    async with uow_factory() as uow:  # a batch that fails after the handler ran
        await handlers.handle_lead_routed(campaign.route("c", 30), uow)  # type: ignore[arg-type]
        await uow.rollback()

    async with uow_factory() as uow:
        scored = campaign.score("c", "cold", timedelta(seconds=3))
        await handlers.handle_lead_scored(scored, uow)  # type: ignore[arg-type]
        await uow.commit()

    facts = await read(uow_factory, lead)
    assert facts.grade == "cold"
    assert facts.routed_at is None and facts.speed_to_lead_ms is None
    assert facts.captured_at == START


async def test_events_before_the_capture_keep_the_first_touch_channel(uow_factory: Any) -> None:
    campaign = Campaign()
    lead = campaign.lead("d")
    captured = campaign.capture("d", "events", START)
    routed_at = START + timedelta(seconds=45)
    async with uow_factory() as uow:  # another replica folds the routing in first
        current = await lead_cache.lock_lead(uow.session, uow.dialect, lead)
        await lead_cache.save_lead(
            uow.session,
            lead,
            current.routed(channel="events", captured_at=START, routed_at=routed_at),
        )
        await uow.commit()
    async with uow_factory() as uow:  # the row exists: the new-lead insert must not win
        await handlers.handle_lead_captured(captured, uow)  # type: ignore[arg-type]
        await uow.commit()

    facts = await read(uow_factory, lead)
    assert (facts.channel, facts.channel_rank) == ("events", RANK_FIRST_TOUCH)
    assert (facts.routed_at, facts.speed_to_lead_ms) == (routed_at, 45_000)
