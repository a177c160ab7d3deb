"""Capture's admin routes: the spam quarantine and the consent ledger.

`Authorization: Bearer $LEADFLOW_ADMIN_TOKEN`. With no token configured the routes
are open in development and refused everywhere else.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request

from services.capture import openapi, queries
from services.capture.commands import (
    NotReleasable,
    RejectSubmission,
    ReleaseSubmission,
)
from services.capture.domain import InvalidLead
from services.capture.http import BusDep, RuntimeDep, accepted_response, has_admin_token
from shared.http import ApiError


async def require_admin(request: Request, runtime: RuntimeDep) -> None:
    """Admin endpoints: `Authorization: Bearer $LEADFLOW_ADMIN_TOKEN`."""
    settings = runtime.settings
    if has_admin_token(request, runtime):
        return
    if not settings.admin_token.get_secret_value():
        if settings.env == "development":
            return
        raise ApiError(
            403,
            "admin_disabled",
            "set LEADFLOW_ADMIN_TOKEN to use admin endpoints",
            field="authorization",
        )
    raise ApiError(
        401,
        "unauthorized",
        "send the admin token as `Authorization: Bearer <token>`",
        field="authorization",
        headers={"WWW-Authenticate": "Bearer"},
    )


router = APIRouter(tags=["admin"], dependencies=[Depends(require_admin)])


def _held(row: Any) -> dict[str, Any]:
    raw = row.raw or {}
    return {
        "submission_id": row.submission_id,
        "source": row.source,
        "form_id": row.form_id,
        "reason": row.quarantine_reason,
        "detail": row.quarantine_detail,
        "channel": row.channel,
        "email": row.email,
        "phone": row.phone,
        "fields": row.payload,
        "data": raw.get("data") or {},
        "attribution": row.attribution,
        "is_test": bool(row.is_test),
        "received_at": row.received_at.isoformat(),
    }


@router.get(
    "/v1/quarantine",
    summary="List submissions held back as suspected spam",
    responses={200: openapi.QUARANTINE_LIST, **openapi.ADMIN_ERRORS},
)
async def list_quarantine(
    bus: BusDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    before: Annotated[
        datetime | None, Query(description="Page on: the previous page's next_before.")
    ] = None,
    form_id: str | None = None,
    reason: Annotated[
        str | None,
        Query(description="honeypot, too_fast, disposable_email, captcha_*, invalid_contact"),
    ] = None,
) -> dict[str, Any]:
    """Newest first; page with `before`."""
    rows = await queries.list_quarantined(
        bus.uow_factory, limit, before=before, form_id=form_id, reason=reason
    )
    items = [_held(row) for row in rows]
    next_before = items[-1]["received_at"] if len(items) == limit else None
    return {"items": items, "next_before": next_before}


@router.post(
    "/v1/quarantine/{submission_id}/release",
    summary="Release a quarantined submission",
    status_code=202,
    responses={
        202: openapi.RELEASED,
        404: openapi.error_response("Not in quarantine", "not_quarantined", "...", "submission_id"),
        409: openapi.error_response(
            "Already released or erased", "not_quarantined", "...", "submission_id"
        ),
        422: openapi.error_response("Cannot become a lead", "invalid_field", "...", "email"),
        **openapi.ADMIN_ERRORS,
    },
)
async def release_submission(submission_id: str, bus: BusDep) -> Any:
    """Capture it as if it had passed the spam checks: lead.captured is emitted."""
    try:
        result = await bus.handle(ReleaseSubmission(submission_id))
    except NotReleasable as exc:
        status = 404 if exc.status is None else 409
        raise ApiError(status, "not_quarantined", str(exc), field="submission_id") from None
    except InvalidLead as exc:
        raise ApiError(422, exc.code, str(exc), field=exc.field) from None
    return accepted_response(result)


@router.post(
    "/v1/quarantine/{submission_id}/reject",
    summary="Reject a quarantined submission (it is deleted)",
    responses={
        404: openapi.error_response("Not in quarantine", "not_quarantined", "...", "submission_id"),
        409: openapi.error_response(
            "Already released or erased", "not_quarantined", "...", "submission_id"
        ),
        **openapi.ADMIN_ERRORS,
    },
)
async def reject_submission(submission_id: str, bus: BusDep) -> dict[str, str]:
    """Spam confirmed: the submission and the personal data it held are deleted."""
    try:
        await bus.handle(RejectSubmission(submission_id))
    except NotReleasable as exc:
        status = 404 if exc.status is None else 409
        raise ApiError(status, "not_quarantined", str(exc), field="submission_id") from None
    return {"submission_id": submission_id, "status": "rejected"}


@router.get(
    "/v1/leads/{lead_id}/consents",
    summary="The consent ledger of a lead",
    responses={
        200: openapi.CONSENTS,
        404: openapi.error_response("No consent recorded", "unknown_lead", "...", "lead_id"),
        **openapi.ADMIN_ERRORS,
    },
)
async def lead_consents(lead_id: str, bus: BusDep) -> dict[str, Any]:
    """Every consent decision with its wording, version, time, IP and source."""
    rows = await queries.lead_consents(bus.uow_factory, lead_id)
    if not rows:
        raise ApiError(404, "unknown_lead", "no consent recorded for this lead", field="lead_id")
    return {
        "lead_id": lead_id,
        "consents": [
            {
                "submission_id": row.submission_id,
                "source": row.source,
                "form_id": row.form_id,
                "marketing": row.marketing,
                "double_opt_in": row.double_opt_in,
                "text": row.text,
                "version": row.version,
                "ip": row.ip,
                "recorded_at": row.recorded_at.isoformat(),
            }
            for row in rows
        ],
    }
