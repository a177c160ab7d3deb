"""The retrieval worker: fetches the leads behind Meta and LinkedIn notifications.

Each round takes the due jobs and claims them for one attempt, all in one commit; asks
the platform's API for them, a few at a time (`CONCURRENCY`); hands each answer to the
bus (capture the lead and close the job, in one commit); and puts the jobs that failed
back with exponential backoff, all in one commit. A job is never dropped. While a
platform's API is down, a round of 20 jobs is then two short write transactions, not
forty: the webhooks' acknowledgements share the database's one writer with them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Mapping, Sequence
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

#: Platform API calls in flight at once in a round.
CONCURRENCY = 8


class RetrievalWorker(PollingWorker):
    """Fetches the leads behind Meta and LinkedIn notifications until each one arrives."""

    name = "retrieval"
    # Every stored notification wakes the worker: under a burst, one round per 50 ms.
    min_interval = 0.05

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
        if jobs:
            await self._attempt_all(jobs)
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

    async def _attempt_all(self, jobs: Sequence[sa.Row[Any]]) -> None:
        """Claim `jobs` in one commit; ask the platforms for the ones this process took, a
        few at a time; put the failed ones back in one commit; then capture the answers,
        one commit each, in the order the jobs were due."""
        policy = self.config.platforms.retrieval
        attempt = policy.timeout_seconds * 3 + 5  # one call and recording what it gave
        lease = self.clock() + timedelta(seconds=attempt * math.ceil(len(jobs) / CONCURRENCY))
        taken = await self.bus.handle_all(
            [ClaimRetrieval(job.retrieval_id, job.attempts, lease) for job in jobs]
        )
        mine = [job for job, took in zip(jobs, taken, strict=True) if took]  # not a replica's
        gate = asyncio.Semaphore(CONCURRENCY)
        failed: dict[str, str] = {}  # retrieval id -> "retried" | "failed", counted once put back

        async def ask(job: sa.Row[Any]) -> InboundLead | RetryRetrieval:
            async with gate:
                try:
                    return await self._fetch(job.platform, job.external_id, job.notification)
                except RetrievalError as exc:
                    failed[job.retrieval_id] = "retried" if exc.retryable else "failed"
                    return self._retry_later(job, exc, exc.message)
                except Exception as exc:
                    log.exception("retrieval %s failed unexpectedly", job.retrieval_id)
                    failed[job.retrieval_id] = "retried"
                    return self._retry_later(job, None, f"unexpected: {type(exc).__name__}")

        answers = await asyncio.gather(*map(ask, mine))
        retries = [answer for answer in answers if isinstance(answer, RetryRetrieval)]
        if retries:
            await self.bus.handle_all(retries)
            for job in mine:
                if job.retrieval_id in failed:
                    metrics.webhook_retrievals_total.labels(
                        job.platform, failed[job.retrieval_id]
                    ).inc()
        for job, answer in zip(mine, answers, strict=True):
            if not isinstance(answer, RetryRetrieval):
                await self._capture(job, answer)

    async def _capture(self, job: sa.Row[Any], lead: InboundLead) -> None:
        """Capture a retrieved lead and close its job, in one commit."""
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
            job.attempts + 1,
        )

    def _retry_later(
        self, job: sa.Row[Any], error: RetrievalError | None, message: str
    ) -> RetryRetrieval:
        """The command that puts a failed job back, after its backoff."""
        attempts = job.attempts + 1
        delay = backoff_seconds(attempts, self.config, error)
        next_at = self.clock() + timedelta(seconds=delay)
        log.warning(
            "retrieval %s (%s) attempt %d failed: %s; next in %.1fs",
            job.retrieval_id,
            job.platform,
            attempts,
            message,
            delay,
        )
        return RetryRetrieval(job.retrieval_id, next_at, message)

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
