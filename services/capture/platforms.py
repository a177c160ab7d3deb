"""Ad-platform leads: parsed leads into capture commands, and the retrieval queue.

Meta and LinkedIn notify with ids only. The webhook stores one retrieval job per
platform lead id (the database's uniqueness makes a repeated notification a no-op)
and answers at once; `RetrievalWorker` fetches the answers from the platform's API
with exponential backoff and runs the normal capture path with the platform lead id
as dedupe key. A job is never dropped: a lead whose retrieval keeps failing stays
pending, retried at the longest backoff, and is counted in
`leadflow_webhook_retrievals_pending`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import uuid
from collections.abc import Callable, Mapping
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from services.capture import store
from services.capture.domain import ATTRIBUTION_KEYS
from services.capture.handlers import Captured, CaptureLead, capture
from services.capture.settings import CaptureConfig
from services.capture.sources import InboundLead, RetrievalError
from services.capture.sources.linkedin import LeadSyncClient, LinkedInLeadNotification
from services.capture.sources.meta import GraphApiClient, MetaLeadNotification
from shared import metrics
from shared.db import UnitOfWork
from shared.db.engine import is_transient_db_error

log = logging.getLogger(__name__)

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


async def handle_lead_notifications(
    platform: str, notifications: Mapping[str, dict[str, Any]], uow: UnitOfWork
) -> int:
    """Store a retrieval job per platform lead id not seen before; how many were new."""
    now = datetime.now(UTC)
    new = 0
    for external_id, record in notifications.items():
        new += await store.enqueue_retrieval(
            uow.session,
            uow.dialect,
            retrieval_id=str(uuid.uuid4()),
            platform=platform,
            external_id=external_id,
            notification=record,
            status="pending",
            attempts=0,
            next_attempt_at=now,
            created_at=now,
            updated_at=now,
        )
    return new


async def handle_lead_deleted(platform: str, external_id: str, uow: UnitOfWork) -> None:
    """The platform reports the person deleted this lead: stop fetching, scrub its answers."""
    now = datetime.now(UTC)
    await store.cancel_retrieval(uow.session, platform, external_id, now)
    submission = await store.find_submission_by_key(uow.session, f"{platform}:{external_id}")
    if submission is not None:
        await store.scrub_submission(uow.session, submission.submission_id)


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


class RetrievalWorker:
    """Fetches the leads behind Meta and LinkedIn notifications until each one arrives."""

    def __init__(self, uow_factory: Callable[[], UnitOfWork], config: CaptureConfig) -> None:
        self.uow_factory = uow_factory
        self.config = config
        self._wake = asyncio.Event()
        self._meta: GraphApiClient | None = None
        self._linkedin: LeadSyncClient | None = None

    def wake(self) -> None:
        """Look for due jobs now (called after a webhook committed new ones)."""
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        """The worker loop: process due jobs, then sleep until woken, due or the poll interval."""
        policy = self.config.platforms.retrieval
        try:
            while not stop.is_set():
                self._wake.clear()
                try:
                    await self.run_once()
                    delay = await self._until_next_due(policy.poll_seconds)
                except Exception as exc:
                    # The database may be down: the jobs stay stored, the next pass retries.
                    if is_transient_db_error(exc):
                        log.warning("retrieval pass failed: %s; retrying", type(exc).__name__)
                    else:
                        log.exception("retrieval pass failed; retrying")
                    delay = policy.poll_seconds
                waiters = [
                    asyncio.ensure_future(stop.wait()),
                    asyncio.ensure_future(self._wake.wait()),
                ]
                try:
                    await asyncio.wait(waiters, timeout=delay, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    for waiter in waiters:
                        waiter.cancel()
        finally:
            await self.aclose()

    async def aclose(self) -> None:
        for client in (self._meta, self._linkedin):
            if client is not None:
                with contextlib.suppress(Exception):
                    await client.aclose()
        self._meta = self._linkedin = None

    async def run_once(self) -> int:
        """Attempt every due job once; how many leads arrived."""
        policy = self.config.platforms.retrieval
        now = datetime.now(UTC)
        async with self.uow_factory() as uow:
            jobs = await store.due_retrievals(uow.session, now, policy.batch_size)
        arrived = 0
        for job in jobs:
            arrived += await self._attempt(job)
        await self.update_gauge()
        return arrived

    async def update_gauge(self) -> None:
        async with self.uow_factory() as uow:
            pending = await store.pending_retrievals(uow.session)
        for platform in RETRIEVAL_PLATFORMS:
            metrics.webhook_retrievals_pending.labels(platform).set(pending.get(platform, 0))

    async def _until_next_due(self, poll_seconds: float) -> float:
        async with self.uow_factory() as uow:
            next_at = await store.next_retrieval_at(uow.session)
        if next_at is None:
            return poll_seconds
        return min(max((next_at - datetime.now(UTC)).total_seconds(), 0.01), poll_seconds)

    async def _attempt(self, job: sa.Row[Any]) -> int:
        policy = self.config.platforms.retrieval
        now = datetime.now(UTC)
        lease = now + timedelta(seconds=policy.timeout_seconds * 3 + 5)
        async with self.uow_factory() as uow:
            claimed = await store.claim_retrieval(
                uow.session, job.retrieval_id, job.attempts, lease, now
            )
            await uow.commit()
        if not claimed:
            return 0  # another replica took it
        attempts = job.attempts + 1
        try:
            lead = await self._fetch(job.platform, job.external_id, job.notification)
        except RetrievalError as exc:
            await self._retry_later(job, attempts, exc, exc.message)
            return 0
        except Exception as exc:
            log.exception("retrieval %s failed unexpectedly", job.retrieval_id)
            await self._retry_later(job, attempts, None, f"unexpected: {type(exc).__name__}")
            return 0

        async def finish(uow: UnitOfWork, result: Captured) -> None:
            await store.finish_retrieval(
                uow.session, job.retrieval_id, result.submission_id, datetime.now(UTC)
            )

        if lead.is_test and not self.config.platforms.accept_test_leads:
            async with self.uow_factory() as uow:
                await store.finish_retrieval(uow.session, job.retrieval_id, None, now)
                await uow.commit()
            metrics.webhook_retrievals_total.labels(job.platform, "test_skipped").inc()
            return 0
        result = await capture(
            command_from_inbound(lead, self.config), self.uow_factory, self.config, after=finish
        )
        metrics.webhook_retrievals_total.labels(job.platform, "retrieved").inc()
        log.info(
            "retrieved %s lead for retrieval %s: submission %s (%s) after %d attempt(s)",
            job.platform,
            job.retrieval_id,
            result.submission_id,
            result.status,
            attempts,
        )
        return 1

    async def _retry_later(
        self, job: sa.Row[Any], attempts: int, error: RetrievalError | None, message: str
    ) -> None:
        delay = backoff_seconds(attempts, self.config, error)
        now = datetime.now(UTC)
        async with self.uow_factory() as uow:
            await store.reschedule_retrieval(
                uow.session, job.retrieval_id, now + timedelta(seconds=delay), message, now
            )
            await uow.commit()
        outcome = "retried" if error is None or error.retryable else "failed"
        metrics.webhook_retrievals_total.labels(job.platform, outcome).inc()
        log.warning(
            "retrieval %s (%s) attempt %d failed: %s; next in %.1fs",
            job.retrieval_id,
            job.platform,
            attempts,
            message,
            delay,
        )

    async def _fetch(
        self, platform: str, external_id: str, notification: Mapping[str, Any]
    ) -> InboundLead:
        timeout = self.config.platforms.retrieval.timeout_seconds
        if platform == "meta":
            meta = self.config.platforms.meta
            if self._meta is None:
                self._meta = GraphApiClient(
                    meta.page_access_token,
                    base_url=meta.graph_url,
                    timeout=timeout,
                    app_secret=meta.app_secret or None,
                )
            page_id = notification.get("page_id")
            token = meta.page_tokens.get(str(page_id)) if page_id else None
            if not (token or meta.page_access_token):
                raise RetrievalError(
                    "no Page access token is configured", retryable=False, code="no_token"
                )
            return await self._meta.fetch_lead(
                external_id, notification=_meta_notification(notification), access_token=token
            )
        if platform == "linkedin":
            linkedin = self.config.platforms.linkedin
            if not linkedin.access_token:
                raise RetrievalError(
                    "no LinkedIn access token is configured", retryable=False, code="no_token"
                )
            if self._linkedin is None:
                self._linkedin = LeadSyncClient(
                    linkedin.access_token,
                    base_url=linkedin.api_url,
                    api_version=linkedin.api_version,
                    timeout=timeout,
                )
            return await self._linkedin.fetch_form_response(external_id)
        raise RetrievalError(f"unknown platform {platform}", retryable=False, code="unknown")


def _meta_notification(record: Mapping[str, Any]) -> MetaLeadNotification:
    created = record.get("created_at")
    return MetaLeadNotification(
        leadgen_id=str(record["leadgen_id"]),
        page_id=record.get("page_id"),
        form_id=record.get("form_id"),
        ad_id=record.get("ad_id"),
        adgroup_id=record.get("adgroup_id"),
        created_at=datetime.fromisoformat(created) if created else None,
    )
