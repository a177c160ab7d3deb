"""Helpers for the router's integration tests: config files, scored leads on the broker."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from aiokafka import AIOKafkaProducer

from services.router import store
from shared.db.engine import Database
from shared.db.uow import UnitOfWork
from shared.events import Contact, LeadScored, encode, new_event
from shared.events.contracts import Event

ADMIN_TOKEN = "test-admin-token"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def write_config(directory: Path, routing: dict[str, Any]) -> Path:
    """A config file with only a `routing` section."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"leadflow-{uuid.uuid4().hex[:6]}.yaml"
    path.write_text(yaml.safe_dump({"routing": routing}, sort_keys=False))
    return path


def scored(
    *,
    lead_id: str | None = None,
    email: str | None = None,
    sales_ready: bool = True,
    became_sales_ready: bool | None = None,
    is_test: bool = False,
    disqualified: bool = False,
    country: str = "GB",
    channel: str = "google_ads",
    fields: dict[str, Any] | None = None,
    captured_at: datetime | None = None,
    company: str = "Analytical Engines",
) -> LeadScored:
    """A lead.scored event for a (by default) hot, sales-ready lead."""
    lead_id = lead_id or str(uuid.uuid4())
    now = datetime.now(UTC)
    return LeadScored(
        lead_id=lead_id,
        score=80,
        fit=40,
        engagement=40,
        grade="hot" if sales_ready else "cold",
        sales_ready=sales_ready,
        became_sales_ready=sales_ready if became_sales_ready is None else became_sales_ready,
        disqualified=disqualified,
        model_version="test",
        cause_event_id=str(uuid.uuid4()),
        cause_type="leadflow.lead.captured.v1",
        channel=channel,
        form_id="demo-request",
        form_type="demo_request",
        contact=Contact(
            email=email or f"lead-{lead_id[:8]}@example.com",
            first_name="Ada",
            last_name="Lovelace",
            company=company,
            job_title="Director of Engineering",
            country=country,
        ),
        fields=fields or {"company_size": 120},
        is_test=is_test,
        captured_at=captured_at or now,
        scored_at=now,
    )


async def publish(bootstrap: str, events: list[Event]) -> None:
    """Publish events as CloudEvents, as scoring and capture would."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for data in events:
            key, value, headers = encode(new_event(data, "leadflow/test"))
            await producer.send_and_wait(data.TOPIC, value=value, key=key, headers=headers)
    finally:
        await producer.stop()


def file_lines(path: Path) -> list[dict[str, Any]]:
    import json

    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line]


async def settled(router: Any) -> None:
    """Wait until the router's consumers have joined their group.

    Stopping a service while its consumer is still joining waits for the join to
    time out; tests that stop a router right after starting it wait for this first.
    """
    from tests.conftest import eventually

    await eventually(
        lambda: all(c.running for c in router.runtime.consumers) and router.runtime.consumers,
        timeout=15,
    )


@contextlib.asynccontextmanager
async def router_uows(settings: Any) -> AsyncIterator[Callable[[], UnitOfWork]]:
    """Units of work on a migrated router database, without starting the service."""
    from tests.conftest import migrate_service

    await migrate_service(settings, "router")
    db = Database(
        settings.database_url_for("router"), service="router", schema=settings.schema_for("router")
    )
    try:
        yield lambda: UnitOfWork(db, store.outbox, store.inbox, "leadflow/router")
    finally:
        await db.dispose()


def consumer_of(runtime: Any, settings: Any, uows: Callable[[], UnitOfWork]) -> Any:
    """The router's consumer as `leadflow serve` builds it from what `runtime` registered."""
    from shared.kafka.consumer import EventConsumer

    (spec,) = runtime._consumer_specs
    return EventConsumer(
        service="router",
        group_id=settings.group_id("router"),
        uow_factory=uows,
        settings=settings,
        **spec,
    )


async def route(
    uow_factory: Callable[[], UnitOfWork], config: Any, event: LeadScored, now: datetime
) -> None:
    """Run the lead.scored handler at `now` and commit, as the consumer would."""
    from services.router.handlers import handle_lead_scored

    async with uow_factory() as uow:
        await handle_lead_scored(
            new_event(event, "leadflow/test"),
            uow,
            config=config,
            wake=lambda: None,
            clock=lambda: now,
        )
        await uow.commit()
