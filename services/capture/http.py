"""Capture's intake routes: forms, the lead API and erasure.

Each route parses input into one command, calls one handler and shapes the
response. Ad-platform webhooks live in webhooks.py, admin routes in admin.py.
"""

from __future__ import annotations

import hmac
import math
import time
from decimal import Decimal
from typing import Annotated, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx
import orjson
from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from pydantic import BaseModel, ConfigDict, Field, field_validator

from services.capture import openapi, store
from services.capture.captcha import captcha_token, verify_captcha
from services.capture.domain import InvalidLead, normalize_email, normalize_phone
from services.capture.handlers import (
    Captured,
    CaptureLead,
    EraseLead,
    handle_erase_lead,
    hash_api_key,
)
from services.capture.settings import CaptureConfig, FormConfig
from services.capture.sources.common import nul_path
from services.capture.spam import IDEMPOTENCY_FIELD, RateLimiter, control_fields, form_spam_reason
from shared import metrics
from shared.http import ApiError, error_response
from shared.service import ServiceRuntime

router = APIRouter()

FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
MAX_IDEMPOTENCY_KEY = 200


async def get_runtime(request: Request) -> ServiceRuntime:
    return request.app.state.runtime  # type: ignore[no-any-return]


async def get_config(request: Request) -> CaptureConfig:
    return request.app.state.config  # type: ignore[no-any-return]


async def get_limiter(request: Request) -> RateLimiter:
    return request.app.state.limiter  # type: ignore[no-any-return]


async def get_http_client(request: Request) -> httpx.AsyncClient:
    return request.app.state.http_client  # type: ignore[no-any-return]


RuntimeDep = Annotated[ServiceRuntime, Depends(get_runtime)]
ConfigDep = Annotated[CaptureConfig, Depends(get_config)]
LimiterDep = Annotated[RateLimiter, Depends(get_limiter)]
HttpClientDep = Annotated[httpx.AsyncClient, Depends(get_http_client)]
IdempotencyKey = Annotated[
    str | None,
    Header(
        description=openapi.IDEMPOTENCY_KEY_DESCRIPTION,
        examples=[openapi.IDEMPOTENCY_KEY_EXAMPLE],
    ),
]


class Accepted(BaseModel):
    """A stored submission."""

    lead_id: str | None = Field(
        description="The person's lead (null while quarantined).", examples=[openapi.LEAD_ID]
    )
    submission_id: str = Field(examples=[openapi.SUBMISSION_ID])
    status: str = Field(description="accepted, duplicate or quarantined", examples=["accepted"])


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


def client_ip(request: Request) -> str | None:
    """The caller's address (behind a proxy, run with proxy headers: see docs/capture.md)."""
    return request.client.host if request.client else None


def content_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def _cors_headers(form: FormConfig | None, origin: str | None) -> dict[str, str]:
    if not origin or form is None:
        return {}
    if origin in form.allowed_origins or "*" in form.allowed_origins:
        return {
            "Access-Control-Allow-Origin": origin,
            "Vary": "Origin",
            "Access-Control-Allow-Methods": "POST, OPTIONS",
            "Access-Control-Allow-Headers": "Content-Type, Idempotency-Key",
            "Access-Control-Max-Age": "600",
        }
    return {}


async def _read_form_body(request: Request) -> dict[str, Any]:
    kind = content_type(request)
    if kind == "application/json":
        body = await request.body()
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise ApiError(
                400, "invalid_json", "the body is not valid JSON", field="body"
            ) from None
        if not isinstance(data, dict):
            raise ApiError(422, "invalid_field", "the body must be a JSON object", field="body")
        # JSON text can only carry a NUL as the escape \u0000: without one, no value has it.
        return _without_nul(data) if b"\\u0000" in body or b"\x00" in body else data
    if kind in FORM_TYPES:
        form = await request.form(max_files=0, max_fields=200)
        values: dict[str, Any] = {}
        for key, value in form.multi_items():
            if not isinstance(value, str):
                continue
            # Several checked boxes of one name arrive as repeated keys: keep them all.
            values[key] = f"{values[key]}, {value}" if key in values else value
        return _without_nul(values)
    raise ApiError(
        415,
        "unsupported_media_type",
        "send application/json, application/x-www-form-urlencoded or multipart/form-data",
        field="content-type",
    )


def _is_html_post(request: Request) -> bool:
    accepts_html = "text/html" in request.headers.get("accept", "")
    return accepts_html and content_type(request) in FORM_TYPES


