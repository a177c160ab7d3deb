"""Nurture's routes: open pixel, click redirect, unsubscribe, double opt-in, enrollments.

Links in emails carry signed tokens (see tokens.py). Pages people see answer
HTML; everything else answers leadflow's JSON error shape.
"""

from __future__ import annotations

import base64
import html
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from services.nurture import engagement, handlers, store, tokens
from services.nurture.config import NurtureConfig
from shared.http import AdminDep, ApiError, SettingsDep
from shared.service import ServiceRuntime
from shared.settings import Settings

router = APIRouter()

# A transparent 1x1 GIF.
PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
NO_STORE = {"Cache-Control": "no-store, no-cache, must-revalidate, private", "Pragma": "no-cache"}


async def get_runtime(request: Request) -> ServiceRuntime:
    return request.app.state.runtime  # type: ignore[no-any-return]


async def get_config(request: Request) -> NurtureConfig:
    return request.app.state.config  # type: ignore[no-any-return]


RuntimeDep = Annotated[ServiceRuntime, Depends(get_runtime)]
ConfigDep = Annotated[NurtureConfig, Depends(get_config)]


def _secret(settings: Settings) -> str:
    return settings.secret_key.get_secret_value()


def _payload(
    settings: Settings,
    purpose: str,
    token: str,
    keys: tuple[str, ...],
    max_age_seconds: float | None = None,
) -> dict[str, Any]:
    try:
        payload = tokens.verify(
            _secret(settings),
            purpose,
            token,
            max_age_seconds=max_age_seconds,
            now=datetime.now(UTC),
        )
    except tokens.ExpiredToken:
        raise ApiError(410, "expired_token", "this link has expired", field="token") from None
    except tokens.BadToken:
        raise ApiError(403, "bad_token", "this link is not valid", field="token") from None
    if not all(isinstance(payload.get(key), str) and payload[key] for key in keys):
        raise ApiError(403, "bad_token", "this link is not valid", field="token")
    return payload


def _wants_html(request: Request) -> bool:
    return "text/html" in request.headers.get("accept", "")


def _page(title: str, text: str, *, status: int = 200, form: str | None = None) -> HTMLResponse:
    button = (
        f'<form method="post"><button type="submit" style="font-size:16px;padding:10px 20px">'
        f"{html.escape(form)}</button></form>"
        if form
        else ""
    )
    body = (
        "<!doctype html><html lang=en><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title>"
        '<body style="font-family:Helvetica,Arial,sans-serif;max-width:36em;margin:4em auto;'
        'padding:0 1em;color:#1f2933">'
        f"<h1>{html.escape(title)}</h1><p>{html.escape(text)}</p>{button}</body></html>"
    )
    return HTMLResponse(body, status_code=status, headers=NO_STORE)


def _either(description: str, *media: str) -> dict[str, Any]:
    """An OpenAPI response answered as a page to people and otherwise as `media`."""
    return {"description": description, "content": {m: {} for m in ("text/html", *media)}}


def _error_page(request: Request, error: ApiError) -> Response:
    """People get a page; mail clients and scripts get the JSON error shape."""
    if _wants_html(request):
        return _page("This link does not work", error.message, status=error.status)
    raise error


# Tracking -------------------------------------------------------------------------------


@router.get(
    "/v1/track/open/{token}",
    summary="Open pixel",
    tags=["tracking"],
    response_class=Response,
    responses={200: {"content": {"image/gif": {}}}, 403: {"description": "Bad token"}},
)
async def track_open(token: str, runtime: RuntimeDep, settings: SettingsDep) -> Response:
    """A 1x1 GIF; the first open of an email is announced as lead.engaged (kind open)."""
    payload = _payload(settings, tokens.OPEN, token, ("s",))
    async with runtime.uow() as uow:
        await engagement.handle_open(payload["s"], uow)
    return Response(PIXEL, media_type="image/gif", headers=NO_STORE)


@router.get(
    "/v1/track/click/{token}",
    summary="Click redirect (only to the email's own links)",
    tags=["tracking"],
    status_code=302,
    response_class=RedirectResponse,
    responses={403: {"description": "Bad token"}, 404: {"description": "Unknown link"}},
)
async def track_click(token: str, runtime: RuntimeDep, settings: SettingsDep) -> Response:
    """302 to the link; the first click on each link is announced as lead.engaged (click)."""
    payload = _payload(settings, tokens.CLICK, token, ("s", "l"))
    async with runtime.uow() as uow:
        target = await engagement.handle_click(payload["s"], payload["l"], uow)
    if target is None:
        raise ApiError(404, "unknown_link", "this link is not one of the email's", field="token")
    return RedirectResponse(target, status_code=302, headers=NO_STORE)


