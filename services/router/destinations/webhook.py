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
from services.router.destinations.transport import Client, Prepared
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
        self.headers = {
            **config.headers,
            "Content-Type": "application/json",
            "Idempotency-Key": "",
            "User-Agent": "leadflow-router",
        }
        # The router's own client sends the same request with less work per delivery.
        varying = ("Idempotency-Key", SIGNATURE_HEADER) if config.secret else ("Idempotency-Key",)
        self.prepared: Prepared | None = None
        if isinstance(client, Client) and isinstance(self.url, httpx.URL):
            self.prepared = client.prepare("POST", self.url, self.headers, varying)

    async def deliver_one(self, item: Item) -> DeliveryResult:
        config: WebhookDestination = self.config
        payload = item.document if config.mapping is None else self.render({}, item.document)
        body = orjson.dumps(payload)
        values = [item.delivery_id]
        if config.secret:
            values.append(sign(body, config.secret, int(utc_now().timestamp())))
        prepared = self.prepared
        try:
            if prepared is None or self.client.cookies:
                headers = {**self.headers, "Idempotency-Key": item.delivery_id}
                if config.secret:
                    headers[SIGNATURE_HEADER] = values[1]
                response = await self.client.post(self.url, content=body, headers=headers)
            else:
                answer = await prepared.send(body, *values)
                if answer[0] < 300 and not _sets_cookies(answer[2]):
                    return DeliveryResult.delivered(http_status=answer[0])
                response = prepared.response(answer)
        except httpx.HTTPError as exc:
            return transport_error(exc)
        return result_of(response, self) or DeliveryResult.delivered(
            http_status=response.status_code
        )


def _sets_cookies(headers: list[tuple[bytes, bytes]]) -> bool:
    return any(name.lower() == b"set-cookie" for name, _ in headers)
