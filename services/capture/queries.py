"""Capture's reads: the spam quarantine, the consent ledger, the retrieval backlog.

Plain functions, not bus messages: each opens one unit of work on the factory it is
given, reads, and commits nothing.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from services.capture import store
from shared.clock import Clock, utc_now
from shared.db.uow import UowFactory


async def list_quarantined(
    uows: UowFactory,
    limit: int,
    before: datetime | None = None,
    form_id: str | None = None,
    reason: str | None = None,
) -> list[Any]:
    """At most `limit` held-back submissions, newest first, received before `before`."""
    async with uows() as uow:
        return await store.list_quarantined(
            uow.session, limit=limit, before=before, form_id=form_id, reason=reason
        )


async def lead_consents(uows: UowFactory, lead_id: str) -> list[Any]:
    """The consent ledger of one lead, oldest first."""
    async with uows() as uow:
        return await store.list_consents(uow.session, lead_id)


async def due_retrievals(uows: UowFactory, limit: int, clock: Clock = utc_now) -> list[sa.Row[Any]]:
    """At most `limit` pending retrieval jobs due now, oldest first."""
    async with uows() as uow:
        return await store.due_retrievals(uow.session, clock(), limit)


async def retrieval_backlog(uows: UowFactory) -> tuple[dict[str, int], datetime | None]:
    """Pending jobs per platform, and when the next one is due (None: none pending)."""
    async with uows() as uow:
        return await store.pending_retrievals(uow.session), await store.next_retrieval_at(
            uow.session
        )
