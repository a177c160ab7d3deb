"""Nurture's bus: message type → handler, bound once to the config, templates and clock.

HTTP routes, CLI commands and the scheduler's rounds hand their message to the bus;
it runs the handler in one unit of work and commits once. Events from Kafka take the
consumer runtime's road instead (consumers.py), to the handlers of handlers.py.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from services.nurture import claiming, engagement, handlers, send_results
from services.nurture.commands import (
    ClaimDueSends,
    ConfirmConsent,
    RecordClick,
    RecordOpen,
    RecordSendResults,
    RedriveSend,
    Unsubscribe,
    Unsuppress,
)
from services.nurture.config import NurtureConfig
from services.nurture.enrollment import Wake
from services.nurture.rendering import Templates, Tracking
from shared.clock import Clock, utc_now
from shared.db.uow import UnitOfWork
from shared.messagebus import Handler, MessageBus


def operator_handlers(clock: Clock = utc_now) -> dict[type, Handler]:
    """What the `leadflow nurture` commands need: no config, no templates."""
    return {
        RedriveSend: functools.partial(send_results.handle_redrive, clock=clock),
        Unsuppress: functools.partial(handlers.handle_unsuppress, clock=clock),
    }


def bus(
    uow_factory: Callable[[], UnitOfWork],
    config: NurtureConfig,
    templates: Templates,
    tracking: Tracking,
    *,
    wake: Wake | None = None,
    clock: Clock = utc_now,
) -> MessageBus:
    """The service's bus: every message of its doors → its handler."""
    table: dict[type, Handler] = {
        **operator_handlers(clock),
        RecordOpen: functools.partial(engagement.handle_open, clock=clock),
        RecordClick: functools.partial(engagement.handle_click, clock=clock),
        Unsubscribe: functools.partial(engagement.handle_unsubscribe, config=config, clock=clock),
        ConfirmConsent: functools.partial(
            engagement.handle_confirm, config=config, wake=wake, clock=clock
        ),
        ClaimDueSends: functools.partial(
            claiming.handle_claim_due_sends, config=config, templates=templates, tracking=tracking
        ),
        RecordSendResults: functools.partial(
            send_results.handle_record_send_results, config=config, clock=clock
        ),
    }
    return MessageBus(uow_factory, table)


def operator_bus(uow_factory: Callable[[], UnitOfWork], clock: Clock = utc_now) -> MessageBus:
    """The bus of the `leadflow nurture` commands."""
    return MessageBus(uow_factory, operator_handlers(clock))
