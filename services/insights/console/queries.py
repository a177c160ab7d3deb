"""The console's questions to the read model, as messages for the bus (read-only)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from services.insights.console import store
from services.insights.console.store import LeadSearch
from shared.db import UnitOfWork


@dataclass(frozen=True)
class LeadsPerDay:
    """New (non-test) leads per UTC day of first capture in [start, end)."""

    start: datetime
    end: datetime


@dataclass(frozen=True)
class LeadPage:
    """A lead's profile, funnel facts and timeline."""

    lead_id: str


@dataclass(frozen=True)
class LeadStory:
    profile: Any | None
    entries: Sequence[Any]


async def handle_search_leads(search: LeadSearch, uow: UnitOfWork) -> list[Any]:
    """One page of leads (one more row than `limit` tells there is a next page)."""
    return await store.search_leads(uow.session, search)


async def handle_leads_per_day(query: LeadsPerDay, uow: UnitOfWork) -> dict[str, int]:
    return await store.leads_per_day(uow.session, query.start, query.end)


async def handle_lead_page(query: LeadPage, uow: UnitOfWork) -> LeadStory:
    profile = await store.get_profile(uow.session, query.lead_id)
    entries = await store.lead_timeline(uow.session, query.lead_id)
    return LeadStory(profile, entries)
