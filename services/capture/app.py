"""Capture's composition root: config, runtime and routes wired once."""

from __future__ import annotations

from fastapi import FastAPI

from services.capture import settings as capture_settings
from services.capture import store
from services.capture.http import router
from shared.config import load_config
from shared.http import create_app as create_http_app
from shared.service import ServiceRuntime
from shared.settings import Settings

SERVICE = "capture"
VERSION = "0.1.0"


def create_app(settings: Settings | None = None) -> FastAPI:
    """The capture service."""
    settings = settings or Settings()
    config = capture_settings.load(load_config(settings.config))
    runtime = ServiceRuntime(SERVICE, settings, store.outbox, store.inbox)
    app = create_http_app(
        service=SERVICE,
        title="leadflow capture",
        description="Intake for landing-page forms, ad-platform webhooks and lead vendors.",
        version=VERSION,
        lifespan=runtime.lifespan(),
        readiness=runtime.readiness,
        routers=[router],
        max_body_bytes=settings.max_body_bytes,
    )
    app.state.runtime = runtime
    app.state.config = config
    return app
