"""Nurture's routes: open pixel, click redirect, unsubscribe, double opt-in, enrollments.

Links in emails carry signed tokens (see tokens.py). Pages people see answer
HTML; everything else answers leadflow's JSON error shape.
"""

from __future__ import annotations

import base64
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from services.nurture import engagement, queries, store, tokens
from services.nurture.commands import (
    ConfirmConsent,
    RecordClick,
    RecordOpen,
    Unsubscribe,
)
from services.nurture.config import NurtureConfig
from services.nurture.pages import NO_STORE, either, error_page, page, wants_html
from services.nurture.queries import LeadRecord
from services.nurture.views import enrollment_view, send_view
from shared.clock import iso, utc_now
from shared.http import ADMIN_ERRORS, AdminDep, ApiError, BusDep, SettingsDep, app_state
from shared.settings import Settings

router = APIRouter()

# A transparent 1x1 GIF.
PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")


ConfigDep = Annotated[NurtureConfig, Depends(app_state("config"))]


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
            now=utc_now(),
        )
    except tokens.ExpiredToken:
        raise ApiError(410, "expired_token", "this link has expired", field="token") from None
    except tokens.BadToken:
        raise ApiError(403, "bad_token", "this link is not valid", field="token") from None
    if not all(isinstance(payload.get(key), str) and payload[key] for key in keys):
        raise ApiError(403, "bad_token", "this link is not valid", field="token")
    return payload


def _confirm_payload(settings: Settings, config: NurtureConfig, token: str) -> dict[str, Any]:
    """A double opt-in link's payload, while the link is valid."""
    valid = config.double_opt_in.token_valid.total_seconds()
    return _payload(settings, tokens.CONFIRM, token, ("d",), valid)


# Tracking -------------------------------------------------------------------------------


@router.get(
    "/v1/track/open/{token}",
    summary="Open pixel",
    tags=["tracking"],
    response_class=Response,
    responses={200: {"content": {"image/gif": {}}}, 403: {"description": "Bad token"}},
)
async def track_open(token: str, bus: BusDep, settings: SettingsDep) -> Response:
    """A 1x1 GIF; the first open of an email is announced as lead.engaged (kind open)."""
    payload = _payload(settings, tokens.OPEN, token, ("s",))
    await bus.handle(RecordOpen(payload["s"]))
    return Response(PIXEL, media_type="image/gif", headers=NO_STORE)


@router.get(
    "/v1/track/click/{token}",
    summary="Click redirect (only to the email's own links)",
    tags=["tracking"],
    status_code=302,
    response_class=RedirectResponse,
    responses={403: {"description": "Bad token"}, 404: {"description": "Unknown link"}},
)
async def track_click(token: str, bus: BusDep, settings: SettingsDep) -> Response:
    """302 to the link; the first click on each link is announced as lead.engaged (click)."""
    payload = _payload(settings, tokens.CLICK, token, ("s", "l"))
    target = await bus.handle(RecordClick(payload["s"], payload["l"]))
    if target is None:
        raise ApiError(404, "unknown_link", "this link is not one of the email's", field="token")
    return RedirectResponse(target, status_code=302, headers=NO_STORE)


# Unsubscribe ----------------------------------------------------------------------------


@router.get(
    "/v1/unsubscribe/{token}",
    summary="Unsubscribe page",
    tags=["unsubscribe"],
    response_class=HTMLResponse,
    responses={403: either("Bad token (a page)")},
)
async def unsubscribe_page(
    token: str, request: Request, bus: BusDep, settings: SettingsDep
) -> Response:
    """Asks to confirm with a button: link scanners fetch GETs, so a GET changes nothing."""
    try:
        payload = _payload(settings, tokens.UNSUBSCRIBE, token, ("d",))
    except ApiError as exc:
        return page("This link does not work", exc.message, status=exc.status)
    lead = await queries.get_lead(bus.uow_factory, payload["d"])
    if lead is not None and lead.unsubscribed_at is not None:
        return page("You are unsubscribed", "You will not get any more emails from us.")
    return page("Unsubscribe?", "You will not get any more of these emails.", form="Unsubscribe")


