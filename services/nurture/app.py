"""Nurture's composition root: config, templates, SMTP, scheduler, consumers and routes."""

from __future__ import annotations

from fastapi import FastAPI

from services.nurture import consumers, messagebus, store
from services.nurture import settings as nurture_settings
from services.nurture.http import router
from services.nurture.mailer import Mailer
from services.nurture.rendering import Templates, Tracking
from services.nurture.scheduler import Scheduler
from shared.config import load_config
from shared.http import create_app as create_http_app
from shared.service import ServiceRuntime
from shared.settings import Settings

SERVICE = "nurture"
VERSION = "0.1.0"


def public_base(settings: Settings, config: nurture_settings.NurtureConfig) -> str:
    """Where links in emails point: the config, LEADFLOW_PUBLIC_URL, or host:port."""
    base = config.public_url or settings.public_url
    return (base or f"http://{settings.host}:{settings.port_of(SERVICE)}").rstrip("/")


def create_app(settings: Settings | None = None) -> FastAPI:
    """The nurture service."""
    settings = settings or Settings()
    config = nurture_settings.load(load_config(settings.config))
    runtime = ServiceRuntime(SERVICE, settings, store.outbox, store.inbox)
    tracking = Tracking(public_base(settings, config), settings.secret_key.get_secret_value())
    templates = Templates(config)
    scheduler = Scheduler(
        runtime.uow, config, templates, tracking, Mailer(config.smtp, config.sender)
    )
    bus = messagebus.bus(runtime.uow, config, templates, tracking, wake=scheduler.wake)
    consumers.register(runtime, config, scheduler.wake)
    runtime.add_worker("scheduler", scheduler.run)
    app = create_http_app(
        service=SERVICE,
        title="leadflow nurture",
        description="Email sequences that warm cold and warm leads until they are sales-ready: "
        "durable scheduling, tracking, one-click unsubscribe and double opt-in.",
        version=VERSION,
        lifespan=runtime.lifespan(),
        readiness=runtime.readiness,
        routers=[router],
        max_body_bytes=settings.max_body_bytes,
    )
    app.state.runtime = runtime
    app.state.config = config
    app.state.settings = settings
    app.state.scheduler = scheduler
    app.state.bus = bus
    app.state.tracking = tracking
    return app
