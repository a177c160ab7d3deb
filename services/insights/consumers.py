"""Insights reads every topic: one consumer group; how a batch folds its lead rows."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from services.insights.console.timeline import recording
from services.insights.lead_cache import LeadCache
from services.insights.messagebus import EVENT_HANDLERS
from shared.db.uow import UnitOfWork
from shared.events import Envelope
from shared.events.topics import TOPICS
from shared.kafka.consumer import Handler
from shared.service import ServiceRuntime

HANDLERS: dict[str, Handler] = EVENT_HANDLERS


async def load_leads(uow: UnitOfWork, events: Sequence[Envelope[Any]]) -> None:
    """A batch's lead rows are merged in SQL at commit, in one statement, never read."""
    LeadCache.of(uow).merge_in_sql()


def register(runtime: ServiceRuntime) -> None:
    """One consumer group on all six topics; the console's timeline records every event."""
    # A read model off the speed path: a batch waits up to a quarter second for more
    # events, so a burst is counted in a few full transactions instead of many small ones.
    runtime.add_consumer(TOPICS, recording(HANDLERS), before_batch=load_leads, linger=0.25)