@router.post(
    "/v1/unsubscribe/{token}",
    summary="One-click unsubscribe (RFC 8058) and the page's button",
    tags=["unsubscribe"],
    responses={
        200: either("Unsubscribed", "text/plain"),
        403: either("Bad token", "application/json"),
    },
)
async def unsubscribe(token: str, request: Request, bus: BusDep, settings: SettingsDep) -> Response:
    """Mail clients POST `List-Unsubscribe=One-Click`; the page posts its button. Idempotent."""
    try:
        payload = _payload(settings, tokens.UNSUBSCRIBE, token, ("d",))
    except ApiError as exc:
        return error_page(request, exc)
    form = await request.form()
    one_click = form.get("List-Unsubscribe") == "One-Click"
    await bus.handle(Unsubscribe(payload["d"], "one_click" if one_click else "page"))
    if wants_html(request) or not one_click:
        return page("You are unsubscribed", "You will not get any more emails from us.")
    return Response(status_code=200, content=b"unsubscribed\n", media_type="text/plain")


# Double opt-in --------------------------------------------------------------------------


@router.get(
    "/v1/confirm/{token}",
    summary="Double opt-in confirmation page",
    tags=["double opt-in"],
    response_class=HTMLResponse,
    responses={403: either("Bad token (a page)"), 410: either("Expired link (a page)")},
)
async def confirm_page(token: str, config: ConfigDep, settings: SettingsDep) -> Response:
    """Asks to confirm with a button: link scanners fetch GETs, so a GET changes nothing."""
    try:
        _confirm_payload(settings, config, token)
    except ApiError as exc:
        return page("This link does not work", exc.message, status=exc.status)
    return page(
        "Confirm your subscription",
        f"One more click and {config.organization} can send you email.",
        form="Yes, subscribe me",
    )


@router.post(
    "/v1/confirm/{token}",
    summary="Confirm marketing consent (double opt-in)",
    tags=["double opt-in"],
    responses={
        200: either("Confirmed"),
        303: {"description": "Confirmed: to the configured thank-you page"},
        403: either("Bad token", "application/json"),
        409: either("Unsubscribed or forgotten", "application/json"),
        410: either("Expired link", "application/json"),
    },
)
async def confirm(
    token: str,
    request: Request,
    bus: BusDep,
    config: ConfigDep,
    settings: SettingsDep,
) -> Response:
    """Consent counts from now, with the time and the client's IP; the lead is enrolled."""
    try:
        payload = _confirm_payload(settings, config, token)
    except ApiError as exc:
        return error_page(request, exc)
    ip = request.client.host if request.client else None
    confirmation = await bus.handle(ConfirmConsent(payload["d"], ip))
    if confirmation == engagement.NOT_POSSIBLE:
        return error_page(
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
    return page("Thank you", "Your subscription is confirmed.")


# Enrollments ----------------------------------------------------------------------------


def _found(record: LeadRecord | None) -> LeadRecord:
    if record is None:
        raise ApiError(404, "not_found", "nurture has not seen this lead", field="lead_id")
    return record


@router.get(
    "/v1/leads/{lead_id}/enrollments",
    summary="The lead's sequences and the state of each step",
    tags=["enrollments"],
    responses={404: {"description": "Nurture has not seen this lead"}},
)
async def lead_enrollments(lead_id: str, bus: BusDep, config: ConfigDep) -> list[dict[str, Any]]:
    """Oldest first; an empty list for a lead that entered no sequence (hot, no consent...)."""
    found = _found(await queries.lead_record(bus.uow_factory, lead_id, store.STEP))
    return [enrollment_view(run, found.sends, config) for run in found.enrollments]


@router.get(
    "/v1/leads/{lead_id}/consent",
    summary="The lead's marketing consent, double opt-in and unsubscribe state (admin)",
    tags=["enrollments"],
    responses={**ADMIN_ERRORS, 404: {"description": "Nurture has not seen this lead"}},
)
async def lead_consent(lead_id: str, bus: BusDep, _: AdminDep) -> dict[str, Any]:
    """Consent (none, pending confirmation, granted) with its source, time and IP: the proof
    of a double opt-in. Admin only, as the IP address is personal data."""
    found = _found(await queries.lead_record(bus.uow_factory, lead_id, store.CONFIRM))
    lead = found.lead
    return {
        "lead_id": lead_id,
        "consent": lead.consent,
        "consent_source": lead.consent_source,
        "consent_at": iso(lead.consent_at),
        "consent_ip": lead.consent_ip,
        "unsubscribed_at": iso(lead.unsubscribed_at),
        "bounced_at": iso(lead.bounced_at),
        "erased_at": iso(lead.erased_at),
        "confirmation_emails": [send_view(row) for row in found.sends],
    }
