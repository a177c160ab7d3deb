"""Capture's composition root: config, runtime, workers and routes wired once."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

import httpx
from fastapi import FastAPI

from services.capture import admin, lead_api, messagebus, store, webhooks
from services.capture import settings as capture_settings
from services.capture.http import router
from services.capture.retrieval import RetrievalWorker
from services.capture.spam import RateLimiter
from shared.config import load_config
from shared.http import create_app as create_http_app
from shared.service import ServiceRuntime
from shared.settings import Settings

SERVICE = "capture"
VERSION = "0.2.0"

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None) -> FastAPI:
    """The capture service."""
    settings = settings or Settings()
    config = capture_settings.load(load_config(settings.config))
    runtime = ServiceRuntime(SERVICE, settings, store.outbox, store.inbox)
    bus = messagebus.bus(
        runtime.db,
        config,
        source=f"leadflow/{SERVICE}",
        wake_retrieval=lambda: retrieval.wake(),
    )
    retrieval = RetrievalWorker(bus, config)
    runtime.add_worker("retrieval", retrieval.run)
    intake = messagebus.intake(bus)
    # Captcha verification reuses one connection pool for the process's lifetime.
    http_client = httpx.AsyncClient(headers={"User-Agent": f"leadflow-capture/{VERSION}"})
    runtime_lifespan = runtime.lifespan()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            async with runtime_lifespan(app):
                try:
                    yield
                finally:
                    await intake.stop()
        finally:
            await http_client.aclose()

    app = create_http_app(
        service=SERVICE,
        title="leadflow capture",
        description=(
            "Intake for landing-page forms, ad-platform webhooks (Meta, Google, LinkedIn, "
            "TikTok), signed vendor webhooks and the lead API. Every accepted submission "
            "is committed with its lead.captured event before the answer; suspected spam "
            "is held in quarantine."
        ),
        version=VERSION,
        lifespan=lifespan,
        readiness=runtime.readiness,
        routers=[router, lead_api.router, webhooks.router, admin.router],
        max_body_bytes=settings.max_body_bytes,
        max_in_flight=settings.max_in_flight,
        shed_delay=settings.shed_delay_seconds,
    )
    app.state.runtime = runtime
    app.state.config = config
    app.state.limiter = RateLimiter()
    app.state.http_client = http_client
    app.state.retrieval = retrieval
    app.state.intake = intake
    app.state.bus = bus
    if not settings.admin_token.get_secret_value() and settings.env != "development":
        log.warning("LEADFLOW_ADMIN_TOKEN is not set: quarantine and consent routes are refused")
    return app
