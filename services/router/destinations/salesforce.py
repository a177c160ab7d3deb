"""Salesforce: create a Lead (`POST /services/data/vXX.X/sobjects/Lead`).

Duplicate rules: a create that matches an existing record answers 400 with
`DUPLICATES_DETECTED` and the matched record ids. By default (`on_duplicate:
update`) the matched Lead is updated with the same fields (PATCH), so a redelivered
or returning lead never becomes a second record; `skip` accepts the match as it is;
`fail` treats the duplicate as a permanent error.
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
from services.router.settings import SalesforceDestination

DEFAULT_FIELDS: dict[str, Any] = {
    "FirstName": "{{ lead.first_name }}",
    "LastName": "{{ lead.last_name or lead.email or '[not provided]' }}",
    "Company": "{{ lead.company or '[not provided]' }}",
    "Email": "{{ lead.email }}",
    "Phone": "{{ lead.phone }}",
    "Title": "{{ lead.job_title }}",
    "Country": "{{ lead.country }}",
    "LeadSource": "{{ lead.channel }}",
    "OwnerId": "{{ rep.owner_id }}",
}


def duplicate_ids(body: Any) -> list[str]:
    """Record ids matched by a DUPLICATES_DETECTED error, best match first."""
    ids: list[str] = []
    errors = body if isinstance(body, list) else []
    for error in errors:
        if not isinstance(error, dict) or error.get("errorCode") != "DUPLICATES_DETECTED":
            continue
        result = error.get("duplicateResult") or {}
        for match in result.get("matchResults") or []:
            for record in match.get("matchRecords") or []:
                record_id = (record.get("record") or {}).get("Id")
                if record_id:
                    ids.append(str(record_id))
    return ids


class Salesforce(HttpDestination):
    kind = "salesforce"

    @property
    def _base(self) -> str:
        config: SalesforceDestination = self.config
        return f"{config.instance_url.rstrip('/')}/services/data/{config.api_version}/sobjects/Lead"

    async def deliver_one(self, item: Item) -> DeliveryResult:
        config: SalesforceDestination = self.config
        fields = self.render(DEFAULT_FIELDS, item.document)
        headers = {"Authorization": f"Bearer {config.token}"}
        try:
            response = await self.client.post(self._base, json=fields, headers=headers)
            if response.status_code == 400:
                matched = duplicate_ids(_json(response))
                # `fail`: the duplicate is the 400 it is (a permanent error, below).
                if matched and self.config.on_duplicate != "fail":
                    return await self._on_duplicate(matched[0], fields, headers, response)
            failure = result_of(response, self)
            if failure is not None:
                return failure
            body = _json(response)
            if isinstance(body, dict) and body.get("success") is False:
                return DeliveryResult.failed(f"Salesforce: {body.get('errors')}"[:300], 201)
            record_id = body.get("id") if isinstance(body, dict) else None
            return DeliveryResult.delivered(record_id, response.status_code)
        except httpx.HTTPError as exc:
            return transport_error(exc)

    async def _on_duplicate(
        self, record_id: str, fields: dict[str, Any], headers: dict[str, str], first: httpx.Response
    ) -> DeliveryResult:
        """`skip`: the match is the record; `update`: it gets the same fields."""
        config: SalesforceDestination = self.config
        if config.on_duplicate == "skip":
            return DeliveryResult.delivered(record_id, first.status_code)
        response = await self.client.patch(
            f"{self._base}/{record_id}", json=fields, headers=headers
        )
        return result_of(response, self) or DeliveryResult.delivered(
            record_id, response.status_code
        )


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None
