"""Insights' composition root: config, runtime, consumers and routes wired once."""

from __future__ import annotations

import logging

from fastapi import FastAPI

from services.insights import consumers, messagebus, store
from services.insights import settings as insights_settings
from services.insights.console.app import install as install_console
from services.insights.http import router
from shared.config import load_config
from shared.http import create_app as create_http_app
from shared.service import ServiceRuntime
from shared.settings import Settings

SERVICE = "insights"
VERSION = "0.1.0"

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None) -> FastAPI:
    """The insights service."""
    settings = settings or Settings()
    config = insights_settings.load(load_config(settings.config))
    runtime = ServiceRuntime(SERVICE, settings, store.outbox, store.inbox)
    consumers.register(runtime)
    if not settings.admin_token.get_secret_value():
        if settings.env == "development":
            log.warning("LEADFLOW_ADMIN_TOKEN is not set: posting spend is open (development)")
        else:
            log.warning("LEADFLOW_ADMIN_TOKEN is not set: posting spend is refused")
    app = create_http_app(
        service=SERVICE,
        title="leadflow insights",
        description="The per-channel funnel: leads, grades, sales-ready, routed, converted, "
        "revenue, spend, cost per lead and speed-to-lead, from every lead event.",
        version=VERSION,
        lifespan=runtime.lifespan(),
        readiness=runtime.readiness,
        routers=[router],
        max_body_bytes=settings.max_body_bytes,
    )
    bus = messagebus.bus(runtime.uow, config)
    app.state.runtime = runtime
    app.state.bus = bus
    app.state.config = config
    app.state.settings = settings
    install_console(app, runtime, bus, config, settings)
    return app
