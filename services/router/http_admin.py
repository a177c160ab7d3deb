"""The router's admin routes (admin token): outcomes reported by hand or by a CRM
integration, failed deliveries and dead letters, and their re-drive."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field, model_validator

from services.router import queries, store
from services.router.commands import (
    RecordOutcome,
    RedriveDelivery,
)
from services.router.handlers import Refused
from services.router.views import delivery_view
from shared.clock import utc_now
from shared.events.topics import TOPICS, dlq_topic
from shared.http import ADMIN_ERRORS, AdminDep, ApiError, BusDep, SettingsDep, refuse_nul
from shared.kafka.dlq import read_dead_letters

router = APIRouter()


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

    _no_nul = refuse_nul("lead_id", "email", "currency", "reason", "outcome_id")

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
async def post_outcome(body: OutcomeIn, bus: BusDep, _: AdminDep) -> dict[str, Any]:
    """Publishes lead.converted or lead.disqualified on leads.outcomes, once per outcome id."""
    lead_id = body.lead_id
    if lead_id is None:
        lead_id = await queries.find_lead_by_email(bus.uow_factory, body.email or "")
    if lead_id is None:
        raise ApiError(404, "unknown_lead", "no routed lead has this email", field="email")
    command = RecordOutcome(
        lead_id=lead_id,
        outcome=body.outcome,
        outcome_id=body.outcome_id or f"{body.outcome}:{lead_id}",
        occurred_at=body.occurred_at or utc_now(),
        value=body.value,
        currency=body.currency.upper(),
        reason=body.reason,
    )
    fresh = await bus.handle(command)
    return {
        "lead_id": lead_id,
        "outcome": body.outcome,
        "outcome_id": command.outcome_id,
        "status": "recorded" if fresh else "duplicate",
    }


# Dead letters ---------------------------------------------------------------------------


@router.get(
    "/v1/dlq",
    summary="Failed deliveries, or a Kafka .dlq topic (admin)",
    tags=["dlq"],
    responses=ADMIN_ERRORS,
)
async def list_dlq(
    bus: BusDep,
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
    rows = await queries.list_deliveries(
        bus.uow_factory, status=store.FAILED, destination=destination, lead_id=lead_id, limit=limit
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
async def redrive(delivery_id: str, bus: BusDep, _: AdminDep) -> dict[str, Any]:
    """Back to the queue with a fresh attempt budget, using the current configuration."""
    try:
        row = await bus.handle(RedriveDelivery(delivery_id))
    except Refused as exc:
        raise ApiError(exc.status, exc.code, exc.message, field="delivery_id") from None
    if row is None:
        raise ApiError(404, "not_found", "no such delivery", field="delivery_id")
    return delivery_view(row)