# Unsubscribe ----------------------------------------------------------------------------


@router.get(
    "/v1/unsubscribe/{token}",
    summary="Unsubscribe page",
    tags=["unsubscribe"],
    response_class=HTMLResponse,
    responses={403: {"description": "Bad token (a page)", "content": {"text/html": {}}}},
)
async def unsubscribe_page(
    token: str, request: Request, runtime: RuntimeDep, settings: SettingsDep
) -> Response:
    """Asks to confirm with a button: link scanners fetch GETs, so a GET changes nothing."""
    try:
        payload = _payload(settings, tokens.UNSUBSCRIBE, token, ("d",))
    except ApiError as exc:
        return _page("This link does not work", exc.message, status=exc.status)
    async with runtime.uow() as uow:
        lead = await store.get_lead(uow.session, payload["d"])
    if lead is not None and lead.unsubscribed_at is not None:
        return _page("You are unsubscribed", "You will not get any more emails from us.")
    return _page(
        "Unsubscribe?",
        "You will not get any more of these emails.",
        form="Unsubscribe",
    )


@router.post(
    "/v1/unsubscribe/{token}",
    summary="One-click unsubscribe (RFC 8058) and the page's button",
    tags=["unsubscribe"],
    responses={
        200: _either("Unsubscribed", "text/plain"),
        403: _either("Bad token", "application/json"),
    },
)
async def unsubscribe(
    token: str,
    request: Request,
    runtime: RuntimeDep,
    config: ConfigDep,
    settings: SettingsDep,
) -> Response:
    """Mail clients POST `List-Unsubscribe=One-Click`; the page posts its button. Idempotent."""
    try:
        payload = _payload(settings, tokens.UNSUBSCRIBE, token, ("d",))
    except ApiError as exc:
        return _error_page(request, exc)
    form = await request.form()
    one_click = form.get("List-Unsubscribe") == "One-Click"
    async with runtime.uow() as uow:
        await engagement.handle_unsubscribe(
            payload["d"], "one_click" if one_click else "page", uow, config
        )
    if _wants_html(request) or not one_click:
        return _page("You are unsubscribed", "You will not get any more emails from us.")
    return Response(status_code=200, content=b"unsubscribed\n", media_type="text/plain")


# Double opt-in --------------------------------------------------------------------------


@router.get(
    "/v1/confirm/{token}",
    summary="Double opt-in confirmation page",
    tags=["double opt-in"],
    response_class=HTMLResponse,
    responses={
        403: {"description": "Bad token (a page)", "content": {"text/html": {}}},
        410: {"description": "Expired link (a page)", "content": {"text/html": {}}},
    },
)
async def confirm_page(token: str, config: ConfigDep, settings: SettingsDep) -> Response:
    """Asks to confirm with a button: link scanners fetch GETs, so a GET changes nothing."""
    try:
        _payload(
            settings,
            tokens.CONFIRM,
            token,
            ("d",),
            config.double_opt_in.token_valid.total_seconds(),
        )
    except ApiError as exc:
        return _page("This link does not work", exc.message, status=exc.status)
    return _page(
        "Confirm your subscription",
        f"One more click and {config.organization} can send you email.",
        form="Yes, subscribe me",
    )


@router.post(
    "/v1/confirm/{token}",
    summary="Confirm marketing consent (double opt-in)",
    tags=["double opt-in"],
    responses={
        200: _either("Confirmed"),
        303: {"description": "Confirmed: to the configured thank-you page"},
        403: _either("Bad token", "application/json"),
        409: _either("Unsubscribed or forgotten", "application/json"),
        410: _either("Expired link", "application/json"),
    },
)
async def confirm(
    token: str,
    request: Request,
    runtime: RuntimeDep,
    config: ConfigDep,
    settings: SettingsDep,
) -> Response:
    """Consent counts from now, with the time and the client's IP; the lead is enrolled."""
    try:
        payload = _payload(
            settings,
            tokens.CONFIRM,
            token,
            ("d",),
            config.double_opt_in.token_valid.total_seconds(),
        )
    except ApiError as exc:
        return _error_page(request, exc)
    ip = request.client.host if request.client else None
    async with runtime.uow() as uow:
        outcome = await engagement.handle_confirm(
            payload["d"], ip, uow, config, request.app.state.scheduler.wake
        )
    if outcome == engagement.NOT_POSSIBLE:
        return _error_page(
            request,
            ApiError(
                409,
                "not_possible",
                "this address was unsubscribed or forgotten; submit the form again",
                field="token",
            ),
        )
    if config.double_opt_in.confirmed_url:
        return RedirectResponse(config.double_opt_in.confirmed_url, status_code=303)
    return _page("Thank you", "Your subscription is confirmed.")


