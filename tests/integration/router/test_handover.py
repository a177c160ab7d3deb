"""Deliveries a consumer batch hands straight to the delivery worker: leased in the routing
transaction, sent without a claim, each exactly the document a claim would have built;
erased leads, paused and rate-limited destinations left to the claim; a handed delivery
the worker never sent is claimed again once its lease runs out. Both databases."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

from services.router import consumers, handover, store
from services.router.delivery import DeliveryWorker
from services.router.delivery_claims import lease_seconds
from services.router.destinations import build_destinations
from services.router.documents import build_document
from services.router.settings import RoutingConfig
from shared.clock import FixedClock
from shared.db.uow import UnitOfWork
from shared.events import LeadErased
from shared.kafka.consumer import EventConsumer
from shared.service import ServiceRuntime
from tests.integration.router.support import consumer_of, file_lines, router_uows, scored
from tests.records import record_of


def _ack(assignment_id: str) -> str:
    return f"http://ack/{assignment_id}"


def _config(routed: Path) -> RoutingConfig:
    return RoutingConfig.model_validate(
        {
            "reps": {"a": {}, "b": {}},
            "rules": [{"id": "all", "reps": ["a", "b"], "destinations": ["file", "limited"]}],
            "destinations": {
                "file": {"type": "file", "path": str(routed)},
                # A rate limit is counted by the claim: never handed over.
                "limited": {
                    "type": "webhook",
                    "url": "http://127.0.0.1:9/down",
                    "rate_limit": {"requests": 100, "per_seconds": 10},
                },
            },
        }
    )


def _parts(
    settings: Any,
    config: RoutingConfig,
    uows: Callable[[], UnitOfWork],
    client: httpx.AsyncClient,
    clock: FixedClock,
) -> tuple[EventConsumer, DeliveryWorker, list[int]]:
    worker = DeliveryWorker(uows, config, build_destinations(config, client), _ack, clock)
    wakes: list[int] = []

    def wake() -> None:
        wakes.append(1)
        worker.wake()

    runtime = ServiceRuntime("router", settings, store.outbox, store.inbox)
    consumers.register(runtime, config, wake, worker.handover)
    return consumer_of(runtime, settings, uows), worker, wakes


@dataclass
class _Router:
    routed: Path
    config: RoutingConfig
    clock: FixedClock
    uows: Callable[[], UnitOfWork]
    consumer: EventConsumer
    worker: DeliveryWorker
    wakes: list[int]


@asynccontextmanager
async def _router(backend: str, settings_factory: Any, tmp_path: Path) -> AsyncIterator[_Router]:
    """A migrated router database, its consumer and its delivery worker (clock: now)."""
    routed = tmp_path / "routed.jsonl"
    config = _config(routed)
    clock = FixedClock(datetime.now(UTC))
    settings = settings_factory(backend)
    async with router_uows(settings) as uows, httpx.AsyncClient() as client:
        consumer, worker, wakes = _parts(settings, config, uows, client, clock)
        yield _Router(routed, config, clock, uows, consumer, worker, wakes)


async def _deliveries(uows: Callable[[], UnitOfWork]) -> dict[tuple[str, str], Any]:
    async with uows() as uow:
        rows = (await uow.session.execute(sa.select(store.deliveries))).all()
    return {(row.lead_id, row.destination): row for row in rows}


async def test_a_batch_hands_its_deliveries_over_leased(backend, settings_factory, tmp_path):
    kept, erased = scored(), scored()
    async with _router(backend, settings_factory, tmp_path) as router:
        routed, config, clock, uows = router.routed, router.config, router.clock, router.uows
        consumer, worker, wakes = router.consumer, router.worker, router.wakes
        records = [
            record_of(kept, 0),
            record_of(erased, 1),
            record_of(LeadErased(lead_id=erased.lead_id, erased_at=clock.now), 2),
        ]
        await consumer._process_batch(records)
        rows = await _deliveries(uows)
        until = clock.now + timedelta(seconds=lease_seconds(config, config.delivery.batch_size))
        file, limited = rows[kept.lead_id, "file"], rows[kept.lead_id, "limited"]
        assert (file.status, file.claims, file.claimed_until) == (store.PENDING, 1, until)
        assert (limited.status, limited.claims, limited.claimed_until) == (store.PENDING, 0, None)
        assert rows[erased.lead_id, "file"].status == store.CANCELLED
        # Only the kept lead's file delivery is handed over; the limited ones need a claim.
        assert len(worker.handover) == 1 and wakes == [1] and worker.claim_due()

        # The handed delivery goes without a claim: the limited rows stay untouched.
        assert await worker.run_once(claim=False) == 1
        rows = await _deliveries(uows)
        file = rows[kept.lead_id, "file"]
        assert (file.status, file.attempts, file.claims) == (store.DELIVERED, 1, 1)
        assert file.claimed_until is None
        assert rows[kept.lead_id, "limited"].claims == 0
        (line,) = file_lines(routed)
        async with uows() as uow:
            assignment = await store.get_assignment(uow.session, file.assignment_id)
            lead = await store.get_lead(uow.session, kept.lead_id)
        # What a claim would have sent: the document built from the stored rows.
        assert line == build_document(file, assignment, lead, config, _ack(file.assignment_id))

        # Asked to claim (the limited rows), the next round does.
        clock.advance(1)
        assert await worker.run_once(claim=worker.claim_due()) == 1
        assert (await _deliveries(uows))[kept.lead_id, "limited"].claims == 1
        # Nothing waits now but the limited row's retry: no claim until it is due.
        assert not worker.claim_due()


async def test_paused_destinations_are_left_to_the_claim(backend, settings_factory, tmp_path):
    lead = scored()
    async with _router(backend, settings_factory, tmp_path) as router:
        now = router.clock.now
        async with router.uows() as uow:
            await store.destination_row(uow.session, uow.dialect, "file", now)
            await store.save_destination_state(
                uow.session, "file", paused_until=now + timedelta(minutes=1)
            )
            await uow.commit()
        await router.consumer._process_batch([record_of(lead, 0)])
        rows = await _deliveries(router.uows)
    assert rows[lead.lead_id, "file"].claims == 0
    assert rows[lead.lead_id, "file"].claimed_until is None
    assert len(router.worker.handover) == 0 and router.wakes == [1]


async def test_a_handed_delivery_never_sent_is_claimed_after_its_lease(
    backend, settings_factory, tmp_path, monkeypatch
):
    lead = scored()
    async with _router(backend, settings_factory, tmp_path) as router:
        worker, config = router.worker, router.config
        await router.consumer._process_batch([record_of(lead, 0)])
        # The worker picks it up too late: it is left to a claim, not sent.
        monkeypatch.setattr(handover, "FRESH_SECONDS", -1.0)
        assert await worker.run_once(claim=False) == 0
        router.clock.advance(1)
        assert await worker.run_once() == 1  # the limited row only: the file row is leased
        assert file_lines(router.routed) == []
        router.clock.advance(lease_seconds(config, config.delivery.batch_size) + 1)
        assert await worker.run_once() == 2  # the file row again, and the limited one's retry
        file = (await _deliveries(router.uows))[lead.lead_id, "file"]
    assert (file.status, file.claims) == (store.DELIVERED, 2)
    assert [line["lead_id"] for line in file_lines(router.routed)] == [lead.lead_id]


async def test_a_stopping_worker_gives_back_what_it_was_handed(backend, settings_factory, tmp_path):
    """Handed deliveries no round took are released at stop: a restart sends them at once."""
    lead = scored()
    async with _router(backend, settings_factory, tmp_path) as router:
        await router.consumer._process_batch([record_of(lead, 0)])
        assert len(router.worker.handover) == 1
        stop = asyncio.Event()
        stop.set()
        await router.worker.run(stop)
        file = (await _deliveries(router.uows))[lead.lead_id, "file"]
        assert router.worker.handover.destinations() == frozenset()
    assert (file.status, file.claims, file.claimed_until) == (store.PENDING, 0, None)
