"""Topic → event type → handler, and what a batch loads before its handlers run."""

from __future__ import annotations

import functools

from services.router.assignment import load_routing_cache
from services.router.handlers import Wake, handle_lead_erased, handle_lead_scored
from services.router.settings import RoutingConfig
from shared.events import LeadErased, LeadScored
from shared.events.topics import LEADS_ERASURE, LEADS_SCORED
from shared.service import ServiceRuntime


def register(runtime: ServiceRuntime, config: RoutingConfig, wake: Wake) -> None:
    """Sales-ready leads to route, and people to forget."""
    # On the speed path, but a batch still waits up to 50 ms for more: at campaign rates
    # a few leads share one transaction, which costs far less than the wait.
    runtime.add_consumer(
        [LEADS_SCORED, LEADS_ERASURE],
        {
            LeadScored.TYPE: functools.partial(handle_lead_scored, config=config, wake=wake),
            LeadErased.TYPE: handle_lead_erased,
        },
        before_batch=functools.partial(load_routing_cache, config=config),
        linger=0.05,
    )
