"""The router's routes for reps and their assignments: why a lead went where, and the
acknowledgement (by the link's signed token, or an admin token). The dependencies every
router route uses are here too."""

from __future__ import annotations

import html
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse
from pydantic import BaseModel

from services.router import domain, queries
from services.router.commands import AcknowledgeAssignment
from services.router.handlers import Refused
from services.router.settings import RoutingConfig
from services.router.views import assignment_view
from shared.clock import iso
from shared.http import ApiError, BusDep, app_state, bearer_token, is_admin
from shared.messagebus import MessageBus
from shared.settings import Settings

router = APIRouter()


ConfigDep = Annotated[RoutingConfig, Depends(app_state("config"))]


@router.get(
    "/v1/assignments/{assignment_id}",
    summary="One assignment: who got the lead and why",
    tags=["assignments"],
    responses={404: {"description": "Unknown assignment"}},
)
async def get_assignment(assignment_id: str, bus: BusDep) -> dict[str, Any]:
    """The decision with its reason (rule, pool, candidates, chosen rep) and its deliveries."""
    found = await queries.get_assignment(bus.uow_factory, assignment_id)
    if found is None:
        raise ApiError(404, "not_found", "no such assignment", field="assignment_id")
    return assignment_view(*found)


@router.get(
    "/v1/leads/{lead_id}/assignments",
    summary="Every assignment of a lead, oldest first",
    tags=["assignments"],
)
async def lead_assignments(lead_id: str, bus: BusDep) -> dict[str, Any]:
    """Assignments and reassignments of one lead, each with its reason and deliveries."""
    found = await queries.lead_assignments(bus.uow_factory, lead_id)
    return {"lead_id": lead_id, "assignments": [assignment_view(*pair) for pair in found]}


# What an acknowledgement can answer besides 200 (the POST in JSON, the link in HTML).
ACK_ERRORS = (
    (401, "No token"),
    (403, "Bad token"),
    (404, "Unknown assignment"),
    (409, "Reassigned or closed"),
)


class AckIn(BaseModel):
    """The acknowledgement link's token (or an admin bearer token instead)."""

    token: str | None = None


async def _acknowledge(
    assignment_id: str, token: str | None, request: Request, bus: MessageBus
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
        return await bus.handle(AcknowledgeAssignment(assignment_id))
    except Refused as exc:
        raise ApiError(exc.status, exc.code, exc.message, field="assignment_id") from None


@router.post(
    "/v1/assignments/{assignment_id}/ack",
    summary="The rep took the lead",
    tags=["assignments"],
    responses={status: {"description": description} for status, description in ACK_ERRORS},
)
async def acknowledge(
    assignment_id: str,
    request: Request,
    bus: BusDep,
    token: Annotated[str | None, Query(description="The link's signed token.")] = None,
    body: AckIn | None = None,
) -> dict[str, Any]:
    """Stop the speed-to-lead clock. Idempotent: a second ack answers the same."""
    row = await _acknowledge(assignment_id, token or (body.token if body else None), request, bus)
    return {
        "assignment_id": row.assignment_id,
        "lead_id": row.lead_id,
        "rep_id": row.rep_id,
        "status": row.status,
        "acknowledged_at": iso(row.acknowledged_at),
    }


@router.get(
    "/v1/assignments/{assignment_id}/ack",
    summary="The acknowledgement link in rep notifications",
    tags=["assignments"],
    response_class=HTMLResponse,
    responses={
        status: {"description": description, "content": {"text/html": {}}}
        for status, description in ACK_ERRORS
    },
)
async def acknowledge_link(
    assignment_id: str,
    request: Request,
    bus: BusDep,
    token: Annotated[str, Query(description="The link's signed token.")],
) -> HTMLResponse:
    """The same as POST, for a click in an email or Slack; answers a small page."""
    try:
        row = await _acknowledge(assignment_id, token, request, bus)
    except ApiError as exc:
        return HTMLResponse(_page("Not acknowledged", exc.message), status_code=exc.status)
    return HTMLResponse(_page("Thanks!", f"Lead {row.lead_id} is yours. Go get it."))


def _page(title: str, text: str) -> str:
    return (
        "<!doctype html><meta charset=utf-8><title>leadflow</title>"
        f"<h1>{html.escape(title)}</h1><p>{html.escape(text)}</p>"
    )