def _with_query(url: str, params: dict[str, str]) -> str:
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k not in params]
    return urlunsplit(parts._replace(query=urlencode([*query, *params.items()])))


def _error_redirect(form: FormConfig, request: Request, code: str, field: str | None) -> str | None:
    """Where an HTML post goes back to on error: the error page, else the page it came from."""
    target = str(form.error_url) if form.error_url else None
    referer = request.headers.get("referer")
    if target is None and referer:
        parts = urlsplit(referer)
        origin = f"{parts.scheme}://{parts.netloc}"
        if origin in form.allowed_origins or "*" in form.allowed_origins:
            target = referer
    if target is None:
        return None
    return _with_query(target, {"lf_error": code, "lf_field": field or ""})


@router.options("/v1/forms/{form_id}", include_in_schema=False)
async def form_preflight(form_id: str, request: Request, config: ConfigDep) -> Response:
    form = config.forms.get(form_id)
    if form is None:
        return error_response(404, "unknown_form", f"no form {form_id!r}", "form_id")
    headers = _cors_headers(form, request.headers.get("origin"))
    if not headers:
        return error_response(403, "origin_not_allowed", "this origin may not post here", "origin")
    return Response(status_code=204, headers=headers)


@router.post(
    "/v1/forms/{form_id}",
    status_code=202,
    response_model=Accepted,
    summary="Submit a landing-page form",
    tags=["intake"],
    responses=openapi.FORM_RESPONSES,
    openapi_extra={**openapi.FORM_BODY, "parameters": openapi.FORM_PARAMETERS},
)
async def submit_form(request: Request) -> Response:
    """Accept a form submission (urlencoded, multipart or JSON).

    A browser's plain HTML post gets a 303 to the form's thank-you page; JSON and
    fetch clients get 202 with the lead and submission ids. Suspected spam
    (honeypot, too fast, throwaway address, failed captcha) is stored in quarantine
    and answered like any other submission.
    """
    # The path, the header and the app's parts straight from the request: the busiest
    # route skips dependency solving (openapi.FORM_PARAMETERS documents them).
    form_id: str = request.path_params["form_id"]
    idempotency_key = request.headers.get("idempotency-key")
    state = request.app.state
    config: CaptureConfig = state.config
    limiter: RateLimiter = state.limiter
    form = config.forms.get(form_id)
    if form is None:
        metrics.leads_rejected_total.labels("form", "unknown_form").inc()
        raise ApiError(404, "unknown_form", f"no form {form_id!r} is configured", field="form_id")
    cors = _cors_headers(form, request.headers.get("origin"))
    ip = client_ip(request)
    wait = limiter.check_form(form_id, form, ip, time.monotonic())
    if wait:
        metrics.leads_rejected_total.labels("form", "rate_limited").inc()
        seconds = max(1, math.ceil(wait))
        raise ApiError(
            429,
            "rate_limited",
            f"too many submissions; retry after {seconds} seconds",
            headers={**cors, "Retry-After": str(seconds)},
        )
    html_post = _is_html_post(request)
    try:
        data = await _read_form_body(request)
        if not _exact_id(data.get(IDEMPOTENCY_FIELD)):
            raise ApiError(422, "invalid_field", "must be a string", field=IDEMPOTENCY_FIELD)
        key = idempotency_key or _text(data.get(IDEMPOTENCY_FIELD))
        if key and len(key) > MAX_IDEMPOTENCY_KEY:
            raise ApiError(
                422,
                "invalid_field",
                f"at most {MAX_IDEMPOTENCY_KEY} characters",
                field="Idempotency-Key",
            )
        reason = form_spam_reason(form, data, time.time() * 1000)
        if reason is None and form.captcha is not None:
            token = captcha_token(form.captcha, data)
            reason = await verify_captcha(form.captcha, token, ip, state.http_client)
        controls = control_fields(form)
        command = CaptureLead(
            source="form",
            data={k: v for k, v in data.items() if k not in controls},
            form_id=form_id,
            dedupe_key=f"{form_id}:{key}" if key else None,
            client_ip=ip,
            quarantine=reason,
            spam_checks=True,
        )
        result = await state.intake.capture(command)
    except InvalidLead as exc:
        metrics.leads_rejected_total.labels("form", exc.code).inc()
        target = _error_redirect(form, request, exc.code, exc.field) if html_post else None
        if target:
            return RedirectResponse(target, status_code=303, headers=cors)
        raise ApiError(422, exc.code, str(exc), field=exc.field, headers=cors) from None
    except ApiError as exc:
        exc.headers = {**cors, **(exc.headers or {})}
        raise
    if html_post and form.thank_you_url:
        return RedirectResponse(str(form.thank_you_url), status_code=303, headers=cors)
    return _accepted(result, cors)


