"""The console's reads of the read model: plain functions, not bus messages.

Each opens one unit of work on the factory it is given, reads, and commits nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from services.insights.console import store
from services.insights.console.store import LeadSearch
from shared.db.uow import UowFactory


@dataclass(frozen=True)
class LeadStory:
    profile: Any | None
    entries: Sequence[Any]


async def search_leads(uows: UowFactory, search: LeadSearch) -> list[Any]:
    """One page of leads (one more row than `limit` tells there is a next page)."""
    async with uows() as uow:
        return await store.search_leads(uow.session, search)


async def leads_per_day(uows: UowFactory, start: datetime, end: datetime) -> dict[str, int]:
    """New (non-test) leads per UTC day of first capture in [start, end)."""
    async with uows() as uow:
        return await store.leads_per_day(uow.session, start, end)


async def lead_page(uows: UowFactory, lead_id: str) -> LeadStory:
    """A lead's profile, funnel facts and timeline."""
    async with uows() as uow:
        profile = await store.get_profile(uow.session, lead_id)
        entries = await store.lead_timeline(uow.session, lead_id)
    return LeadStory(profile, entries)