# Enrollments ----------------------------------------------------------------------------


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat() if value else None


def send_view(row: Any) -> dict[str, Any]:
    """One email as the API shows it (no address, no content)."""
    return {
        "send_id": row.send_id,
        "kind": row.kind,
        "step": row.step,
        "id": row.step_id,
        "status": row.status,
        "due_at": _iso(row.due_at),
        "scheduled_for": _iso(row.next_attempt_at) if row.status == store.SCHEDULED else None,
        "sent_at": _iso(row.sent_at),
        "attempts": row.attempts,
        "last_error": row.last_error,
        "message_id": row.message_id,
        "opened_at": _iso(row.opened_at),
        "clicks": row.clicks,
    }


def enrollment_view(run: Any, sends: list[Any], config: NurtureConfig) -> dict[str, Any]:
    sequence = config.sequences.get(run.sequence_id)
    by_step = {row.step: row for row in sends if row.enrollment_id == run.enrollment_id}
    numbers = sorted(set(by_step) | set(range(1, len(sequence.steps) + 1 if sequence else 1)))
    steps = []
    for number in numbers:
        row = by_step.get(number)
        if row is not None:
            steps.append(send_view(row))
            continue
        open_run = run.status in handlers.OPEN_RUNS
        steps.append(
            {
                "send_id": None,
                "kind": store.STEP,
                "step": number,
                "id": sequence.step_id(number) if sequence else None,
                "status": "upcoming" if open_run else "not_reached",
            }
        )
    return {
        "enrollment_id": run.enrollment_id,
        "sequence": run.sequence_id,
        "sequence_name": (sequence.name if sequence else None) or run.sequence_id,
        "run": run.run,
        "status": run.status,
        "exit_reason": run.exit_reason,
        "enrolled_at": _iso(run.enrolled_at),
        "ended_at": _iso(run.ended_at),
        "steps": steps,
    }


@router.get(
    "/v1/leads/{lead_id}/enrollments",
    summary="The lead's sequences and the state of each step",
    tags=["enrollments"],
    responses={404: {"description": "Nurture has not seen this lead"}},
)
async def lead_enrollments(
    lead_id: str, runtime: RuntimeDep, config: ConfigDep
) -> list[dict[str, Any]]:
    """Oldest first; an empty list for a lead that entered no sequence (hot, no consent...)."""
    async with runtime.uow() as uow:
        lead = await store.get_lead(uow.session, lead_id)
        if lead is None:
            raise ApiError(404, "not_found", "nurture has not seen this lead", field="lead_id")
        runs = await store.lead_enrollments(uow.session, lead_id)
        sends = await store.lead_sends(uow.session, lead_id, kind=store.STEP)
    return [enrollment_view(run, sends, config) for run in runs]


@router.get(
    "/v1/leads/{lead_id}/consent",
    summary="The lead's marketing consent, double opt-in and unsubscribe state (admin)",
    tags=["enrollments"],
    responses={
        401: {"description": "No admin token"},
        403: {"description": "Wrong admin token"},
        404: {"description": "Nurture has not seen this lead"},
    },
)
async def lead_consent(lead_id: str, runtime: RuntimeDep, _: AdminDep) -> dict[str, Any]:
    """Consent (none, pending confirmation, granted) with its source, time and IP: the proof
    of a double opt-in. Admin only, as the IP address is personal data."""
    async with runtime.uow() as uow:
        lead = await store.get_lead(uow.session, lead_id)
        if lead is None:
            raise ApiError(404, "not_found", "nurture has not seen this lead", field="lead_id")
        confirmations = await store.lead_sends(uow.session, lead_id, kind=store.CONFIRM)
    return {
        "lead_id": lead_id,
        "consent": lead.consent,
        "consent_source": lead.consent_source,
        "consent_at": _iso(lead.consent_at),
        "consent_ip": lead.consent_ip,
        "unsubscribed_at": _iso(lead.unsubscribed_at),
        "bounced_at": _iso(lead.bounced_at),
        "erased_at": _iso(lead.erased_at),
        "confirmation_emails": [send_view(row) for row in confirmations],
    }
