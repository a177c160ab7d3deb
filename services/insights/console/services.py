"""The other services' admin APIs the console reads and acts through (HTTP only).

capture: the quarantine (list, release, reject) and a lead's consent ledger;
router: a lead's assignments (reason, SLA, deliveries), failed deliveries and
their re-drive; nurture: a lead's enrollments and emails; every service's
/metrics for the health page. A service that does not answer is shown as such;
it never breaks a page.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
from prometheus_client import REGISTRY, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from services.insights.console.auth import ConsoleSettings
from shared.settings import Settings


@dataclass(frozen=True)
class Answer:
    """A service's answer: the JSON body, or why there is none."""

    status: int
    body: Any = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and 200 <= self.status < 300


def _error_message(response: httpx.Response) -> str:
    try:
        body = response.json()
        return str(body["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return f"HTTP {response.status_code}"


class Services:
    """HTTP clients of capture, nurture and router, with the admin token."""

    def __init__(self, settings: Settings, console: ConsoleSettings) -> None:
        token = settings.admin_token.get_secret_value()
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._timeout = console.console_service_timeout
        self.urls = {
            "capture": console.capture_url.rstrip("/"),
            "scoring": console.scoring_url.rstrip("/"),
            "nurture": console.nurture_url.rstrip("/"),
            "router": console.router_url.rstrip("/"),
        }

    def _http(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(headers=self._headers, timeout=self._timeout)

    async def call(
        self, method: str, service: str, path: str, params: dict[str, Any] | None = None
    ) -> Answer:
        url = self.urls[service] + path
        try:
            async with self._http() as client:
                response = await client.request(method, url, params=params)
        except httpx.HTTPError as exc:
            return Answer(0, error=f"{service} is unreachable ({type(exc).__name__})")
        if response.status_code >= 400:
            return Answer(response.status_code, error=_error_message(response))
        try:
            return Answer(response.status_code, response.json())
        except ValueError:
            return Answer(response.status_code, error=f"{service} answered no JSON")

    # A lead's story in the other services --------------------------------------------

    async def lead_story(self, lead_id: str) -> dict[str, Answer]:
        """Assignments (router), enrollments (nurture) and consents (capture), at once."""
        lead = quote(lead_id, safe="")
        assignments, enrollments, consents = await asyncio.gather(
            self.call("GET", "router", f"/v1/leads/{lead}/assignments"),
            self.call("GET", "nurture", f"/v1/leads/{lead}/enrollments"),
            self.call("GET", "capture", f"/v1/leads/{lead}/consents"),
        )
        return {"assignments": assignments, "enrollments": enrollments, "consents": consents}

    # Quarantine (capture) ----------------------------------------------------------------

    async def quarantine(self, before: str | None) -> Answer:
        params = {"limit": 50, **({"before": before} if before else {})}
        return await self.call("GET", "capture", "/v1/quarantine", params)

    async def release(self, submission_id: str) -> Answer:
        sid = quote(submission_id, safe="")
        return await self.call("POST", "capture", f"/v1/quarantine/{sid}/release")

    async def reject(self, submission_id: str) -> Answer:
        sid = quote(submission_id, safe="")
        return await self.call("POST", "capture", f"/v1/quarantine/{sid}/reject")

    # Failed deliveries (router) ----------------------------------------------------------

    async def failed_deliveries(self) -> Answer:
        return await self.call("GET", "router", "/v1/dlq", {"limit": 200})

    async def redrive_delivery(self, delivery_id: str) -> Answer:
        did = quote(delivery_id, safe="")
        return await self.call("POST", "router", f"/v1/dlq/{did}/redrive")

    # Health: every service's metrics -------------------------------------------------------

    async def metrics(self) -> dict[str, list[Any] | str]:
        """Each service's parsed metric families (insights' own from this process)."""

        async def scrape(service: str) -> list[Any] | str:
            try:
                async with self._http() as client:
                    response = await client.get(self.urls[service] + "/metrics")
            except httpx.HTTPError as exc:
                return f"unreachable ({type(exc).__name__})"
            if response.status_code != 200:
                return f"HTTP {response.status_code}"
            return list(text_string_to_metric_families(response.text))

        names = list(self.urls)
        scraped = await asyncio.gather(*(scrape(n) for n in names))
        result: dict[str, list[Any] | str] = dict(zip(names, scraped, strict=True))
        result["insights"] = list(
            text_string_to_metric_families(generate_latest(REGISTRY).decode())
        )
        return result
