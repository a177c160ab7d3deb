"""Scoring's composition root: config, model, runtime, consumers, the decay sweep, routes."""

from __future__ import annotations

import logging

from fastapi import FastAPI

from services.scoring import consumers, messagebus, store
from services.scoring import settings as scoring_settings
from services.scoring.decay import DecayWorker
from services.scoring.http import router
from services.scoring.model import RuleModel
from shared.app import configure, service_app
from shared.settings import Settings

SERVICE = "scoring"
VERSION = "0.1.0"

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None) -> FastAPI:
    """The scoring service."""
    runtime, config = configure(SERVICE, settings, scoring_settings.load, store.outbox, store.inbox)
    model = RuleModel(config)
    consumers.register(runtime, model)
    bus = messagebus.bus(runtime.uow, model)
    decay = DecayWorker(
        bus,
        interval_seconds=config.decay.sweep_minutes * 60,
        batch_size=config.decay.sweep_batch,
    )
    log.info("scoring model %s loaded", model.version)
    return service_app(
        runtime,
        title="leadflow scoring",
        description="Scores leads by fit and engagement, grades them hot, warm or cold, "
        "decides when they are sales-ready and explains every point.",
        version=VERSION,
        routers=[router],
        workers={"decay": decay.run} if config.decay.half_life_days else {},
        state={"config": config, "model": model, "bus": bus, "decay": decay},
        max_in_flight=runtime.settings.max_in_flight,
    )
