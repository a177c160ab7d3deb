"""Ad-platform and lead-vendor webhooks: verify first, then store, then acknowledge.

Nothing is read from the database and nothing is stored before a request's
signature (or google_key) checks out. Meta and LinkedIn send ids only: their leads
are queued for the retrieval worker in the same transaction that acknowledges them.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import Callable, Iterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from fastapi.types import DecoratedCallable

from services.capture import openapi
from services.capture.commands import Captured, CaptureLead, ForgetPlatformLead, QueueRetrievals
from services.capture.http import BusDep, ConfigDep, content_type
from services.capture.platforms import command_from_inbound, notification_record
from services.capture.settings import CaptureConfig
from services.capture.sources import InboundLead, SourceError
from services.capture.sources import google as google_source
from services.capture.sources import linkedin as linkedin_source
from services.capture.sources import meta as meta_source
from services.capture.sources import signed as signed_source
from services.capture.sources import tiktok as tiktok_source
from shared import metrics
from shared.db.batching import Batcher
from shared.http import ApiError

router = APIRouter(tags=["webhooks"])
Decorator = Callable[[DecoratedCallable], DecoratedCallable]


def _refuse(source: str, exc: SourceError) -> ApiError:
    metrics.leads_rejected_total.labels(source, exc.code).inc()
    return ApiError(exc.status, exc.code, exc.message, field=exc.field)


@contextlib.contextmanager
def _refused_as(source: str) -> Iterator[None]:
    """A SourceError raised inside is the route's refusal: counted, answered with its status."""
    try:
        yield
    except SourceError as exc:
        raise _refuse(source, exc) from None


async def _raw_json(request: Request, source: str) -> bytes:
    kind = content_type(request)
    if kind and kind != "application/json" and not kind.endswith("+json"):
        metrics.leads_rejected_total.labels(source, "unsupported_media_type").inc()
        raise ApiError(415, "unsupported_media_type", "send application/json", field="content-type")
    return await request.body()


@router.get(
    "/v1/webhooks/meta",
    summary="Meta Lead Ads: subscription handshake",
    response_class=PlainTextResponse,
    responses={
        200: {
            "description": "The hub.challenge, echoed",
            "content": {"text/plain": {"example": "1158201444"}},
        },
        403: openapi.error_response(
            "Wrong verify token", "bad_verify_token", "...", "hub.verify_token"
        ),
    },
)
async def meta_handshake(request: Request, config: ConfigDep) -> Response:
    """Answer Meta's `hub.mode=subscribe` verification with the challenge."""
    with _refused_as("meta"):
        challenge = meta_source.verify_handshake(
            dict(request.query_params), config.platforms.meta.verify_token
        )
    return PlainTextResponse(challenge)


def _signed_hook(platform: str, summary: str, body: dict[str, Any]) -> Decorator:
    """The POST route of a platform's signed webhook, documented with the signature refusals.

    Routes read their signature header from the request by the name the source module
    gives it (`SIGNATURE_HEADER`); it is not a documented parameter.
    """
    return router.post(
        f"/v1/webhooks/{platform}",
        summary=summary,
        responses={200: openapi.WEBHOOK_OK, **openapi.SIGNATURE_ERRORS},
        openapi_extra=body,
    )


@_signed_hook("meta", "Meta Lead Ads: leadgen notifications", openapi.META_BODY)
async def meta_webhook(request: Request, config: ConfigDep) -> dict[str, Any]:
    """Verify X-Hub-Signature-256 over the raw body, queue each lead for retrieval, answer 200.

    The answer does not wait for the Graph API: each leadgen id is stored as a pending
    retrieval and fetched by the retrieval worker, with retries, until it arrives.
    """
    raw = await _raw_json(request, "meta")
    signature = request.headers.get(meta_source.SIGNATURE_HEADER)
    with _refused_as("meta"):
        meta_source.verify_signature(raw, signature, config.platforms.meta.app_secret)
        notifications = meta_source.parse_notifications(raw)
    records = {n.leadgen_id: notification_record(n) for n in notifications}
    new = await _enqueue(request, "meta", records)
    return {"received": len(records), "new": new}


async def _enqueue(request: Request, platform: str, records: dict[str, Any]) -> int:
    """Queue a retrieval job per new lead id (the worker is woken once they are stored);
    concurrent notifications share a commit (`messagebus.notifications`)."""
    if not records:
        return 0
    new: int = await request.app.state.notifications.submit(QueueRetrievals(platform, records))
    return new


@router.post(
    "/v1/webhooks/google",
    summary="Google Ads lead forms",
    responses={
        200: openapi.json_response("Stored (a duplicate lead_id too)", {}),
        403: openapi.error_response("Wrong google_key", "bad_google_key", "...", "google_key"),
    },
    openapi_extra=openapi.GOOGLE_BODY,
)
async def google_webhook(request: Request, config: ConfigDep) -> Response:
    """Check `google_key` against the form's key (constant time) and store the lead.

    Test leads ("Send test data") are stored flagged `is_test` and never routed; a
    lead_id seen before is answered 200 and not stored again.
    """
    raw = await _raw_json(request, "google")
    with _refused_as("google"):
        lead = google_source.parse_google_lead(raw, config.google_key_for)
    await _capture_leads(request.app.state.intake, config, [lead])
    return JSONResponse({}, status_code=200)