def _accepted(result: Captured, headers: dict[str, str] | None = None) -> Response:
    """The `Accepted` body, serialized directly (its fields are plain strings)."""
    body = {
        "lead_id": result.lead_id,
        "submission_id": result.submission_id,
        "status": result.status,
    }
    return Response(
        orjson.dumps(body), status_code=202, headers=headers, media_type="application/json"
    )


def _text(value: Any) -> str | None:
    return str(value).strip() or None if value is not None else None


def bearer_token(request: Request) -> str | None:
    value = request.headers.get("authorization", "")
    scheme, _, token = value.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def has_admin_token(request: Request, runtime: ServiceRuntime) -> bool:
    """The request carries the configured admin token (never true when none is configured)."""
    expected = runtime.settings.admin_token.get_secret_value()
    given = bearer_token(request)
    return (
        bool(expected)
        and given is not None
        and hmac.compare_digest(given.encode(), expected.encode())
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
        return _without_nul(orjson.loads(await request.body()))
    except orjson.JSONDecodeError:
        raise ApiError(400, "invalid_json", "the body is not valid JSON", field="body") from None


def _without_nul(data: Any) -> Any:
    """`data`, unless a NUL character hides in it: no database stores one in text."""
    culprit = nul_path(data)
    if culprit is not None:
        raise ApiError(422, "invalid_character", "NUL characters are not allowed", field=culprit)
    return data


def _exact_id(value: Any) -> bool:
    """An id is a string or an exact integer: a JSON number past 2**64 arrives as a float."""
    return not isinstance(value, float)


def _rejected(index: int, code: str, field: str, message: str) -> dict[str, Any]:
    return {
        "index": index,
        "status": "rejected",
        "error": {"code": code, "field": field, "message": message},
    }


@router.post(
    "/v1/leads",
    summary="Send one lead or a batch (API key)",
    tags=["intake"],
    status_code=202,
    responses=openapi.LEADS_RESPONSES,
    openapi_extra=LEADS_BODY,
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
    form_id = _text(item.get("form_id"))
    if form_id is not None and form_id not in config.forms:
        return _rejected(index, "unknown_form", "form_id", f"no form {form_id!r} is configured")
    fields = {k: v for k, v in item.items() if k not in ("external_id", "form_id", "fields")}
    if isinstance(item.get("fields"), dict):
        fields.update(item["fields"])
    if not _exact_id(item.get("external_id")):
        return _rejected(
            index, "invalid_field", "external_id", "external_id must be a string or an integer"
        )
    external = _text(item.get("external_id"))
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
        result = await request.app.state.intake.capture(command)
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

    @field_validator("email", "phone", "lead_id")
    @classmethod
    def _no_nul(cls, value: str | None) -> str | None:
        if value is not None and "\x00" in value:
            raise ValueError("must not contain NUL characters")
        return value


@router.post(
    "/v1/erasure",
    summary="Forget a person (API key or admin token)",
    tags=["privacy"],
    status_code=202,
    responses=openapi.ERASURE_RESPONSES,
    openapi_extra=openapi.ERASURE_BODY,
    dependencies=[Depends(require_key_or_admin)],
)
async def erase(body: ErasureIn, runtime: RuntimeDep) -> dict[str, Any]:
    """Remove a person's PII from capture and tell every service (lead.erased) to do the same."""
    if not (body.email or body.phone or body.lead_id):
        raise ApiError(422, "invalid_field", "give an email, a phone or a lead_id", field="email")
    try:
        email = normalize_email(body.email) if body.email else None
        phone = normalize_phone(body.phone, "US")[0] if body.phone else None
    except InvalidLead as exc:
        raise ApiError(422, "invalid_field", exc.message, field=exc.field) from None
    async with runtime.uow() as uow:
        lead_id = await handle_erase_lead(
            EraseLead(email=email, phone=phone, lead_id=body.lead_id), uow
        )
    if lead_id is None:
        raise ApiError(404, "unknown_person", "no lead matches", field="email")
    return {"lead_id": lead_id or None, "status": "erased"}
