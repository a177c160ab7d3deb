"""The delivery queue under failure: a CRM down for a minute, a crash between a write and
its mark, an erasure while deliveries wait. Real databases and HTTP; a controlled clock."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import httpx

from services.router import store
from services.router.delivery import DeliveryWorker
from services.router.destinations import build_destinations
from services.router.handlers import handle_lead_erased
from services.router.settings import RoutingConfig
from shared.events import LeadErased, new_event
from tests.integration.router.crm_standins import HubSpotStandIn, WebhookReceiver, wait_started
from tests.integration.router.support import file_lines, route, router_uows, scored

T0 = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def worker_for(uows, config: RoutingConfig, client: httpx.AsyncClient, clock: Clock):
    return DeliveryWorker(
        uows, config, build_destinations(config, client), lambda a: f"http://ack/{a}", clock
    )


async def _statuses(uows, lead_ids):
    async with uows() as uow:
        rows = [
            d for lead in lead_ids for d in await store.list_deliveries(uow.session, lead_id=lead)
        ]
    return rows


async def test_crm_down_for_a_minute_loses_nothing_and_duplicates_nothing(
    backend, settings_factory, tmp_path
):
    hubspot, hook = HubSpotStandIn(), WebhookReceiver(secret="k")
    await wait_started(hubspot, hook)
    config = RoutingConfig.model_validate(
        {
            "reps": {"a": {}, "b": {}},
            "rules": [{"id": "all", "reps": ["a", "b"], "destinations": ["hubspot", "hook"]}],
            "destinations": {
                "hubspot": {"type": "hubspot", "base_url": hubspot.url, "token": "hs-token"},
                "hook": {"type": "webhook", "url": hook.hook_url, "secret": "k"},
            },
            "delivery": {"timeout_seconds": 2},
        }
    )
    leads = [scored() for _ in range(3)]
    clock = Clock(T0)
    hubspot.stop()
    hook.stop()  # both down: connections are refused
    async with router_uows(settings_factory(backend)) as uows, httpx.AsyncClient() as client:
        worker = worker_for(uows, config, client, clock)
        for lead in leads:
            await route(uows, config, lead, T0)
        while clock.now < T0 + timedelta(seconds=60):
            await worker.run_once()
            clock.now += timedelta(seconds=2)
        during = await _statuses(uows, [lead.lead_id for lead in leads])
        await wait_started(hubspot, hook)  # back on the same ports
        for _ in range(40):
            clock.now += timedelta(seconds=5)
            await worker.run_once()
        after = await _statuses(uows, [lead.lead_id for lead in leads])
    hubspot.stop()
    hook.stop()
    assert {d.status for d in during} == {store.PENDING}
    assert all(d.attempts >= 4 for d in during)
    assert all("ConnectError" in (d.last_error or "") for d in during)
    assert {d.status for d in after} == {store.DELIVERED}
    assert sorted(hubspot.contacts) == sorted(lead.contact.email for lead in leads)
    emails = Counter(i["id"] for r in hubspot.upsert_requests() for i in r.json()["inputs"])
    assert set(emails.values()) == {1}
    assert hook.lead_counts() == {lead.lead_id: 1 for lead in leads}


async def test_a_crash_between_write_and_mark_writes_nothing_twice(
    backend, settings_factory, tmp_path
):
    hook = WebhookReceiver(secret="k")
    await wait_started(hook)
    routed = tmp_path / "routed.jsonl"
    config = RoutingConfig.model_validate(
        {
            "reps": {"a": {}},
            "rules": [{"id": "all", "reps": ["a"], "destinations": ["file", "hook"]}],
            "destinations": {
                "file": {"type": "file", "path": str(routed)},
                "hook": {"type": "webhook", "url": hook.hook_url, "secret": "k"},
            },
        }
    )
    lead = scored()
    clock = Clock(T0)
    async with router_uows(settings_factory(backend)) as uows, httpx.AsyncClient() as client:
        worker = worker_for(uows, config, client, clock)
        await route(uows, config, lead, T0)
        # The process writes and sends, then dies before marking the rows delivered.
        claimed = await worker._claim(T0)
        await worker._deliver(claimed)
        assert len(file_lines(routed)) == 1
        clock.now = T0 + timedelta(seconds=5)
        assert await worker.run_once() == 0  # still leased to the dead process
        clock.now = T0 + timedelta(minutes=5)  # the lease ran out
        assert await worker.run_once() == 2
        rows = await _statuses(uows, [lead.lead_id])
    hook.stop()
    assert [line["lead_id"] for line in file_lines(routed)] == [lead.lead_id]
    assert {d.status for d in rows} == {store.DELIVERED}
    keys = {r.headers["idempotency-key"] for r in hook.calls("POST")}
    assert len(hook.calls("POST")) == 2 and len(keys) == 1  # the receiver can drop the copy


async def test_erasure_scrubs_the_lead_and_cancels_waiting_deliveries(
    backend, settings_factory, tmp_path
):
    config = RoutingConfig.model_validate(
        {
            "reps": {"a": {}},
            "rules": [{"id": "all", "reps": ["a"], "destinations": ["hook"]}],
            "destinations": {"hook": {"type": "webhook", "url": "http://127.0.0.1:9/down"}},
        }
    )
    lead = scored()
    clock = Clock(T0)
    async with router_uows(settings_factory(backend)) as uows, httpx.AsyncClient() as client:
        worker = worker_for(uows, config, client, clock)
        await route(uows, config, lead, T0)
        await worker.run_once()  # connection refused: waits for a retry
        async with uows() as uow:
            await handle_lead_erased(
                new_event(LeadErased(lead_id=lead.lead_id, erased_at=T0), "leadflow/test"), uow
            )
            await uow.commit()
        clock.now = T0 + timedelta(hours=1)
        handled = await worker.run_once()
        async with uows() as uow:
            row = await store.get_lead(uow.session, lead.lead_id)
            (delivery,) = await store.list_deliveries(uow.session, lead_id=lead.lead_id)
            assignment = await store.active_assignment(uow.session, lead.lead_id)
    assert handled == 0
    assert row.email is None and row.contact == {} and row.erased_at is not None
    assert delivery.status == store.CANCELLED
    assert assignment.rep_id == "a"  # the anonymous routing fact stays


async def test_rate_limits_are_shared_and_hubspot_quota_headers_pause_the_destination(
    settings_factory, tmp_path
):
    hook, hubspot = WebhookReceiver(secret="k"), HubSpotStandIn()
    await wait_started(hook, hubspot)
    hubspot.remaining_header = 0  # every answer says: no requests left in this 10 s window
    config = RoutingConfig.model_validate(
        {
            "reps": {"a": {}},
            "rules": [{"id": "all", "reps": ["a"], "destinations": ["hook", "hubspot"]}],
            "destinations": {
                "hook": {
                    "type": "webhook",
                    "url": hook.hook_url,
                    "secret": "k",
                    "rate_limit": {"requests": 2, "per_seconds": 10},
                },
                "hubspot": {
                    "type": "hubspot",
                    "base_url": hubspot.url,
                    "token": "hs-token",
                    "batch_size": 1,
                },
            },
        }
    )
    leads = [scored() for _ in range(5)]
    clock = Clock(T0)
    async with router_uows(settings_factory()) as uows, httpx.AsyncClient() as client:
        # Two replicas: separate workers, one database, one shared window.
        replicas = [worker_for(uows, config, client, clock) for _ in range(2)]
        for lead in leads:
            await route(uows, config, lead, T0)
        for worker in replicas:
            await worker.run_once()
        first_window = (len(hook.accepted()), len(hubspot.upsert_requests()))
        clock.now = T0 + timedelta(seconds=5)
        for worker in replicas:
            await worker.run_once()
        still_first = (len(hook.accepted()), len(hubspot.upsert_requests()))
        clock.now = T0 + timedelta(seconds=11)
        for worker in replicas:
            await worker.run_once()
        second_window = (len(hook.accepted()), len(hubspot.upsert_requests()))
    hook.stop()
    hubspot.stop()
    assert first_window == (2, 1)
    assert still_first == (2, 1)
    assert second_window == (4, 2)
