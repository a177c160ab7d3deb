"""Pipedrive: the person (found by email, else `POST /v1/persons`) and a lead (`POST /v1/leads`).

The API token travels in the `x-api-token` header, never in the URL. A lead
must be linked to a person, so delivery takes up to four calls; the person id
is kept on the delivery row between retries. A person who already has an open
lead in the Leads Inbox is not given a second one, which also makes a
redelivery harmless.
"""

from __future__ import annotations

from typing import Any

import httpx

from services.router.destinations.base import (
    DeliveryResult,
    HttpDestination,
    Item,
    result_of,
    transport_error,
)

DEFAULT_LEAD: dict[str, Any] = {
    "title": "{{ lead.company or lead.full_name or lead.email }} (leadflow: {{ lead.channel }})",
    "owner_id": "{{ rep.owner_id }}",
}


def _owner(value: Any) -> Any:
    text = str(value).strip()
    return int(text) if text.isdigit() else value


class Pipedrive(HttpDestination):
    kind = "pipedrive"

    @property
    def _headers(self) -> dict[str, str]:
        return {"x-api-token": self.config.token, "Accept": "application/json"}

    def _url(self, path: str) -> str:
        return self.config.base_url.rstrip("/") + path

    async def deliver_one(self, item: Item) -> DeliveryResult:
        progress = dict(item.progress)
        lead = item.document.get("lead", {})
        body = self.render(DEFAULT_LEAD, item.document)
        if "owner_id" in body:
            body["owner_id"] = _owner(body["owner_id"])
        try:
            if "person_id" not in progress:
                found = await self._find_person(lead.get("email"))
                if isinstance(found, DeliveryResult):
                    return found
                if found is None:
                    created = await self._create_person(lead, body.get("owner_id"))
                    if isinstance(created, DeliveryResult):
                        return created
                    found = created
                progress["person_id"] = found
            existing = await self._open_lead(progress["person_id"])
            if isinstance(existing, DeliveryResult):
                existing.progress = progress
                return existing
            if existing is not None:
                return DeliveryResult(
                    "delivered", external_id=existing, progress={**progress, "lead_id": existing}
                )
            response = await self.client.post(
                self._url("/v1/leads"),
                json={**body, "person_id": progress["person_id"]},
                headers=self._headers,
            )
        except httpx.HTTPError as exc:
            lost = transport_error(exc)
            lost.progress = progress
            return lost
        failure = result_of(response, self)
        if failure is not None:
            failure.progress = progress
            return failure
        lead_id = str((response.json().get("data") or {}).get("id"))
        return DeliveryResult(
            "delivered",
            external_id=lead_id,
            http_status=response.status_code,
            progress={**progress, "lead_id": lead_id},
        )

    async def _find_person(self, email: str | None) -> int | DeliveryResult | None:
        if not email:
            return None
        response = await self.client.get(
            self._url("/v1/persons/search"),
            params={"term": email, "fields": "email", "exact_match": "true", "limit": 1},
            headers=self._headers,
        )
        failure = result_of(response, self)
        if failure is not None:
            return failure
        items = ((response.json().get("data") or {}).get("items")) or []
        return int(items[0]["item"]["id"]) if items else None

    async def _create_person(self, lead: dict[str, Any], owner: Any) -> int | DeliveryResult:
        person: dict[str, Any] = {
            "name": lead.get("full_name") or lead.get("email") or "Unknown",
        }
        if lead.get("email"):
            person["email"] = [{"value": lead["email"], "primary": True, "label": "work"}]
        if lead.get("phone"):
            person["phone"] = [{"value": lead["phone"], "primary": True, "label": "work"}]
        if owner not in (None, ""):
            person["owner_id"] = owner
        response = await self.client.post(
            self._url("/v1/persons"), json=person, headers=self._headers
        )
        failure = result_of(response, self)
        if failure is not None:
            return failure
        return int(response.json()["data"]["id"])

    async def _open_lead(self, person_id: int) -> str | DeliveryResult | None:
        response = await self.client.get(
            self._url("/v1/leads"),
            params={"person_id": person_id, "archived_status": "not_archived", "limit": 1},
            headers=self._headers,
        )
        failure = result_of(response, self)
        if failure is not None:
            return failure
        data = response.json().get("data") or []
        return str(data[0]["id"]) if data else None
