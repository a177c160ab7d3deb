"""HubSpot's deal-stage webhook, read as closed-loop outcomes.

HubSpot signs webhook requests (v3): `X-HubSpot-Signature-v3` is the base64
HMAC-SHA256, keyed with the app's client secret, of method + URI + body +
`X-HubSpot-Request-Timestamp` (milliseconds; older than 5 minutes is refused).
The body is a list of events; a `deal.propertyChange` of `dealstage` into a won
or lost stage becomes an outcome. The deal's contacts are read from HubSpot
(`GET /crm/v3/objects/deals/{id}?associations=contacts`) and matched to leads by
the contact ids the router's HubSpot deliveries created.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import httpx

from services.router.settings import HubSpotDestination, Outcomes
from shared.clock import Clock, utc_now

MAX_AGE_MS = 5 * 60 * 1000


class SignatureError(Exception):
    """The request is not signed by HubSpot with our client secret."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def hubspot_signature(secret: str, method: str, uri: str, body: bytes, timestamp: str) -> str:
    """The X-HubSpot-Signature-v3 value of a request."""
    message = method.upper().encode() + uri.encode() + body + timestamp.encode()
    digest = hmac.new(secret.encode(), message, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def verify_hubspot(
    secret: str,
    method: str,
    uris: list[str],
    body: bytes,
    signature: str | None,
    timestamp: str | None,
    now_ms: int,
) -> None:
    """Raise SignatureError unless one of `uris` signs to `signature` within 5 minutes."""
    if not secret:
        raise SignatureError(403, "routing.outcomes.hubspot_client_secret is not configured")
    if not signature or not timestamp:
        raise SignatureError(401, "X-HubSpot-Signature-v3 and X-HubSpot-Request-Timestamp needed")
    # ASCII digits only ("²".isdigit() holds), and few enough for int().
    if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 15):
        raise SignatureError(403, "X-HubSpot-Request-Timestamp is not a time in milliseconds")
    if abs(now_ms - int(timestamp)) > MAX_AGE_MS:
        raise SignatureError(403, "X-HubSpot-Request-Timestamp is outside the accepted window")
    for uri in uris:
        expected = hubspot_signature(secret, method, uri, body, timestamp)
        if hmac.compare_digest(expected.encode(), signature.encode()):
            return
    raise SignatureError(403, "X-HubSpot-Signature-v3 does not match")


@dataclass(frozen=True)
class StageChange:
    """A deal moved into a won or lost stage."""

    event_id: str
    deal_id: str
    kind: str  # converted | disqualified
    stage: str
    occurred_at: datetime


def stage_changes(events: Any, config: Outcomes, clock: Clock = utc_now) -> list[StageChange]:
    """The won/lost deal-stage changes among HubSpot webhook events (others are ignored)."""
    if not isinstance(events, list):
        raise ValueError("the body must be a JSON array of HubSpot events")
    changes = []
    for event in events:
        if not isinstance(event, dict):
            raise ValueError("each event must be an object")
        if event.get("subscriptionType") not in ("deal.propertyChange", "object.propertyChange"):
            continue
        if event.get("propertyName") != "dealstage":
            continue
        stage = str(event.get("propertyValue", ""))
        kind = (
            "converted"
            if stage in config.won_stages
            else "disqualified"
            if stage in config.lost_stages
            else None
        )
        if kind is None or event.get("objectId") is None:
            continue
        millis = event.get("occurredAt")
        try:
            occurred = (
                datetime.fromtimestamp(int(millis) / 1000, UTC)
                if isinstance(millis, int | float)
                else clock()
            )
        except (OverflowError, OSError, ValueError):
            raise ValueError("occurredAt is not a time in milliseconds") from None
        changes.append(
            StageChange(
                event_id=str(event.get("eventId", "")),
                deal_id=str(event["objectId"]),
                kind=kind,
                stage=stage,
                occurred_at=occurred,
            )
        )
    return changes


@dataclass(frozen=True)
class Deal:
    """What the outcome needs from the deal."""

    contact_ids: list[str]
    amount: Decimal
    currency: str | None
    lost_reason: str | None


async def fetch_deal(client: httpx.AsyncClient, hubspot: HubSpotDestination, deal_id: str) -> Deal:
    """Read a deal with its amount and associated contacts (raises httpx errors)."""
    response = await client.get(
        f"{hubspot.base_url.rstrip('/')}/crm/v3/objects/deals/{deal_id}",
        params={
            "properties": "amount,deal_currency_code,closed_lost_reason,dealstage",
            "associations": "contacts",
        },
        headers={"Authorization": f"Bearer {hubspot.token}"},
    )
    response.raise_for_status()
    body = response.json()
    properties = body.get("properties") or {}
    try:
        amount = Decimal(str(properties.get("amount") or "0"))
    except InvalidOperation:
        amount = Decimal("0")
    contacts = ((body.get("associations") or {}).get("contacts") or {}).get("results") or []
    return Deal(
        contact_ids=[str(c.get("id")) for c in contacts if c.get("id") is not None],
        amount=amount,
        currency=properties.get("deal_currency_code") or None,
        lost_reason=properties.get("closed_lost_reason") or None,
    )