async def _capture_leads(
    intake: Batcher[CaptureLead, Captured],
    config: CaptureConfig,
    leads: list[InboundLead],
    vendor: str | None = None,
    replay: str | None = None,
) -> list[dict[str, Any]]:
    """Store a delivery's leads (written together by the intake); a result per lead.

    `replay` identifies the request: a lead without an id of its own is deduplicated on
    it, so replaying a captured request inside its window stores nothing new.
    """

    async def one(index: int, lead: InboundLead) -> dict[str, Any]:
        if lead.is_test and not config.platforms.accept_test_leads:
            return {"external_id": lead.external_id, "status": "test_skipped"}
        command = command_from_inbound(lead, config, vendor=vendor)
        if command.dedupe_key is None and replay:
            command = dataclasses.replace(command, dedupe_key=f"{vendor}:replay:{replay}:{index}")
        result = await intake.submit(command)
        return {
            "external_id": lead.external_id,
            "status": result.status,
            "lead_id": result.lead_id,
            "submission_id": result.submission_id,
        }

    return list(await asyncio.gather(*(one(i, lead) for i, lead in enumerate(leads))))


@router.get(
    "/v1/webhooks/linkedin",
    summary="LinkedIn: webhook validation",
    responses={
        200: openapi.json_response(
            "The challenge and its HMAC",
            {
                "challengeCode": "890e4665-4dfe-4ab1-b689-ed553bceeed0",
                "challengeResponse": "3f1c...",
            },
        )
    },
)
async def linkedin_validation(request: Request, config: ConfigDep) -> dict[str, str]:
    """Answer LinkedIn's `challengeCode` with HMAC-SHA256(client secret, challengeCode)."""
    with _refused_as("linkedin"):
        return linkedin_source.challenge_response(
            dict(request.query_params), config.platforms.linkedin.client_secret
        )


@_signed_hook("linkedin", "LinkedIn Lead Sync notifications", openapi.LINKEDIN_BODY)
async def linkedin_webhook(request: Request, bus: BusDep, config: ConfigDep) -> dict[str, Any]:
    """Verify X-LI-Signature, queue created leads for retrieval, scrub deleted ones."""
    raw = await _raw_json(request, "linkedin")
    signature = request.headers.get(linkedin_source.SIGNATURE_HEADER)
    with _refused_as("linkedin"):
        linkedin_source.verify_signature(raw, signature, config.platforms.linkedin.client_secret)
        notifications = linkedin_source.parse_notifications(raw)
    created = {n.response_id: notification_record(n) for n in notifications if not n.is_deletion}
    deleted = [n.response_id for n in notifications if n.is_deletion]
    if deleted:
        await bus.handle_all([ForgetPlatformLead("linkedin", id_) for id_ in deleted])
    new = await _enqueue(request, "linkedin", created)
    return {"received": len(notifications), "new": new, "deleted": len(deleted)}


@_signed_hook("tiktok", "TikTok Instant Form leads", openapi.TIKTOK_BODY)
async def tiktok_webhook(request: Request, config: ConfigDep) -> dict[str, Any]:
    """Verify TikTok-Signature (5-minute window) and store each lead; dedupe on lead_id."""
    raw = await _raw_json(request, "tiktok")
    settings = config.platforms.tiktok
    signature = request.headers.get(tiktok_source.SIGNATURE_HEADER)
    with _refused_as("tiktok"):
        tiktok_source.verify_signature(
            raw, signature, settings.client_secret, time.time(), settings.tolerance_seconds
        )
        leads = tiktok_source.parse_leads(raw)
    results = await _capture_leads(request.app.state.intake, config, leads)
    return {"received": len(results), "results": results}


@router.post(
    "/v1/webhooks/{source}",
    summary="Signed webhook of a lead vendor or tool",
    responses={
        200: openapi.json_response(
            "Stored: a result per lead",
            {"received": 1, "results": [{"external_id": "acme-778", "status": "accepted"}]},
        ),
        404: openapi.error_response("Unknown source", "unknown_source", "...", "source"),
        **openapi.SIGNATURE_ERRORS,
    },
    openapi_extra=openapi.SIGNED_BODY,
)
async def signed_webhook(source: str, request: Request, config: ConfigDep) -> dict[str, Any]:
    """Verify `Leadflow-Signature: t=<unix>,v1=<hex HMAC-SHA256 of "<t>." + body>` and store.

    Requests older or newer than the source's window (5 minutes by default) are refused.
    """
    hook = config.platforms.webhooks.get(source)
    if hook is None:
        metrics.leads_rejected_total.labels("webhook", "unknown_source").inc()
        raise ApiError(404, "unknown_source", f"no webhook source {source!r}", field="source")
    raw = await _raw_json(request, "webhook")
    signature = request.headers.get(signed_source.SIGNATURE_HEADER)
    with _refused_as("webhook"):
        signed_source.verify(raw, signature, hook.secrets, time.time(), hook.tolerance_seconds)
        leads = signed_source.parse_generic(raw)
        replay = signed_source.replay_key(raw, signature or "")
    results = await _capture_leads(
        request.app.state.intake, config, leads, vendor=source, replay=replay
    )
    return {"received": len(results), "results": results}
