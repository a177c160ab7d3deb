"""The spam quarantine's use cases: list, release or reject held-back submissions; the
consent ledger's reads."""

from __future__ import annotations

from decimal import Decimal

from services.capture import store
from services.capture.commands import (
    Captured,
    CaptureLead,
    NotReleasable,
    RejectSubmission,
    ReleaseSubmission,
)
from services.capture.domain import build_attribution, normalize_submission
from services.capture.handlers import accept_submission
from services.capture.repository import CaptureUnitOfWork
from services.capture.settings import CaptureConfig
from shared.clock import Clock, utc_now


async def handle_release_submission(
    message: ReleaseSubmission,
    uow: CaptureUnitOfWork,
    config: CaptureConfig,
    clock: Clock = utc_now,
) -> Captured:
    """Let a quarantined submission through: the normal capture path, on the same row."""
    row = await store.get_submission(uow.session, message.submission_id)
    if row is None or row.status != "quarantined":
        raise NotReleasable(message.submission_id, row.status if row else None)
    raw = row.raw or {}
    command = CaptureLead(
        source=row.source,
        data=raw.get("data") or {},
        form_id=row.form_id,
        client_ip=row.client_ip,
        is_test=bool(row.is_test),
        cost=Decimal(raw["cost"]) if raw.get("cost") else None,
        attribution=raw.get("attribution") or {},
        from_platform=bool(raw.get("from_platform")),
        platform=row.platform or {},
    )
    form = config.forms.get(command.form_id) if command.form_id else None
    normalized = normalize_submission(command.data, form, from_platform=command.from_platform)
    touch = build_attribution(
        config.channels,
        command.source,
        command.form_id,
        {**normalized.attribution, **command.attribution},
    )
    contact = normalized.contact
    await uow.submissions.preload(
        (), [contact.email] if contact.email else [], [contact.phone] if contact.phone else []
    )
    return await accept_submission(uow, command, config, normalized, touch, None, clock(), row)


async def handle_reject_submission(message: RejectSubmission, uow: CaptureUnitOfWork) -> None:
    """Drop a quarantined submission for good: spam keeps no personal data."""
    row = await store.get_submission(uow.session, message.submission_id)
    if row is None or row.status != "quarantined":
        raise NotReleasable(message.submission_id, row.status if row else None)
    await store.delete_submission(uow.session, message.submission_id)
