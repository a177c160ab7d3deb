"""Capture's form routes and what every capture route shares (dependencies, body
reading, tokens, the `Accepted` answer).

Each route parses input into one message, hands it to the bus (submissions through
the intake's batches) and shapes the response. The lead API and erasure live in
lead_api.py, ad-platform webhooks in webhooks.py, admin routes in admin.py.
"""

from __future__ import annotations

import hmac
import math
import time
from typing import Annotated, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx
import orjson
from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import BaseModel, Field

from services.capture import openapi
from services.capture.captcha import captcha_token, verify_captcha
from services.capture.commands import Captured, CaptureLead
from services.capture.domain import InvalidLead
from services.capture.messagebus import CaptureBus
from services.capture.settings import CaptureConfig, FormConfig
from services.capture.sources.common import nul_path
from services.capture.spam import IDEMPOTENCY_FIELD, RateLimiter, control_fields, form_spam_reason
from shared import metrics
from shared.http import ApiError, app_state, direct_route, error_response
from shared.service import ServiceRuntime

router = APIRouter()

FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
MAX_IDEMPOTENCY_KEY = 200


RuntimeDep = Annotated[ServiceRuntime, Depends(app_state("runtime"))]
ConfigDep = Annotated[CaptureConfig, Depends(app_state("config"))]
LimiterDep = Annotated[RateLimiter, Depends(app_state("limiter"))]
HttpClientDep = Annotated[httpx.AsyncClient, Depends(app_state("http_client"))]
BusDep = Annotated[CaptureBus, Depends(app_state("bus"))]


class Accepted(BaseModel):
    """A stored submission."""

    lead_id: str | None = Field(
        description="The person's lead (null while quarantined).", examples=[openapi.LEAD_ID]
    )
    submission_id: str = Field(examples=[openapi.SUBMISSION_ID])
    status: str = Field(description="accepted, duplicate or quarantined", examples=["accepted"])


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
        return without_nul(data) if b"\\u0000" in body or b"\x00" in body else data
    if kind in FORM_TYPES:
        form = await request.form(max_files=0, max_fields=200)
        values: dict[str, Any] = {}
        for key, value in form.multi_items():
            if not isinstance(value, str):
                continue
            # Several checked boxes of one name arrive as repeated keys: keep them all.
            values[key] = f"{values[key]}, {value}" if key in values else value
        return without_nul(values)
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
@direct_route
async def submit_form(request: Request) -> Response:
    """Accept a form submission (urlencoded, multipart or JSON).

    A browser's plain HTML post gets a 303 to the form's thank-you page; JSON and
    fetch clients get 202 with the lead and submission ids. Suspected spam
    (honeypot, too fast, throwaway address, failed captcha) is stored in quarantine
    and answered like any other submission.
    """
    # The path, the header and the app's parts straight from the request: the busiest
    # route is called straight from the edge middleware, with no dependency solving
    # (openapi.FORM_PARAMETERS documents them).
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
        if not is_exact_id(data.get(IDEMPOTENCY_FIELD)):
            raise ApiError(422, "invalid_field", "must be a string", field=IDEMPOTENCY_FIELD)
        key = idempotency_key or text_value(data.get(IDEMPOTENCY_FIELD))
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
        result = await state.intake.submit(command)
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
    return accepted_response(result, cors)


def accepted_response(result: Captured, headers: dict[str, str] | None = None) -> Response:
    """The `Accepted` body, serialized directly (its fields are plain strings)."""
    body = {
        "lead_id": result.lead_id,
        "submission_id": result.submission_id,
        "status": result.status,
    }
    return Response(
        orjson.dumps(body), status_code=202, headers=headers, media_type="application/json"
    )


def text_value(value: Any) -> str | None:
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


def without_nul(data: Any) -> Any:
    """`data`, unless a NUL character hides in it: no database stores one in text."""
    culprit = nul_path(data)
    if culprit is not None:
        raise ApiError(422, "invalid_character", "NUL characters are not allowed", field=culprit)
    return data


def is_exact_id(value: Any) -> bool:
    """An id is a string or an exact integer: a JSON number past 2**64 arrives as a float."""
    return not isinstance(value, float)
