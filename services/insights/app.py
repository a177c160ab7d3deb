"""Insights' composition root: config, runtime, consumers and routes wired once."""

from __future__ import annotations

from fastapi import FastAPI

from services.insights import consumers, messagebus, store
from services.insights import settings as insights_settings
from services.insights.console.app import install as install_console
from services.insights.http import router
from shared.app import configure, service_app
from shared.settings import Settings

SERVICE = "insights"
VERSION = "0.1.0"


def create_app(settings: Settings | None = None) -> FastAPI:
    """The insights service."""
    runtime, config = configure(
        SERVICE, settings, insights_settings.load, store.outbox, store.inbox
    )
    consumers.register(runtime)
    bus = messagebus.bus(runtime.uow)
    app = service_app(
        runtime,
        title="leadflow insights",
        description="The per-channel funnel: leads, grades, sales-ready, routed, converted, "
        "revenue, spend, cost per lead and speed-to-lead, from every lead event.",
        version=VERSION,
        routers=[router],
        state={"bus": bus, "config": config},
        admin="posting spend is",
    )
    install_console(app, runtime, bus, config, runtime.settings)
    return app
