"""HubSpot: contacts batch upsert keyed on email (`POST /crm/v3/objects/contacts/batch/upsert`).

Upserting by the `email` id property means a redelivered lead updates the same
contact instead of creating a second one. Up to 100 leads go in one request.
HubSpot's rate-limit headers are honoured: when `X-HubSpot-RateLimit-Remaining`
reaches 0 the destination waits `X-HubSpot-RateLimit-Interval-Milliseconds`; a 429
waits Retry-After (or the interval). A lead without an email cannot be upserted
and fails at once.
"""

from __future__ import annotations

from typing import Any

import httpx

from services.router.destinations.base import (
    FAILED,
    DeliveryResult,
    HttpDestination,
    Item,
    result_of,
    short_error,
    transport_error,
)
from services.router.settings import HubSpotDestination

UPSERT_PATH = "/crm/v3/objects/contacts/batch/upsert"

DEFAULT_PROPERTIES: dict[str, Any] = {
    "email": "{{ lead.email }}",
    "firstname": "{{ lead.first_name }}",
    "lastname": "{{ lead.last_name }}",
    "company": "{{ lead.company }}",
    "jobtitle": "{{ lead.job_title }}",
    "phone": "{{ lead.phone }}",
    "country": "{{ lead.country }}",
    "hubspot_owner_id": "{{ rep.owner_id }}",
}


class HubSpot(HttpDestination):
    kind = "hubspot"
    concurrency = 1

    def __init__(self, name: str, config: HubSpotDestination, client: httpx.AsyncClient) -> None:
        super().__init__(name, config, client)
        self.max_batch = config.batch_size

    async def deliver_batch(self, items: list[Item]) -> list[DeliveryResult]:
        config: HubSpotDestination = self.config
        results: dict[str, DeliveryResult] = {}
        inputs: list[dict[str, Any]] = []
        by_email: dict[str, list[str]] = {}
        for item in items:
            properties = self.render(DEFAULT_PROPERTIES, item.document)
            email = str(properties.get("email") or "").strip().lower()
            if not email:
                results[item.delivery_id] = DeliveryResult(
                    FAILED, "the lead has no email to upsert on"
                )
                continue
            properties["email"] = email
            if email not in by_email:
                inputs.append({"idProperty": "email", "id": email, "properties": properties})
            by_email.setdefault(email, []).append(item.delivery_id)
        if inputs:
            try:
                response = await self.client.post(
                    config.base_url.rstrip("/") + UPSERT_PATH,
                    json={"inputs": inputs},
                    headers={"Authorization": f"Bearer {config.token}"},
                )
            except httpx.HTTPError as exc:
                failure = transport_error(exc)
                for ids in by_email.values():
                    results.update(dict.fromkeys(ids, failure))
            else:
                self._note_rate_limit(response)
                results.update(self._read(response, by_email))
        return [results[item.delivery_id] for item in items]

    def _read(
        self, response: httpx.Response, by_email: dict[str, list[str]]
    ) -> dict[str, DeliveryResult]:
        failure = result_of(response, self)
        if failure is not None:
            return {d: failure for ids in by_email.values() for d in ids}
        body = response.json() if response.content else {}
        ids_of = {
            str((r.get("properties") or {}).get("email", "")).lower(): str(r.get("id"))
            for r in body.get("results", [])
        }
        # 207 Multi-Status: some inputs failed; their errors name the email in `context.ids`.
        failed: dict[str, str] = {}
        for error in body.get("errors", []):
            for email in (error.get("context") or {}).get("ids", []) or []:
                failed[str(email).lower()] = error.get("message", "rejected by HubSpot")
        out: dict[str, DeliveryResult] = {}
        for email, delivery_ids in by_email.items():
            if email in ids_of:
                result = DeliveryResult.delivered(ids_of[email], response.status_code)
            elif email in failed or body.get("errors"):
                message = failed.get(email) or short_error(response)
                result = DeliveryResult(FAILED, f"HubSpot: {message}"[:300], response.status_code)
            else:
                result = DeliveryResult.delivered(None, response.status_code)
            out.update(dict.fromkeys(delivery_ids, result))
        return out

    def _note_rate_limit(self, response: httpx.Response) -> None:
        remaining = response.headers.get("x-hubspot-ratelimit-remaining")
        interval = response.headers.get("x-hubspot-ratelimit-interval-milliseconds")
        try:
            if remaining is not None and int(remaining) <= 0:
                self.note_pause(int(interval or 10_000) / 1000)
        except ValueError:
            pass
