"""Topic → event type → handler."""

from __future__ import annotations

import functools

from services.nurture import handlers
from services.nurture.settings import NurtureConfig
from shared.events import (
    LeadConverted,
    LeadDisqualified,
    LeadEngaged,
    LeadErased,
    LeadScored,
    LeadUnsubscribed,
)
from shared.events.topics import LEADS_ENGAGEMENT, LEADS_ERASURE, LEADS_OUTCOMES, LEADS_SCORED
from shared.service import ServiceRuntime


def register(runtime: ServiceRuntime, config: NurtureConfig, wake: handlers.Wake) -> None:
    """Scored leads to enroll or stop; engagement, outcomes and erasure to end sequences."""
    runtime.add_consumer(
        [LEADS_SCORED, LEADS_ENGAGEMENT, LEADS_OUTCOMES, LEADS_ERASURE],
        {
            LeadScored.TYPE: functools.partial(
                handlers.handle_lead_scored, config=config, wake=wake
            ),
            LeadEngaged.TYPE: functools.partial(handlers.handle_lead_engaged, config=config),
            LeadUnsubscribed.TYPE: functools.partial(
                handlers.handle_lead_unsubscribed, config=config
            ),
            LeadConverted.TYPE: functools.partial(handlers.handle_lead_converted, config=config),
            LeadDisqualified.TYPE: functools.partial(
                handlers.handle_lead_disqualified, config=config
            ),
            LeadErased.TYPE: functools.partial(handlers.handle_lead_erased, config=config),
        },
    )
