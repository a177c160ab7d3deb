"""The router's composition root: config, runtime, destinations, workers and routes."""

from __future__ import annotations

from fastapi import FastAPI

from services.router import consumers, domain, http_admin, http_webhooks, messagebus, store
from services.router import settings as router_settings
from services.router.delivery import DeliveryWorker
from services.router.destinations import build_destinations, transport
from services.router.http import router
from services.router.sla import SlaWorker
from shared.app import configure, service_app
from shared.settings import Settings

SERVICE = "router"
VERSION = "0.1.0"


def create_app(settings: Settings | None = None) -> FastAPI:
    """The router service."""
    runtime, config = configure(SERVICE, settings, router_settings.load, store.outbox, store.inbox)
    client = transport.client(config.delivery.timeout_seconds)
    destinations = build_destinations(config, client)
    secret = runtime.settings.secret_key.get_secret_value()
    # Where acknowledgement links point.
    base = runtime.settings.public_base_of(SERVICE, config.public_url)

    def ack_url(assignment_id: str) -> str:
        token = domain.ack_token(secret, assignment_id)
        return f"{base}/v1/assignments/{assignment_id}/ack?token={token}"

    worker = DeliveryWorker(runtime.uow, config, destinations, ack_url)
    sla = SlaWorker(runtime.uow, config, worker.wake)
    consumers.register(runtime, config, worker.wake)
    return service_app(
        runtime,
        title="leadflow router",
        description="Assigns sales-ready leads to reps, delivers them to CRMs, "
        "tracks speed-to-lead and closes the loop.",
        version=VERSION,
        routers=[router, http_admin.router, http_webhooks.router],
        workers={"delivery": worker.run, "sla": sla.run},
        state={
            "config": config,
            "delivery": worker,
            "bus": messagebus.bus(runtime.uow, config, wake=worker.wake),
            "sla": sla,
            "http_client": client,
        },
        close=[client.aclose],
        admin="admin endpoints are",
    )
