"""The repository the consumer's handlers write leads, enrollments, sends and suppressions
through, one statement per call.

Handlers ask `lead_cache.leads_of(uow)` for it: HTTP commands, the scheduler and
the consumer's event-by-event fallback (inside a savepoint) get this one; a
consumer batch gets its `LeadCache`, which answers the same methods from memory.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from services.nurture import send_queue, store
from shared.db import UnitOfWork


class LeadRepository:
    """One statement per call: the store's queries on the unit of work's session."""

    def __init__(self, uow: UnitOfWork) -> None:
        self.session = uow.session
        self.dialect = uow.dialect

    async def ensure_lead(self, lead_id: str, now: datetime) -> Any:
        return await store.ensure_lead(self.session, self.dialect, lead_id, now)

    async def get_lead(self, lead_id: str) -> Any:
        return await store.get_lead(self.session, lead_id)

    async def update_lead(self, lead_id: str, **values: Any) -> None:
        await store.update_lead(self.session, lead_id, **values)

    async def is_suppressed(self, email_hash: str) -> bool:
        return await store.is_suppressed(self.session, email_hash)

    async def suppress(
        self, email_hash: str, reason: str, lead_id: str | None, now: datetime
    ) -> None:
        await store.suppress(self.session, self.dialect, email_hash, reason, lead_id, now)

    async def lead_enrollments(self, lead_id: str) -> list[Any]:
        return await store.lead_enrollments(self.session, lead_id)

    async def insert_enrollment(self, **values: Any) -> None:
        await store.insert_enrollment(self.session, **values)

    async def update_enrollment(self, enrollment_id: str, **values: Any) -> None:
        await store.update_enrollment(self.session, enrollment_id, **values)

    async def insert_send(self, **values: Any) -> None:
        await send_queue.insert_send(self.session, **values)

    async def before_send_queue_statement(self) -> None:
        """Called before a statement on the send queue (the cache writes its sends first)."""

    async def lead_sends(self, lead_id: str, *, kind: str | None = None) -> list[Any]:
        await self.before_send_queue_statement()
        return await send_queue.lead_sends(self.session, lead_id, kind=kind)

    async def cancel_sends(
        self,
        lead_id: str,
        reason: str,
        now: datetime,
        *,
        enrollment_ids: Iterable[str] | None = None,
    ) -> int:
        await self.before_send_queue_statement()
        return await send_queue.cancel_sends(
            self.session, lead_id, reason, now, enrollment_ids=enrollment_ids
        )

    async def forget_links(self, lead_id: str) -> None:
        """Clear the links of the lead's emails (they may carry personal data)."""
        await self.before_send_queue_statement()
        await send_queue.forget_links(self.session, lead_id)
