"""Nurture's composition root: config, templates, SMTP, scheduler, consumers and routes."""

from __future__ import annotations

from fastapi import FastAPI

from services.nurture import consumers, store
from services.nurture import settings as nurture_settings
from services.nurture.http import router
from services.nurture.mailer import Mailer
from services.nurture.rendering import Templates, Tracking
from services.nurture.scheduler import Scheduler
from shared.app import configure, service_app
from shared.settings import Settings

SERVICE = "nurture"
VERSION = "0.1.0"


def create_app(settings: Settings | None = None) -> FastAPI:
    """The nurture service."""
    runtime, config = configure(SERVICE, settings, nurture_settings.load, store.outbox, store.inbox)
    secret = runtime.settings.secret_key.get_secret_value()
    tracking = Tracking(runtime.settings.public_base_of(SERVICE, config.public_url), secret)
    templates = Templates(config)
    scheduler = Scheduler(
        runtime.uow, config, templates, tracking, Mailer(config.smtp, config.sender)
    )
    consumers.register(runtime, config, scheduler.wake)
    return service_app(
        runtime,
        title="leadflow nurture",
        description="Email sequences that warm cold and warm leads until they are sales-ready: "
        "durable scheduling, tracking, one-click unsubscribe and double opt-in.",
        version=VERSION,
        routers=[router],
        workers={"scheduler": scheduler.run},
        state={
            "config": config,
            "scheduler": scheduler,
            "bus": scheduler.bus,
            "tracking": tracking,
        },
    )
