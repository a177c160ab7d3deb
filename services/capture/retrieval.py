"""The retrieval worker: fetches the leads behind Meta and LinkedIn notifications.

Each round takes the due jobs, claims each one for one attempt, asks the platform's
API and hands the answer to the bus (capture the lead and close the job, in one
commit) or puts the job back with exponential backoff. A job is never dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from services.capture import queries
from services.capture.commands import (
    CaptureRetrievedLead,
    ClaimRetrieval,
    RetryRetrieval,
    SkipRetrievedLead,
)
from services.capture.platforms import RETRIEVAL_PLATFORMS, backoff_seconds, command_from_inbound
from services.capture.settings import CaptureConfig
from services.capture.sources import InboundLead, RetrievalError
from services.capture.sources.linkedin import LeadSyncClient
from services.capture.sources.meta import GraphApiClient, MetaLeadNotification
from shared import metrics
from shared.clock import Clock, utc_now
from shared.messagebus import MessageBus
from shared.runtime.worker import PollingWorker

log = logging.getLogger(__name__)


class RetrievalWorker(PollingWorker):
    """Fetches the leads behind Meta and LinkedIn notifications until each one arrives."""

    name = "retrieval"

    def __init__(self, bus: MessageBus, config: CaptureConfig, clock: Clock = utc_now) -> None:
        super().__init__()
        self.bus = bus
        self.config = config
        self.clock = clock
        self._meta: GraphApiClient | None = None
        self._linkedin: LeadSyncClient | None = None

    async def run(self, stop: asyncio.Event) -> None:
        try:
            await super().run(stop)
        finally:
            await self.aclose()

    async def round(self) -> float:
        """Attempt the due jobs; wait until the next is due (at most the poll interval)."""
        batch_size = self.config.platforms.retrieval.batch_size
        jobs = await queries.due_retrievals(self.bus.uow_factory, batch_size, self.clock)
        for job in jobs:
            await self._attempt(job)
        pending, next_at = await queries.retrieval_backlog(self.bus.uow_factory)
        for platform in RETRIEVAL_PLATFORMS:
            metrics.webhook_retrievals_pending.labels(platform).set(pending.get(platform, 0))
        poll_seconds = self.config.platforms.retrieval.poll_seconds
        if next_at is None:
            return poll_seconds
        return min(max((next_at - self.clock()).total_seconds(), 0.01), poll_seconds)

    async def aclose(self) -> None:
        for client in (self._meta, self._linkedin):
            if client is not None:
                with contextlib.suppress(Exception):
                    await client.aclose()
        self._meta = self._linkedin = None

    async def _attempt(self, job: sa.Row[Any]) -> None:
        policy = self.config.platforms.retrieval
        lease = self.clock() + timedelta(seconds=policy.timeout_seconds * 3 + 5)
        if not await self.bus.handle(ClaimRetrieval(job.retrieval_id, job.attempts, lease)):
            return  # another replica took it
        attempts = job.attempts + 1
        try:
            lead = await self._fetch(job.platform, job.external_id, job.notification)
        except RetrievalError as exc:
            await self._retry_later(job, attempts, exc, exc.message)
            return
        except Exception as exc:
            log.exception("retrieval %s failed unexpectedly", job.retrieval_id)
            await self._retry_later(job, attempts, None, f"unexpected: {type(exc).__name__}")
            return
        if lead.is_test and not self.config.platforms.accept_test_leads:
            await self.bus.handle(SkipRetrievedLead(job.retrieval_id))
            metrics.webhook_retrievals_total.labels(job.platform, "test_skipped").inc()
            return
        command = command_from_inbound(lead, self.config)
        result = await self.bus.handle(CaptureRetrievedLead(job.retrieval_id, command))
        metrics.webhook_retrievals_total.labels(job.platform, "retrieved").inc()
        log.info(
            "retrieved %s lead for retrieval %s: submission %s (%s) after %d attempt(s)",
            job.platform,
            job.retrieval_id,
            result.submission_id,
            result.status,
            attempts,
        )

    async def _retry_later(
        self, job: sa.Row[Any], attempts: int, error: RetrievalError | None, message: str
    ) -> None:
        delay = backoff_seconds(attempts, self.config, error)
        next_at = self.clock() + timedelta(seconds=delay)
        await self.bus.handle(RetryRetrieval(job.retrieval_id, next_at, message))
        result = "retried" if error is None or error.retryable else "failed"
        metrics.webhook_retrievals_total.labels(job.platform, result).inc()
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
