"""Capture's routes: parse input into one command, call one handler, shape the response."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from services.capture import store
from services.capture.domain import InvalidLead
from services.capture.handlers import (
    CaptureLead,
    EraseLead,
    capture,
    handle_erase_lead,
    hash_api_key,
)
from services.capture.settings import CaptureConfig
from shared import metrics
from shared.http import ApiError
from shared.service import ServiceRuntime

router = APIRouter()

FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


def get_runtime(request: Request) -> ServiceRuntime:
    return request.app.state.runtime  # type: ignore[no-any-return]


def get_config(request: Request) -> CaptureConfig:
    return request.app.state.config  # type: ignore[no-any-return]


RuntimeDep = Annotated[ServiceRuntime, Depends(get_runtime)]
ConfigDep = Annotated[CaptureConfig, Depends(get_config)]


class Accepted(BaseModel):
    """A stored submission."""

    lead_id: str = Field(examples=["6f1c2b1e-8a0e-4d57-9a53-1d1c7f3f2a10"])
    submission_id: str = Field(examples=["0b7d5d1e-3c39-4b7e-9a55-2b1f3a4c5d6e"])
    status: str = Field(description="accepted, duplicate or quarantined", examples=["accepted"])


class LeadIn(BaseModel):
    """One lead sent by a server or a lead vendor."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "examples": [
                {
                    "email": "ada@example.com",
                    "first_name": "Ada",
                    "last_name": "Lovelace",
                    "company": "Analytical Engines",
                    "promo_code": "SPRING26",
                    "external_id": "v-1001",
                }
            ]
        },
    )

    email: str | None = None
    phone: str | None = None
    external_id: str | None = Field(
        default=None, description="Your id of this lead: a retry with the same id is a no-op."
    )
    form_id: str | None = None


class BatchIn(BaseModel):
    """Up to 500 leads."""

    leads: list[dict[str, Any]] = Field(max_length=500)


def _client_ip(request: Request) -> str | None:
    return request.client.host if request.client else None


def _cors_headers(config: CaptureConfig, form_id: str, origin: str | None) -> dict[str, str]:
    form = config.forms.get(form_id)
    if not origin or form is None:
        return {}
    if origin in form.allowed_origins or "*" in form.allowed_origins:
        return {
            "Access-Control-Allow-Origin": origin,
            "Vary": "Origin",
            "Access-Control-Allow-Methods": "POST, OPTIONS",
            "Access-Control-Allow-Headers": "Content-Type, Idempotency-Key",
        }
    return {}


async def _read_form_body(request: Request) -> dict[str, Any]:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "application/json":
        try:
            data = orjson.loads(await request.body())
        except orjson.JSONDecodeError:
            raise ApiError(
                400, "invalid_json", "the body is not valid JSON", field="body"
            ) from None
        if not isinstance(data, dict):
            raise ApiError(422, "invalid_field", "the body must be a JSON object", field="body")
        return data
    if content_type in FORM_TYPES:
        form = await request.form()
        return {k: v for k, v in form.items() if isinstance(v, str)}
    raise ApiError(
        415,
        "unsupported_media_type",
        "send application/json, application/x-www-form-urlencoded or multipart/form-data",
        field="content-type",
    )


@router.options("/v1/forms/{form_id}", include_in_schema=False)
async def form_preflight(form_id: str, request: Request, config: ConfigDep) -> Response:
    headers = _cors_headers(config, form_id, request.headers.get("origin"))
    return Response(status_code=204 if headers else 403, headers=headers)


@router.post(
    "/v1/forms/{form_id}",
    status_code=202,
    response_model=Accepted,
    summary="Submit a landing-page form",
    tags=["intake"],
    responses={
        303: {"description": "HTML form post: redirect to the thank-you page"},
        404: {"description": "Unknown form"},
        415: {"description": "Unsupported content type"},
    },
)
async def submit_form(
    form_id: str,
    request: Request,
    runtime: RuntimeDep,
    config: ConfigDep,
    idempotency_key: Annotated[str | None, Header()] = None,
) -> Response:
    """Accept a form submission (urlencoded, multipart or JSON)."""
    form = config.forms.get(form_id)
    cors = _cors_headers(config, form_id, request.headers.get("origin"))
    if form is None:
        metrics.leads_rejected_total.labels("form", "unknown_form").inc()
        raise ApiError(404, "unknown_form", f"no form {form_id!r} is configured", field="form_id")
    data = await _read_form_body(request)
    html_post = "text/html" in request.headers.get("accept", "") and not request.headers.get(
        "content-type", ""
    ).startswith("application/json")
    command = CaptureLead(
        source="form",
        data=data,
        form_id=form_id,
        dedupe_key=idempotency_key,
        client_ip=_client_ip(request),
    )
    try:
        result = await capture(command, runtime.uow, config)
    except InvalidLead as exc:
        metrics.leads_rejected_total.labels("form", "invalid_field").inc()
        if html_post and form.error_url:
            return RedirectResponse(f"{form.error_url}?field={exc.field}", status_code=303)
        raise ApiError(422, "invalid_field", str(exc), field=exc.field, headers=cors) from None
    if html_post and form.thank_you_url:
        return RedirectResponse(str(form.thank_you_url), status_code=303, headers=cors)
    return JSONResponse(
        Accepted(
            lead_id=result.lead_id, submission_id=result.submission_id, status=result.status
        ).model_dump(),
        status_code=202,
        headers=cors,
    )


