"""The generic webhook: the routed-lead document as a signed JSON POST.

    Leadflow-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>." + body>

the scheme capture accepts for its signed webhooks. `Idempotency-Key` carries the
delivery id: a retry after a lost answer repeats it, so the receiver can drop
the copy.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac

import httpx
import orjson

from services.router.destinations.base import (
    DeliveryResult,
    HttpDestination,
    Item,
    result_of,
    transport_error,
)
from services.router.settings import WebhookDestination
from shared.clock import utc_now

SIGNATURE_HEADER = "Leadflow-Signature"


def sign(body: bytes, secret: str, t: int) -> str:
    """The Leadflow-Signature value of `body` at unix time `t`."""
    digest = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={digest}"


class Webhook(HttpDestination):
    kind = "webhook"

    def __init__(self, name: str, config: WebhookDestination, client: httpx.AsyncClient) -> None:
        super().__init__(name, config, client)
        # Parsed once, not on every request (a URL httpx refuses fails each delivery as before).
        self.url: httpx.URL | str = config.url
        with contextlib.suppress(httpx.InvalidURL):
            self.url = httpx.URL(config.url)

    async def deliver_one(self, item: Item) -> DeliveryResult:
        config: WebhookDestination = self.config
        payload = item.document if config.mapping is None else self.render({}, item.document)
        body = orjson.dumps(payload)
        headers = {
            **config.headers,
            "Content-Type": "application/json",
            "Idempotency-Key": item.delivery_id,
            "User-Agent": "leadflow-router",
        }
        if config.secret:
            headers[SIGNATURE_HEADER] = sign(body, config.secret, int(utc_now().timestamp()))
        try:
            response = await self.client.post(self.url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            return transport_error(exc)
        return result_of(response, self) or DeliveryResult.delivered(
            http_status=response.status_code
        )
