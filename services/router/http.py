"""The router's routes: assignments (why, acknowledge), outcomes, dead letters."""

from __future__ import annotations

import html
import logging
import time
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

import httpx
import orjson
from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field, field_validator, model_validator

from services.router import domain, outcomes, store
from services.router.handlers import (
    AckError,
    RecordOutcome,
    handle_acknowledge,
    handle_record_outcome,
    handle_redrive,
)
from services.router.settings import HubSpotDestination, RoutingConfig
from shared.events.topics import TOPICS, dlq_topic
from shared.http import ADMIN_ERRORS, AdminDep, ApiError, SettingsDep, bearer_token, is_admin
from shared.kafka.dlq import read_dead_letters
from shared.service import ServiceRuntime
from shared.settings import Settings

router = APIRouter()
log = logging.getLogger(__name__)


async def get_runtime(request: Request) -> ServiceRuntime:
    return request.app.state.runtime  # type: ignore[no-any-return]


async def get_config(request: Request) -> RoutingConfig:
    return request.app.state.config  # type: ignore[no-any-return]


RuntimeDep = Annotated[ServiceRuntime, Depends(get_runtime)]
ConfigDep = Annotated[RoutingConfig, Depends(get_config)]


# Assignments ----------------------------------------------------------------------------


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat() if value else None


def delivery_view(row: Any) -> dict[str, Any]:
    return {
        "delivery_id": row.delivery_id,
        "assignment_id": row.assignment_id,
        "lead_id": row.lead_id,
        "destination": row.destination,
        "type": row.kind,
        "purpose": row.purpose,
        "status": row.status,
        "attempts": row.attempts,
        "redrives": row.redrives,
        "next_attempt_at": _iso(row.next_attempt_at) if row.status == store.PENDING else None,
        "last_error": row.last_error,
        "last_status": row.last_status,
        "external_id": row.external_id,
        "created_at": _iso(row.created_at),
        "delivered_at": _iso(row.delivered_at),
        "failed_at": _iso(row.failed_at),
    }


def assignment_view(row: Any, deliveries: list[Any]) -> dict[str, Any]:
    return {
        "assignment_id": row.assignment_id,
        "lead_id": row.lead_id,
        "rep_id": row.rep_id,
        "queue": row.queue,
        "rule_id": row.rule_id,
        "status": row.status,
        "reason": row.reason,
        "reassigned_from": row.reassigned_from,
        "reassignments": row.reassignments,
        "captured_at": _iso(row.captured_at),
        "assigned_at": _iso(row.created_at),
        "sla_due_at": _iso(row.sla_due_at),
        "acknowledged_at": _iso(row.acknowledged_at),
        "breached_at": _iso(row.breached_at),
        "delivered_at": _iso(row.delivered_at),
        "deliveries": [delivery_view(d) for d in deliveries],
    }


@router.get(
    "/v1/assignments/{assignment_id}",
    summary="One assignment: who got the lead and why",
    tags=["assignments"],
    responses={404: {"description": "Unknown assignment"}},
)
async def get_assignment(assignment_id: str, runtime: RuntimeDep) -> dict[str, Any]:
    """The decision with its reason (rule, pool, candidates, chosen rep) and its deliveries."""
    async with runtime.uow() as uow:
        row = await store.get_assignment(uow.session, assignment_id)
        if row is None:
            raise ApiError(404, "not_found", "no such assignment", field="assignment_id")
        deliveries = await store.list_deliveries(uow.session, assignment_id=assignment_id)
    return assignment_view(row, deliveries)


@router.get(
    "/v1/leads/{lead_id}/assignments",
    summary="Every assignment of a lead, oldest first",
    tags=["assignments"],
)
async def lead_assignments(lead_id: str, runtime: RuntimeDep) -> dict[str, Any]:
    """Assignments and reassignments of one lead, each with its reason and deliveries."""
    async with runtime.uow() as uow:
        rows = await store.lead_assignments(uow.session, lead_id)
        deliveries = await store.list_deliveries(uow.session, lead_id=lead_id, limit=1000)
    return {
        "lead_id": lead_id,
        "assignments": [
            assignment_view(r, [d for d in deliveries if d.assignment_id == r.assignment_id])
            for r in rows
        ],
    }


class AckIn(BaseModel):
    """The acknowledgement link's token (or an admin bearer token instead)."""

    token: str | None = None


