"""Scoring's composition root: config, model, runtime, consumers, the decay sweep, routes."""

from __future__ import annotations

import logging

from fastapi import FastAPI

from services.scoring import consumers, messagebus, store
from services.scoring import settings as scoring_settings
from services.scoring.decay import DecayWorker
from services.scoring.http import router
from services.scoring.model import RuleModel
from shared.config import load_config
from shared.http import create_app as create_http_app
from shared.service import ServiceRuntime
from shared.settings import Settings

SERVICE = "scoring"
VERSION = "0.1.0"

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None) -> FastAPI:
    """The scoring service."""
    settings = settings or Settings()
    config = scoring_settings.load(load_config(settings.config))
    model = RuleModel(config)
    runtime = ServiceRuntime(SERVICE, settings, store.outbox, store.inbox)
    consumers.register(runtime, model)
    bus = messagebus.bus(runtime.uow, model)
    decay = DecayWorker(
        bus,
        interval_seconds=config.decay.sweep_minutes * 60,
        batch_size=config.decay.sweep_batch,
    )
    if config.decay.half_life_days:
        runtime.add_worker("decay", decay.run)
    log.info("scoring model %s loaded", model.version)
    app = create_http_app(
        service=SERVICE,
        title="leadflow scoring",
        description="Scores leads by fit and engagement, grades them hot, warm or cold, "
        "decides when they are sales-ready and explains every point.",
        version=VERSION,
        lifespan=runtime.lifespan(),
        readiness=runtime.readiness,
        routers=[router],
        max_body_bytes=settings.max_body_bytes,
        max_in_flight=settings.max_in_flight,
    )
    app.state.runtime = runtime
    app.state.config = config
    app.state.model = model
    app.state.bus = bus
    app.state.decay = decay
    app.state.settings = settings
    return app
