"""The router's webhooks: HubSpot's deal-stage changes, read as closed-loop outcomes.

The request is checked (signature, JSON), the won/lost deals are read from HubSpot
and matched to leads outside any transaction, then every outcome the request carries
is recorded in one.
"""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import Annotated, Any

import httpx
import orjson
from fastapi import APIRouter, Header, Request

from services.router import outcomes, queries
from services.router.commands import RecordOutcome
from services.router.http import ConfigDep
from services.router.settings import HubSpotDestination
from shared.clock import utc_now
from shared.http import ApiError, BusDep
from shared.settings import Settings

router = APIRouter()
log = logging.getLogger(__name__)


@router.post(
    "/v1/webhooks/hubspot",
    summary="HubSpot deal-stage webhook (X-HubSpot-Signature-v3)",
    tags=["outcomes"],
    responses={
        401: {"description": "Unsigned"},
        403: {"description": "Bad signature"},
        415: {"description": "Not JSON"},
    },
)
async def hubspot_webhook(
    request: Request,
    bus: BusDep,
    config: ConfigDep,
    signature: Annotated[str | None, Header(alias="X-HubSpot-Signature-v3")] = None,
    timestamp: Annotated[str | None, Header(alias="X-HubSpot-Request-Timestamp")] = None,
) -> dict[str, Any]:
    """Deals moved to a won or lost stage become lead.converted / lead.disqualified."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind and kind != "application/json":
        raise ApiError(415, "unsupported_media_type", "send application/json", field="content-type")
    raw = await request.body()
    settings: Settings = request.app.state.settings
    uris = [str(request.url)]
    public = config.public_url or settings.public_url
    if public:
        query = f"?{request.url.query}" if request.url.query else ""
        uris.append(public.rstrip("/") + request.url.path + query)
    try:
        outcomes.verify_hubspot(
            config.outcomes.hubspot_client_secret,
            request.method,
            uris,
            raw,
            signature,
            timestamp,
            int(utc_now().timestamp() * 1000),
        )
    except outcomes.SignatureError as exc:
        raise ApiError(
            exc.status, "bad_signature", str(exc), field="X-HubSpot-Signature-v3"
        ) from None
    try:
        changes = outcomes.stage_changes(orjson.loads(raw), config.outcomes)
    except orjson.JSONDecodeError:
        raise ApiError(400, "invalid_json", "the body is not valid JSON", field="body") from None
    except (ValueError, TypeError) as exc:
        raise ApiError(422, "invalid_field", str(exc), field="body") from None
    name = config.outcomes.hubspot_destination
    hubspot = config.destinations.get(name) if name else None
    if changes and not isinstance(hubspot, HubSpotDestination):
        raise ApiError(
            503,
            "not_configured",
            "routing.outcomes.hubspot_destination is not set",
            field="body",
        )
    client: httpx.AsyncClient = request.app.state.http_client
    commands, unmatched = [], 0
    for change in changes:
        assert isinstance(hubspot, HubSpotDestination) and name is not None
        try:
            deal = await outcomes.fetch_deal(client, hubspot, change.deal_id)
        except httpx.HTTPError as exc:
            # HubSpot retries a webhook that did not get a 2xx.
            log.warning("reading a HubSpot deal failed: %s", type(exc).__name__)
            raise ApiError(
                503,
                "upstream_unavailable",
                "HubSpot could not be read; retry",
                field="body",
            ) from None
        lead_id = await queries.find_lead_by_crm_contacts(
            bus.uow_factory, name, tuple(deal.contact_ids)
        )
        if lead_id is None:
            unmatched += 1
            continue
        commands.append(
            RecordOutcome(
                lead_id=lead_id,
                outcome=change.kind,  # type: ignore[arg-type]
                outcome_id=f"hubspot-deal:{change.deal_id}:{change.kind}",
                occurred_at=change.occurred_at,
                value=deal.amount if change.kind == "converted" else Decimal("0"),
                currency=(deal.currency or "USD").upper(),
                reason=deal.lost_reason or change.stage,
            )
        )
    # Every change of the request in one transaction: a retried request repeats them all.
    recorded = sum(await bus.handle_all(commands)) if commands else 0
    return {"outcomes": recorded, "unmatched": unmatched, "ignored": 0}
