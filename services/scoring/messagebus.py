"""Scoring's message → handler tables, bound once to the model and the clock.

Events (consumed by the Kafka consumer runtime, which dispatches them by type and
commits once per batch) and commands (handed to `bus(...)` by the decay sweep and
the CLI) reach the handlers of `handlers.py` the same way: handler(message, uow),
never committing. Reads need no bus: the doors call `views.py` directly.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from services.scoring.commands import ReplayNextPage, SweepDecay
from services.scoring.domain import ScoringModel
from services.scoring.handlers import (
    handle_decay_sweep,
    handle_lead_captured,
    handle_lead_engaged,
    handle_lead_erased,
    handle_lead_unsubscribed,
    handle_replay_page,
)
from shared.clock import Clock, utc_now
from shared.db.uow import UnitOfWork
from shared.events import LeadCaptured, LeadEngaged, LeadErased, LeadUnsubscribed
from shared.kafka.consumer import Handler
from shared.messagebus import Handler as MessageHandler
from shared.messagebus import MessageBus


def event_handlers(model: ScoringModel, clock: Clock = utc_now) -> dict[str, Handler]:
    """Event type → handler, for the consumer runtime."""
    return {
        LeadCaptured.TYPE: functools.partial(handle_lead_captured, model=model, clock=clock),
        LeadEngaged.TYPE: functools.partial(handle_lead_engaged, model=model, clock=clock),
        LeadUnsubscribed.TYPE: functools.partial(
            handle_lead_unsubscribed, model=model, clock=clock
        ),
        LeadErased.TYPE: handle_lead_erased,
    }


def command_handlers(model: ScoringModel) -> dict[type, MessageHandler]:
    """Command type → handler."""
    return {
        SweepDecay: functools.partial(handle_decay_sweep, model=model),
        ReplayNextPage: functools.partial(handle_replay_page, model=model),
    }


def bus(uow_factory: Callable[[], UnitOfWork], model: ScoringModel) -> MessageBus:
    """Scoring's bus on these units of work."""
    return MessageBus(uow_factory, command_handlers(model))
