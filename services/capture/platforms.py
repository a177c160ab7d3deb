"""Ad-platform leads: parsed leads into capture commands, and the retrieval jobs' handlers.

Meta and LinkedIn notify with ids only. The webhook stores one retrieval job per
platform lead id (the database's uniqueness makes a repeated notification a no-op)
and answers at once; `RetrievalWorker` (retrieval.py) fetches the answers from the platform's API
with exponential backoff and runs the normal capture path with the platform lead id
as dedupe key. A job is never dropped: a lead whose retrieval keeps failing stays
pending, retried at the longest backoff, and is counted in
`leadflow_webhook_retrievals_pending`.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable
from dataclasses import asdict
from datetime import datetime
from decimal import Decimal

from services.capture import store
from services.capture.commands import (
    Captured,
    CaptureLead,
    CaptureLeads,
    CaptureRetrievedLead,
    ClaimRetrieval,
    ForgetPlatformLead,
    QueueRetrievals,
    RetryRetrieval,
    SkipRetrievedLead,
)
from services.capture.domain import ATTRIBUTION_KEYS, InvalidLead
from services.capture.handlers import handle_capture_leads
from services.capture.repository import CaptureUnitOfWork
from services.capture.settings import CaptureConfig
from services.capture.sources import InboundLead, RetrievalError
from services.capture.sources.linkedin import LinkedInLeadNotification
from services.capture.sources.meta import MetaLeadNotification
from shared.clock import Clock, utc_now
from shared.db import UnitOfWork

RETRIEVAL_PLATFORMS = ("meta", "linkedin")
_CLICK_ID_ALIASES = {"gcl_id": "gclid"}


def command_from_inbound(
    lead: InboundLead, config: CaptureConfig, *, vendor: str | None = None
) -> CaptureLead:
    """The capture command for a lead an ad platform or a signed webhook delivered."""
    if vendor is not None:
        hook = config.platforms.webhooks[vendor]
        form_id = hook.form
        cost = Decimal(str(hook.cost_per_lead)) if hook.cost_per_lead is not None else None
        dedupe_key = f"{vendor}:{lead.external_id}" if lead.external_id else None
    else:
        form_id = config.form_for(lead.source, lead.form_id)
        cost = None
        dedupe_key = lead.external_id
    attribution: dict[str, str] = {}
    platform: dict[str, str] = {}
    for key, value in lead.raw_platform.items():
        name = _CLICK_ID_ALIASES.get(key, key.removeprefix("hidden_"))
        if name in ATTRIBUTION_KEYS:
            attribution.setdefault(name, value[:500])
        else:
            platform[key] = value
    if vendor is not None:
        attribution.setdefault("utm_source", vendor)
        platform["vendor"] = vendor
    for id_name, id_value in (("campaign_id", lead.campaign_id), ("ad_id", lead.ad_id)):
        if id_value:
            attribution[id_name] = id_value
    for id_name, id_value in (("form_id", lead.form_id), ("adgroup_id", lead.adgroup_id)):
        if id_value:
            platform[id_name] = id_value
    if lead.created_at is not None:
        platform["created_at"] = lead.created_at.isoformat()
    return CaptureLead(
        source=lead.source,
        data=dict(lead.fields),
        form_id=form_id,
        dedupe_key=dedupe_key,
        is_test=lead.is_test,
        cost=cost,
        attribution=attribution,
        from_platform=True,
        platform=platform,
    )


def notification_record(notification: MetaLeadNotification | LinkedInLeadNotification) -> dict:
    """A notification as JSON for the retrieval job."""
    record = asdict(notification)
    for key, value in record.items():
        if isinstance(value, datetime):
            record[key] = value.isoformat()
    return record


async def handle_queue_retrievals(
    message: QueueRetrievals,
    uow: UnitOfWork,
    wake: Callable[[], None] = lambda: None,
    clock: Clock = utc_now,
) -> int:
    """Store a retrieval job per platform lead id not seen before; how many were new.

    The retrieval worker is woken once the jobs are committed.
    """
    now = clock()
    new = 0
    for external_id, record in message.notifications.items():
        new += await store.enqueue_retrieval(
            uow.session,
            uow.dialect,
            retrieval_id=str(uuid.uuid4()),
            platform=message.platform,
            external_id=external_id,
            notification=dict(record),
            status="pending",
            attempts=0,
            next_attempt_at=now,
            created_at=now,
            updated_at=now,
        )
    uow.on_commit(wake, once_key="retrieval.wake")
    return new


async def handle_forget_platform_lead(
    message: ForgetPlatformLead, uow: UnitOfWork, clock: Clock = utc_now
) -> None:
    """The platform reports the person deleted this lead: stop fetching, scrub its answers."""
    platform, external_id = message.platform, message.external_id
    await store.cancel_retrieval(uow.session, platform, external_id, clock())
    submission = await store.find_submission_by_key(uow.session, f"{platform}:{external_id}")
    if submission is not None:
        await store.scrub_submission(uow.session, submission.submission_id)


async def handle_claim_retrieval(
    message: ClaimRetrieval, uow: UnitOfWork, clock: Clock = utc_now
) -> bool:
    """Take a job for one attempt; False when another replica took it first."""
    return await store.claim_retrieval(
        uow.session, message.retrieval_id, message.attempts, message.lease_until, clock()
    )


async def handle_skip_retrieved_lead(
    message: SkipRetrievedLead, uow: UnitOfWork, clock: Clock = utc_now
) -> None:
    """Close the job of a test lead that is not accepted."""
    await store.finish_retrieval(uow.session, message.retrieval_id, None, clock())


async def handle_retry_retrieval(
    message: RetryRetrieval, uow: UnitOfWork, clock: Clock = utc_now
) -> None:
    """Put the job back for another attempt at `next_at`."""
    await store.reschedule_retrieval(
        uow.session, message.retrieval_id, message.next_at, message.error, clock()
    )


async def handle_capture_retrieved_lead(
    message: CaptureRetrievedLead,
    uow: CaptureUnitOfWork,
    config: CaptureConfig,
    clock: Clock = utc_now,
) -> Captured:
    """Capture a lead a platform answered with and close its retrieval job, together."""
    [result] = await handle_capture_leads(CaptureLeads((message.command,)), uow, config, clock)
    if isinstance(result, InvalidLead):
        raise result
    await store.finish_retrieval(uow.session, message.retrieval_id, result.submission_id, clock())
    return result


def backoff_seconds(attempts: int, config: CaptureConfig, error: RetrievalError | None) -> float:
    """Exponential backoff with jitter; a non-retryable error waits the longest delay."""
    policy = config.platforms.retrieval
    if error is not None and not error.retryable:
        return policy.max_backoff_seconds
    delay = policy.initial_backoff_seconds * 2 ** max(attempts - 1, 0)
    delay = min(delay, policy.max_backoff_seconds) * random.uniform(0.9, 1.1)
    if error is not None and error.retry_after:
        delay = max(delay, min(error.retry_after, policy.max_backoff_seconds))
    return delay
