"""Capture's lead API and erasure routes (API key or admin token).

`POST /v1/leads` takes one lead or a batch; each lead is one submission handed to the
intake. `POST /v1/erasure` forgets a person everywhere.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import JSONResponse, Response
from fastapi.types import DecoratedCallable
from pydantic import BaseModel, ConfigDict, Field

from services.capture import openapi, store
from services.capture.accounts import hash_api_key
from services.capture.commands import CaptureLead, EraseLead
from services.capture.domain import InvalidLead, normalize_email, normalize_phone
from services.capture.http import (
    MAX_IDEMPOTENCY_KEY,
    BusDep,
    ConfigDep,
    RuntimeDep,
    bearer_token,
    client_ip,
    content_type,
    has_admin_token,
    is_exact_id,
    text_value,
    without_nul,
)
from services.capture.settings import CaptureConfig
from shared import metrics
from shared.http import ApiError, refuse_nul
from shared.service import ServiceRuntime

router = APIRouter()

IdempotencyKey = Annotated[
    str | None,
    Header(
        description=openapi.IDEMPOTENCY_KEY_DESCRIPTION,
        examples=[openapi.IDEMPOTENCY_KEY_EXAMPLE],
    ),
]


class LeadIn(BaseModel):
    """One lead sent by a server or a lead vendor (other keys are kept as custom fields)."""

    model_config = ConfigDict(extra="allow")

    email: str | None = Field(default=None, examples=["ada@example.com"])
    phone: str | None = Field(default=None, examples=["+14155550123"])
    first_name: str | None = None
    last_name: str | None = None
    company: str | None = None
    promo_code: str | None = Field(default=None, examples=["SPRING26"])
    external_id: str | None = Field(
        default=None, description="Your id of this lead: a retry with the same id is a no-op."
    )
    form_id: str | None = Field(default=None, description="A configured form (mapping, consent).")
    fields: dict[str, Any] | None = Field(default=None, description="Answers, as an object.")


_LEAD_SCHEMA = LeadIn.model_json_schema()
LEADS_BODY = openapi.json_body(
    openapi.LEADS_EXAMPLES,
    {
        "oneOf": [
            _LEAD_SCHEMA,
            {
                "title": "Batch",
                "type": "object",
                "required": ["leads"],
                "properties": {"leads": {"type": "array", "maxItems": 500, "items": _LEAD_SCHEMA}},
            },
        ]
    },
)


async def _api_key_source(request: Request, runtime: ServiceRuntime) -> tuple[str, Decimal | None]:
    key = bearer_token(request) or request.headers.get("x-api-key", "").strip()
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


async def _json_body(request: Request) -> Any:
    if content_type(request) != "application/json":
        raise ApiError(415, "unsupported_media_type", "send application/json", field="content-type")
    try:
        return without_nul(orjson.loads(await request.body()))
    except orjson.JSONDecodeError:
        raise ApiError(400, "invalid_json", "the body is not valid JSON", field="body") from None


def _rejected(index: int, code: str, field: str, message: str) -> dict[str, Any]:
    return {
        "index": index,
        "status": "rejected",
        "error": {"code": code, "field": field, "message": message},
    }


def _accepting(
    path: str,
    summary: str,
    tag: str,
    responses: openapi.Responses,
    body: dict[str, Any],
    **more: Any,
) -> Callable[[DecoratedCallable], DecoratedCallable]:
    """A POST route answering 202 Accepted, documented by its answers and body examples."""
    return router.post(
        path,
        summary=summary,
        tags=[tag],
        status_code=202,
        responses=responses,
        openapi_extra=body,
        **more,
    )


@_accepting(
    "/v1/leads", "Send one lead or a batch (API key)", "intake", openapi.LEADS_RESPONSES, LEADS_BODY
)
async def submit_leads(
    request: Request,
    runtime: RuntimeDep,
    config: ConfigDep,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Server-to-server and lead-vendor intake: one lead, or {"leads": [...]} (≤ 500).

    The key names the source (utm_source unless the lead says otherwise) and the cost
    per lead. `external_id` makes a retry a no-op; without it, `Idempotency-Key` does
    (per item index in a batch). Offline and point-of-sale leads carry `promo_code`.
    """
    source_name, cost = await _api_key_source(request, runtime)
    body = await _json_body(request)
    if isinstance(body, dict) and "leads" in body:
        items, batch = body["leads"], True
        if not isinstance(items, list) or not items:
            raise ApiError(422, "invalid_field", "leads must be a non-empty array", field="leads")
        if len(items) > 500:
            raise ApiError(413, "batch_too_large", "at most 500 leads per batch", field="leads")
    elif isinstance(body, dict):
        items, batch = [body], False
    else:
        raise ApiError(422, "invalid_field", 'send a lead object or {"leads": [...]}', field="body")
    if idempotency_key and len(idempotency_key) > MAX_IDEMPOTENCY_KEY:
        raise ApiError(422, "invalid_field", "Idempotency-Key is too long", field="Idempotency-Key")
    results: list[dict[str, Any]] = []
    for index, item in enumerate(items):
        result = await _submit_one(
            index, item, source_name, cost, idempotency_key, request, runtime, config
        )
        if not batch and result["status"] == "rejected":
            error = result["error"]
            raise ApiError(422, error["code"], error["message"], field=error["field"])
        results.append(result)
    if not batch:
        only = results[0]
        return JSONResponse(
            {k: only[k] for k in ("lead_id", "submission_id", "status")}, status_code=202
        )
    return JSONResponse(
        {"results": results},
        status_code=207 if any(r["status"] == "rejected" for r in results) else 202,
    )


