"""Capture's message bus: message type → handler, and the one write path for submissions.

Every door hands its message here. Submissions take one road: `capture_batch` runs a
batch of them (the intake's group of concurrent posts) in one unit of work with one
commit; `capture` is a batch of one (a webhook's lead, the group's fallback). A lost
race with a concurrent first touch of the same person (the database's uniqueness
refuses the second insert) is retried: the retry finds the winner's lead.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy.exc import IntegrityError

from services.capture import accounts, handlers, platforms, quarantine, store
from services.capture.commands import (
    Captured,
    CaptureLead,
    CaptureLeads,
    CaptureRetrievedLead,
    ClaimRetrieval,
    CreateApiKey,
    EraseLead,
    ForgetPlatformLead,
    QueueRetrievals,
    RejectSubmission,
    ReleaseSubmission,
    RetryRetrieval,
    SkipRetrievedLead,
)
from services.capture.domain import InvalidLead
from services.capture.repository import CaptureUnitOfWork
from services.capture.settings import CaptureConfig
from shared.clock import Clock, utc_now
from shared.db import Database
from shared.db.batching import Batcher
from shared.messagebus import Handler, MessageBus

RACE_ATTEMPTS = 3


class CaptureBus(MessageBus):
    """The bus, retrying a lost first-touch race and counting what it captured."""

    #: How many intake groups may be written at once (see `intake`).
    concurrent_batches = 1

    async def handle(self, message: Any) -> Any:
        """One unit of work, one commit; retried when a concurrent insert won the race."""
        for attempt in range(RACE_ATTEMPTS):
            try:
                result = await super().handle(message)
            except IntegrityError:
                if attempt == RACE_ATTEMPTS - 1:
                    raise
                continue
            if isinstance(result, Captured):
                handlers.count_capture(result)
            return result
        raise AssertionError("unreachable")

    async def capture_batch(self, commands: Sequence[CaptureLead]) -> list[Captured | InvalidLead]:
        """Submissions in one unit of work and one commit; a refused one gets its
        InvalidLead in its place. A failure fails the whole batch (see `Batcher`)."""
        results: list[Captured | InvalidLead] = await super().handle(CaptureLeads(tuple(commands)))
        for result in results:
            if isinstance(result, Captured):
                handlers.count_capture(result)
        return results

    async def capture(self, command: CaptureLead) -> Captured:
        """One submission: a batch of one (InvalidLead is raised)."""
        results: list[Captured | InvalidLead] = await self.handle(CaptureLeads((command,)))
        result = results[0]
        if isinstance(result, InvalidLead):
            raise result
        handlers.count_capture(result)
        return result


def handler_table(
    config: CaptureConfig, wake_retrieval: Callable[[], None], clock: Clock
) -> dict[type, Handler]:
    """Message type → handler, their dependencies bound."""

    def bind(handler: Callable[..., Any], **deps: Any) -> Handler:
        return functools.partial(handler, **deps)

    return {
        CaptureLeads: bind(handlers.handle_capture_leads, config=config, clock=clock),
        ReleaseSubmission: bind(quarantine.handle_release_submission, config=config, clock=clock),
        RejectSubmission: bind(quarantine.handle_reject_submission),
        CaptureRetrievedLead: bind(
            platforms.handle_capture_retrieved_lead, config=config, clock=clock
        ),
        EraseLead: bind(accounts.handle_erase_lead, clock=clock),
        CreateApiKey: bind(accounts.handle_create_api_key, clock=clock),
        QueueRetrievals: bind(platforms.handle_queue_retrievals, wake=wake_retrieval, clock=clock),
        ForgetPlatformLead: bind(platforms.handle_forget_platform_lead, clock=clock),
        ClaimRetrieval: bind(platforms.handle_claim_retrieval, clock=clock),
        SkipRetrievedLead: bind(platforms.handle_skip_retrieved_lead, clock=clock),
        RetryRetrieval: bind(platforms.handle_retry_retrieval, clock=clock),
    }


def bus(
    db: Database,
    config: CaptureConfig | None = None,
    *,
    source: str = "leadflow/capture",
    wake_retrieval: Callable[[], None] = lambda: None,
    clock: Clock = utc_now,
) -> CaptureBus:
    """Capture's bus on `db`; events it publishes carry `source`."""

    def uow() -> CaptureUnitOfWork:
        return CaptureUnitOfWork(db, store.outbox, store.inbox, source)

    capture_bus = CaptureBus(uow, handler_table(config or CaptureConfig(), wake_retrieval, clock))
    # PostgreSQL: a second group is written while the first waits for the server's
    # answers (its commit, its round trips). SQLite has one writer at a time: no gain.
    capture_bus.concurrent_batches = 1 if db.is_sqlite else 2
    return capture_bus


def intake(capture_bus: CaptureBus) -> Batcher[CaptureLead, Captured]:
    """The intake of concurrent submissions: gathered into batches on the bus."""
    return _gathering(capture_bus, capture_bus.capture_batch, capture_bus.capture, "capture-intake")


def notifications(capture_bus: CaptureBus) -> Batcher[QueueRetrievals, int]:
    """Platform notifications to store for retrieval (Meta, LinkedIn), gathered like the
    intake: a platform's burst of webhooks shares commits instead of taking one each, so
    their acknowledgements keep pace with the database's one writer on SQLite."""
    return _gathering(
        capture_bus, capture_bus.handle_all, capture_bus.handle, "platform-notifications"
    )


def _gathering(
    capture_bus: CaptureBus, handle_all: Any, handle: Any, name: str
) -> Batcher[Any, Any]:
    """A door's batcher on the bus.

    A message waits at most 10 ms for others to share its commit (until 8 are waiting):
    an answer 10 ms later is nothing to a person or a platform, and at campaign rates a
    group of several costs far less per message than one each. (20 ms saved little more
    CPU and doubled the wait: Google's webhook p50 went from 12 to 25 ms.)
    """
    return Batcher(
        handle_all,
        handle,
        gather_seconds=0.01,
        gather_below=8,
        concurrency=capture_bus.concurrent_batches,
        name=name,
    )
