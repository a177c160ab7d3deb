"""Capture's reads: the spam quarantine, the consent ledger, the retrieval backlog.

Each read is written once on the unit of work it reads in; the doors (admin routes,
the retrieval worker) call it on a unit-of-work factory (`shared.reads`), which gives
it one unit of work of its own that commits nothing.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from services.capture import store
from shared.clock import Clock, utc_now
from shared.db.uow import UnitOfWork
from shared.reads import own_unit_of_work


async def quarantined(uow: UnitOfWork, limit: int, **filters: Any) -> list[Any]:
    """At most `limit` held-back submissions, newest first; `filters` are those of
    `store.list_quarantined` (before, form_id, reason)."""
    return await store.list_quarantined(uow.session, limit=limit, **filters)


async def consents_of(uow: UnitOfWork, lead_id: str) -> list[Any]:
    """The consent ledger of one lead, oldest first."""
    return await store.list_consents(uow.session, lead_id)


async def retrievals_due(uow: UnitOfWork, limit: int, clock: Clock = utc_now) -> list[sa.Row[Any]]:
    """At most `limit` pending retrieval jobs due now, oldest first."""
    return await store.due_retrievals(uow.session, clock(), limit)


async def backlog(uow: UnitOfWork) -> tuple[dict[str, int], datetime | None]:
    """Pending jobs per platform, and when the next one is due (None: none pending)."""
    return await store.pending_retrievals(uow.session), await store.next_retrieval_at(uow.session)


list_quarantined = own_unit_of_work(quarantined)
lead_consents = own_unit_of_work(consents_of)
due_retrievals = own_unit_of_work(retrievals_due)
retrieval_backlog = own_unit_of_work(backlog)