async def _acknowledge(
    assignment_id: str, token: str | None, request: Request, runtime: ServiceRuntime
) -> Any:
    settings: Settings = request.app.state.settings
    secret = settings.secret_key.get_secret_value()
    if token:
        if not domain.ack_token_valid(secret, assignment_id, token):
            raise ApiError(
                403, "bad_token", "the acknowledgement token is not valid", field="token"
            )
    elif not (bearer_token(request) and is_admin(request, settings)):
        raise ApiError(
            401, "unauthorized", "send the link's token or an admin token", field="token"
        )
    try:
        async with runtime.uow() as uow:
            return await handle_acknowledge(assignment_id, uow)
    except AckError as exc:
        raise ApiError(exc.status, exc.code, exc.message, field="assignment_id") from None


@router.post(
    "/v1/assignments/{assignment_id}/ack",
    summary="The rep took the lead",
    tags=["assignments"],
    responses={
        401: {"description": "No token"},
        403: {"description": "Bad token"},
        404: {"description": "Unknown assignment"},
        409: {"description": "Reassigned or closed"},
    },
)
async def acknowledge(
    assignment_id: str,
    request: Request,
    runtime: RuntimeDep,
    token: Annotated[str | None, Query(description="The link's signed token.")] = None,
    body: AckIn | None = None,
) -> dict[str, Any]:
    """Stop the speed-to-lead clock. Idempotent: a second ack answers the same."""
    row = await _acknowledge(
        assignment_id, token or (body.token if body else None), request, runtime
    )
    return {
        "assignment_id": row.assignment_id,
        "lead_id": row.lead_id,
        "rep_id": row.rep_id,
        "status": row.status,
        "acknowledged_at": _iso(row.acknowledged_at),
    }


@router.get(
    "/v1/assignments/{assignment_id}/ack",
    summary="The acknowledgement link in rep notifications",
    tags=["assignments"],
    response_class=HTMLResponse,
    responses={
        status: {"description": description, "content": {"text/html": {}}}
        for status, description in (
            (401, "No token"),
            (403, "Bad token"),
            (404, "Unknown assignment"),
            (409, "Reassigned or closed"),
        )
    },
)
async def acknowledge_link(
    assignment_id: str,
    request: Request,
    runtime: RuntimeDep,
    token: Annotated[str, Query(description="The link's signed token.")],
) -> HTMLResponse:
    """The same as POST, for a click in an email or Slack; answers a small page."""
    try:
        row = await _acknowledge(assignment_id, token, request, runtime)
    except ApiError as exc:
        return HTMLResponse(_page("Not acknowledged", exc.message), status_code=exc.status)
    return HTMLResponse(_page("Thanks!", f"Lead {row.lead_id} is yours. Go get it."))


def _page(title: str, text: str) -> str:
    return (
        "<!doctype html><meta charset=utf-8><title>leadflow</title>"
        f"<h1>{html.escape(title)}</h1><p>{html.escape(text)}</p>"
    )


# Outcomes -------------------------------------------------------------------------------


class OutcomeIn(BaseModel):
    """A CRM outcome: the lead (by id or email) converted or was disqualified."""

    lead_id: str | None = Field(default=None, max_length=64)
    email: str | None = Field(default=None, max_length=320)
    outcome: Literal["converted", "disqualified"]
    # Bounded like every stored amount: 18 digits, 4 decimals (insights keeps ten-thousandths).
    value: Decimal = Field(
        default=Decimal("0"), ge=0, max_digits=18, decimal_places=4, examples=["4800.00"]
    )
    currency: str = Field(default="USD", min_length=3, max_length=3)
    reason: str | None = Field(default=None, max_length=500)
    outcome_id: str | None = Field(
        default=None,
        max_length=200,
        description="Idempotency key (deal id...); default: one outcome of each kind per lead.",
    )
    occurred_at: datetime | None = None

    @field_validator("lead_id", "email", "currency", "reason", "outcome_id")
    @classmethod
    def _no_nul(cls, value: str | None) -> str | None:
        # No database stores NUL in text (PostgreSQL refuses it).
        if value is not None and "\x00" in value:
            raise ValueError("must not contain NUL characters")
        return value

    @model_validator(mode="after")
    def _who(self) -> OutcomeIn:
        if not (self.lead_id or self.email):
            raise ValueError("give lead_id or email")
        if self.occurred_at is not None and self.occurred_at.tzinfo is None:
            raise ValueError("occurred_at needs a time zone")
        return self


