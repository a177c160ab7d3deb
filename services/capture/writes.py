"""How the capture handler reads and writes: one row at a time, or buffered for a group."""

from __future__ import annotations

from collections.abc import Iterable
from types import SimpleNamespace
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from services.capture import store

# Rows are plain namespaces here: the handler reads them by attribute, like sa.Row.
Row = Any


class Writes:
    """The capture handler's reads and writes, straight to the session."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def submission_by_key(self, dedupe_key: str) -> Row | None:
        return await store.find_submission_by_key(self.session, dedupe_key)

    async def lead_of(self, email: str | None, phone: str | None) -> Row | None:
        return await store.find_lead(self.session, email, phone)

    async def insert_lead(self, **values: Any) -> None:
        await store.insert_lead(self.session, **values)

    async def update_lead(self, lead_id: str, **values: Any) -> None:
        await store.update_lead(self.session, lead_id, **values)

    async def insert_submission(self, **values: Any) -> None:
        await store.insert_submission(self.session, **values)

    async def insert_consent(self, **values: Any) -> None:
        await store.insert_consent(self.session, **values)


class GroupWrites(Writes):
    """Reads answered from what the group preloaded; writes buffered until `flush`."""

    def __init__(self, session: AsyncSession) -> None:
        super().__init__(session)
        self._by_key: dict[str, Row] = {}
        self._by_id: dict[str, Row] = {}
        self._by_email: dict[str, Row] = {}
        self._by_phone: dict[str, Row] = {}
        self._new_leads: dict[str, dict[str, Any]] = {}
        self._lead_updates: dict[str, dict[str, Any]] = {}
        self._submissions: list[dict[str, Any]] = []
        self._consents: list[dict[str, Any]] = []

    async def preload(
        self, keys: Iterable[str], emails: Iterable[str], phones: Iterable[str]
    ) -> None:
        """One query per table for everything the group may look up."""
        for row in await store.find_submissions_by_keys(self.session, set(keys)):
            self._by_key[row.dedupe_key] = row
        for row in await store.find_leads(self.session, set(emails), set(phones)):
            self._remember(SimpleNamespace(**row._mapping))

    def _remember(self, lead: Row) -> None:
        self._by_id[lead.lead_id] = lead
        if lead.email:
            self._by_email[lead.email] = lead
        if lead.phone:
            self._by_phone[lead.phone] = lead

    async def submission_by_key(self, dedupe_key: str) -> Row | None:
        return self._by_key.get(dedupe_key)

    async def lead_of(self, email: str | None, phone: str | None) -> Row | None:
        # The same order as store.find_lead: email first, then phone.
        if email and email in self._by_email:
            return self._by_email[email]
        return self._by_phone.get(phone) if phone else None

    async def insert_lead(self, **values: Any) -> None:
        self._new_leads[values["lead_id"]] = values
        self._remember(SimpleNamespace(**{"erased_at": None, **values}))

    async def update_lead(self, lead_id: str, **values: Any) -> None:
        if lead_id in self._new_leads:
            self._new_leads[lead_id].update(values)
        else:
            self._lead_updates.setdefault(lead_id, {}).update(values)
        lead = self._by_id.get(lead_id)
        if lead is not None:
            for name, value in values.items():
                setattr(lead, name, value)
            self._remember(lead)

    async def insert_submission(self, **values: Any) -> None:
        self._submissions.append(values)
        if values.get("dedupe_key"):
            self._by_key[values["dedupe_key"]] = SimpleNamespace(**values)

    async def insert_consent(self, **values: Any) -> None:
        self._consents.append(values)

    async def flush(self) -> None:
        """Write the group: one multi-row statement per table."""
        if self._new_leads:
            await self.session.execute(sa.insert(store.leads), list(self._new_leads.values()))
        if self._lead_updates:
            await store.update_leads(self.session, self._lead_updates)
        if self._submissions:
            await store.insert_submissions(self.session, self._submissions)
        if self._consents:
            await self.session.execute(sa.insert(store.consents), self._consents)