async def _api_key_source(request: Request, runtime: ServiceRuntime) -> tuple[str, Decimal | None]:
    auth = request.headers.get("authorization", "")
    key = (
        auth[7:].strip()
        if auth.lower().startswith("bearer ")
        else request.headers.get("x-api-key", "")
    )
    if not key:
        raise ApiError(
            401,
            "missing_api_key",
            "send an API key as `Authorization: Bearer <key>`",
            field="authorization",
            headers={"WWW-Authenticate": "Bearer"},
        )
    async with runtime.uow() as uow:
        row = await store.find_api_key(uow.session, hash_api_key(key))
    if row is None:
        raise ApiError(
            403, "invalid_api_key", "the API key is unknown or revoked", field="authorization"
        )
    return row.source, row.cost_per_lead


@router.post(
    "/v1/leads",
    summary="Send one lead or a batch (API key)",
    tags=["intake"],
    status_code=202,
    responses={401: {"description": "No API key"}, 403: {"description": "Bad API key"}},
    openapi_extra={
        "requestBody": {
            "content": {
                "application/json": {
                    "schema": {"oneOf": [LeadIn.model_json_schema(), BatchIn.model_json_schema()]}
                }
            }
        }
    },
)
async def submit_leads(
    request: Request,
    runtime: RuntimeDep,
    config: ConfigDep,
    idempotency_key: Annotated[str | None, Header()] = None,
) -> Response:
    """Server-to-server and lead-vendor intake: one lead, or {"leads": [...]} (≤ 500)."""
    source_name, cost = await _api_key_source(request, runtime)
    try:
        body = orjson.loads(await request.body())
    except orjson.JSONDecodeError:
        raise ApiError(400, "invalid_json", "the body is not valid JSON", field="body") from None
    if isinstance(body, dict) and isinstance(body.get("leads"), list):
        items, batch = body["leads"], True
        if len(items) > 500:
            raise ApiError(413, "batch_too_large", "at most 500 leads per batch", field="leads")
    elif isinstance(body, dict):
        items, batch = [body], False
    else:
        raise ApiError(422, "invalid_field", 'send a lead object or {"leads": [...]}', field="body")
    results: list[dict[str, Any]] = []
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            results.append(
                {
                    "index": index,
                    "status": "rejected",
                    "error": {
                        "code": "invalid_field",
                        "field": "leads",
                        "message": "each lead must be an object",
                    },
                }
            )
            continue
        fields = {k: v for k, v in item.items() if k not in ("external_id", "form_id", "fields")}
        if isinstance(item.get("fields"), dict):
            fields.update(item["fields"])
        external = item.get("external_id")
        key = (
            str(external)
            if external is not None
            else (f"{idempotency_key}:{index}" if idempotency_key else None)
        )
        command = CaptureLead(
            source="api",
            data=fields,
            form_id=str(item["form_id"]) if item.get("form_id") else None,
            dedupe_key=f"{source_name}:{key}" if key else None,
            client_ip=_client_ip(request),
            cost=cost,
            attribution={"utm_source": source_name} if "utm_source" not in fields else {},
        )
        try:
            result = await capture(command, runtime.uow, config)
        except InvalidLead as exc:
            metrics.leads_rejected_total.labels("api", "invalid_field").inc()
            if not batch:
                raise ApiError(422, "invalid_field", str(exc), field=exc.field) from None
            results.append(
                {
                    "index": index,
                    "status": "rejected",
                    "error": {"code": "invalid_field", "field": exc.field, "message": exc.message},
                }
            )
            continue
        results.append(
            {
                "index": index,
                "status": result.status,
                "lead_id": result.lead_id,
                "submission_id": result.submission_id,
            }
        )
    if not batch:
        only = results[0]
        return JSONResponse(
            {k: only[k] for k in ("lead_id", "submission_id", "status")}, status_code=202
        )
    return JSONResponse(
        {"results": results},
        status_code=207 if any(r["status"] == "rejected" for r in results) else 202,
    )


class ErasureIn(BaseModel):
    """Who to forget: one of email, phone, lead_id."""

    email: str | None = None
    phone: str | None = None
    lead_id: str | None = None


@router.post("/v1/erasure", summary="Forget a person (API key)", tags=["privacy"], status_code=202)
async def erase(body: ErasureIn, request: Request, runtime: RuntimeDep) -> dict[str, Any]:
    """Remove a person's PII from capture and tell every service to do the same."""
    await _api_key_source(request, runtime)
    if not (body.email or body.phone or body.lead_id):
        raise ApiError(422, "invalid_field", "give an email, a phone or a lead_id", field="email")
    from services.capture.domain import normalize_email

    email = normalize_email(body.email) if body.email else None
    async with runtime.uow() as uow:
        lead_id = await handle_erase_lead(
            EraseLead(email=email, phone=body.phone, lead_id=body.lead_id), uow
        )
    if lead_id is None:
        raise ApiError(404, "unknown_person", "no lead matches", field="email")
    return {"lead_id": lead_id, "status": "erased"}
