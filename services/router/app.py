"""The router's composition root: config, runtime, destinations, workers and routes."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI

from services.router import consumers, domain, http_admin, http_webhooks, messagebus, store
from services.router import settings as router_settings
from services.router.delivery import DeliveryWorker
from services.router.destinations import build_destinations, transport
from services.router.http import router
from services.router.sla import SlaWorker
from shared.config import load_config
from shared.http import create_app as create_http_app
from shared.service import ServiceRuntime
from shared.settings import Settings

SERVICE = "router"
VERSION = "0.1.0"

log = logging.getLogger(__name__)


def public_base(settings: Settings, config: router_settings.RoutingConfig) -> str:
    """Where acknowledgement links point: the config, LEADFLOW_PUBLIC_URL, or host:port."""
    base = config.public_url or settings.public_url
    return (base or f"http://{settings.host}:{settings.port_of(SERVICE)}").rstrip("/")


def create_app(settings: Settings | None = None) -> FastAPI:
    """The router service."""
    settings = settings or Settings()
    config = router_settings.load(load_config(settings.config))
    runtime = ServiceRuntime(SERVICE, settings, store.outbox, store.inbox)
    client = transport.client(config.delivery.timeout_seconds)
    destinations = build_destinations(config, client)
    secret = settings.secret_key.get_secret_value()
    base = public_base(settings, config)

    def ack_url(assignment_id: str) -> str:
        token = domain.ack_token(secret, assignment_id)
        return f"{base}/v1/assignments/{assignment_id}/ack?token={token}"

    worker = DeliveryWorker(runtime.uow, config, destinations, ack_url)
    sla = SlaWorker(runtime.uow, config, worker.wake)
    consumers.register(runtime, config, worker.wake)
    runtime.add_worker("delivery", worker.run)
    runtime.add_worker("sla", sla.run)
    if not settings.admin_token.get_secret_value():
        if settings.env == "development":
            log.warning("LEADFLOW_ADMIN_TOKEN is not set: admin endpoints are open (development)")
        else:
            log.warning("LEADFLOW_ADMIN_TOKEN is not set: admin endpoints are refused")

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            async with runtime.lifespan()(app):
                yield
        finally:
            await client.aclose()

    app = create_http_app(
        service=SERVICE,
        title="leadflow router",
        description="Assigns sales-ready leads to reps, delivers them to CRMs, "
        "tracks speed-to-lead and closes the loop.",
        version=VERSION,
        lifespan=lifespan,
        readiness=runtime.readiness,
        routers=[router, http_admin.router, http_webhooks.router],
        max_body_bytes=settings.max_body_bytes,
    )
    app.state.runtime = runtime
    app.state.config = config
    app.state.settings = settings
    app.state.delivery = worker
    app.state.bus = messagebus.bus(runtime.uow, config, wake=worker.wake)
    app.state.sla = sla
    app.state.http_client = client
    return app