async def _submit_one(
    index: int,
    item: Any,
    source_name: str,
    cost: Decimal | None,
    idempotency_key: str | None,
    request: Request,
    runtime: ServiceRuntime,
    config: CaptureConfig,
) -> dict[str, Any]:
    if not isinstance(item, dict):
        return _rejected(index, "invalid_field", "leads", "each lead must be an object")
    form_id = text_value(item.get("form_id"))
    if form_id is not None and form_id not in config.forms:
        return _rejected(index, "unknown_form", "form_id", f"no form {form_id!r} is configured")
    fields = {k: v for k, v in item.items() if k not in ("external_id", "form_id", "fields")}
    if isinstance(item.get("fields"), dict):
        fields.update(item["fields"])
    if not is_exact_id(item.get("external_id")):
        return _rejected(
            index, "invalid_field", "external_id", "external_id must be a string or an integer"
        )
    external = text_value(item.get("external_id"))
    key = external or (f"{idempotency_key}:{index}" if idempotency_key else None)
    if key and len(key) > MAX_IDEMPOTENCY_KEY:
        return _rejected(index, "invalid_field", "external_id", "external_id is too long")
    command = CaptureLead(
        source="api",
        data=fields,
        form_id=form_id,
        dedupe_key=f"{source_name}:{key}" if key else None,
        client_ip=client_ip(request),
        cost=cost,
        attribution={"utm_source": source_name} if "utm_source" not in fields else {},
    )
    try:
        result = await request.app.state.intake.submit(command)
    except InvalidLead as exc:
        metrics.leads_rejected_total.labels("api", exc.code).inc()
        return _rejected(index, exc.code, exc.field, exc.message)
    return {
        "index": index,
        "status": result.status,
        "lead_id": result.lead_id,
        "submission_id": result.submission_id,
    }


async def require_key_or_admin(request: Request, runtime: RuntimeDep) -> None:
    """An API key or the admin token, checked before the body is even validated."""
    if not has_admin_token(request, runtime):
        await _api_key_source(request, runtime)


class ErasureIn(BaseModel):
    """Who to forget: one of email, phone (E.164 or with country code), lead_id."""

    email: str | None = Field(default=None, examples=["ada@example.com"])
    phone: str | None = Field(default=None, examples=["+14155550123"])
    lead_id: str | None = Field(default=None, examples=[openapi.LEAD_ID])

    _no_nul = refuse_nul("email", "phone", "lead_id")


@_accepting(
    "/v1/erasure",
    "Forget a person (API key or admin token)",
    "privacy",
    openapi.ERASURE_RESPONSES,
    openapi.ERASURE_BODY,
    dependencies=[Depends(require_key_or_admin)],
)
async def erase(body: ErasureIn, bus: BusDep) -> dict[str, Any]:
    """Remove a person's PII from capture and tell every service (lead.erased) to do the same."""
    if not (body.email or body.phone or body.lead_id):
        raise ApiError(422, "invalid_field", "give an email, a phone or a lead_id", field="email")
    try:
        email = normalize_email(body.email) if body.email else None
        phone = normalize_phone(body.phone, "US")[0] if body.phone else None
    except InvalidLead as exc:
        raise ApiError(422, "invalid_field", exc.message, field=exc.field) from None
    lead_id = await bus.handle(EraseLead(email=email, phone=phone, lead_id=body.lead_id))
    if lead_id is None:
        raise ApiError(404, "unknown_person", "no lead matches", field="email")
    return {"lead_id": lead_id or None, "status": "erased"}