@router.post(
    "/v1/outcomes",
    summary="Close the loop: a lead converted or was disqualified (admin)",
    tags=["outcomes"],
    status_code=202,
    responses={404: {"description": "No lead has this email"}, **ADMIN_ERRORS},
)
async def post_outcome(body: OutcomeIn, runtime: RuntimeDep, _: AdminDep) -> dict[str, Any]:
    """Publishes lead.converted or lead.disqualified on leads.outcomes, once per outcome id."""
    async with runtime.uow() as uow:
        lead_id = body.lead_id
        if lead_id is None:
            row = await store.find_lead_by_email(uow.session, body.email or "")
            if row is None:
                raise ApiError(404, "unknown_lead", "no routed lead has this email", field="email")
            lead_id = row.lead_id
        command = RecordOutcome(
            lead_id=lead_id,
            outcome=body.outcome,
            outcome_id=body.outcome_id or f"{body.outcome}:{lead_id}",
            occurred_at=body.occurred_at or datetime.now(UTC),
            value=body.value,
            currency=body.currency.upper(),
            reason=body.reason,
        )
        fresh = await handle_record_outcome(command, uow)
    return {
        "lead_id": lead_id,
        "outcome": body.outcome,
        "outcome_id": command.outcome_id,
        "status": "recorded" if fresh else "duplicate",
    }


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
    runtime: RuntimeDep,
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
            int(time.time() * 1000),
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
    recorded, unmatched = 0, 0
    client: httpx.AsyncClient = request.app.state.http_client
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
        async with runtime.uow() as uow:
            lead_id = None
            for contact_id in deal.contact_ids:
                lead_id = await store.lead_of_external_id(uow.session, name, contact_id)
                if lead_id:
                    break
            if lead_id is None:
                unmatched += 1
                continue
            fresh = await handle_record_outcome(
                RecordOutcome(
                    lead_id=lead_id,
                    outcome=change.kind,  # type: ignore[arg-type]
                    outcome_id=f"hubspot-deal:{change.deal_id}:{change.kind}",
                    occurred_at=change.occurred_at,
                    value=deal.amount if change.kind == "converted" else Decimal("0"),
                    currency=(deal.currency or "USD").upper(),
                    reason=deal.lost_reason or change.stage,
                ),
                uow,
            )
            recorded += int(fresh)
    return {"outcomes": recorded, "unmatched": unmatched, "ignored": 0}


# Dead letters ---------------------------------------------------------------------------


@router.get(
    "/v1/dlq",
    summary="Failed deliveries, or a Kafka .dlq topic (admin)",
    tags=["dlq"],
    responses=ADMIN_ERRORS,
)
async def list_dlq(
    runtime: RuntimeDep,
    settings: SettingsDep,
    _: AdminDep,
    topic: Annotated[
        str | None, Query(description="List this Kafka topic's .dlq instead of deliveries.")
    ] = None,
    destination: Annotated[str | None, Query()] = None,
    lead_id: Annotated[str | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    """Deliveries that gave up (re-drive them), or dead-lettered events of a topic."""
    if topic is not None:
        name = topic if topic.endswith(".dlq") else dlq_topic(topic)
        if name.removesuffix(".dlq") not in TOPICS:
            raise ApiError(422, "invalid_field", f"unknown topic {topic!r}", field="topic")
        letters = await read_dead_letters(settings, name, limit)
        return {"topic": name, "dead_letters": [letter.summary() for letter in letters]}
    async with runtime.uow() as uow:
        rows = await store.list_deliveries(
            uow.session,
            status=store.FAILED,
            destination=destination,
            lead_id=lead_id,
            limit=limit,
        )
    return {"deliveries": [delivery_view(r) for r in rows]}


@router.post(
    "/v1/dlq/{delivery_id}/redrive",
    summary="Deliver a failed delivery again (admin)",
    tags=["dlq"],
    status_code=202,
    responses={
        404: {"description": "Unknown delivery"},
        409: {"description": "Not failed"},
        **ADMIN_ERRORS,
    },
)
async def redrive(
    delivery_id: str, request: Request, runtime: RuntimeDep, _: AdminDep
) -> dict[str, Any]:
    """Back to the queue with a fresh attempt budget, using the current configuration."""
    try:
        async with runtime.uow() as uow:
            row = await handle_redrive(delivery_id, uow)
    except AckError as exc:
        raise ApiError(exc.status, exc.code, exc.message, field="delivery_id") from None
    if row is None:
        raise ApiError(404, "not_found", "no such delivery", field="delivery_id")
    request.app.state.delivery.wake()
    return delivery_view(row)
