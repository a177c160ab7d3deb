"""The router's message → handler tables, with their dependencies bound once.

`bus` serves the routes, the CLI, the HubSpot webhook and the SLA checker;
`delivery_bus` the delivery worker's rounds (it needs the destinations). Events from
Kafka take the consumer runtime's door (`consumers.py`) to the handlers in `handlers.py`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from services.router import closed_loop, handlers
from services.router.commands import (
    AcknowledgeAssignment,
    CheckSla,
    ClaimDueDeliveries,
    RecordDeliveryResults,
    RecordOutcome,
    RedriveDelivery,
    ReleaseStaleClaims,
)
from services.router.delivery_claims import (
    handle_claim_due_deliveries,
    handle_release_stale_claims,
)
from services.router.delivery_results import handle_record_delivery_results
from services.router.destinations import Destination
from services.router.settings import RoutingConfig
from shared.clock import Clock, utc_now
from shared.db.uow import UnitOfWork
from shared.messagebus import Handler, MessageBus

partial = functools.partial


def _nothing() -> None:
    """No delivery worker to wake (a command-line process)."""


def bus(
    uow_factory: Callable[[], UnitOfWork],
    config: RoutingConfig | None = None,
    *,
    wake: Callable[[], None] = _nothing,
    clock: Clock = utc_now,
) -> MessageBus:
    """Commands of the router's routes, CLI, webhook and SLA checks (the SLA
    checks need the routing `config`; the command line's queue commands do not)."""
    table: dict[type, Handler] = {
        AcknowledgeAssignment: partial(handlers.handle_acknowledge, clock=clock),
        RedriveDelivery: partial(handlers.handle_redrive, wake=wake, clock=clock),
        RecordOutcome: partial(closed_loop.handle_record_outcome, clock=clock),
    }
    if config is not None:
        table[CheckSla] = partial(handlers.handle_check_sla, config=config)
    return MessageBus(uow_factory, table)


def delivery_bus(
    uow_factory: Callable[[], UnitOfWork],
    config: RoutingConfig,
    destinations: dict[str, Destination],
    ack_url: Callable[[str], str],
) -> MessageBus:
    """The delivery rounds' claim and record, and the worker's start."""
    return MessageBus(
        uow_factory,
        {
            ClaimDueDeliveries: partial(
                handle_claim_due_deliveries,
                config=config,
                destinations=destinations,
                ack_url=ack_url,
            ),
            RecordDeliveryResults: partial(
                handle_record_delivery_results, config=config, destinations=destinations
            ),
            ReleaseStaleClaims: handle_release_stale_claims,
        },
    )
