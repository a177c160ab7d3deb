"""Rounds that handle several deliveries at once: each row ends as its own outcome says,
assignments count as delivered only when all their deliveries are, rows of destinations
no longer configured wait untouched. Also routing a lead seen before, and daily loads per
time zone. Real databases; a controlled clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import httpx
import pytest

from services.router import domain, store
from services.router.delivery import DeliveryWorker
from services.router.destinations import build_destinations
from services.router.settings import RoutingConfig
from tests.integration.router.support import file_lines, route, router_uows, scored

T0 = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)


def _config(routed: object, destinations: list[str]) -> RoutingConfig:
    available = {
        "file": {"type": "file", "path": str(routed)},
        "hook": {"type": "webhook", "url": "http://127.0.0.1:9/down"},
        "old": {"type": "webhook", "url": "http://127.0.0.1:9/old"},
    }
    return RoutingConfig.model_validate(
        {
            "reps": {"a": {}},
            "rules": [{"id": "all", "reps": ["a"], "destinations": destinations}],
            "destinations": {name: available[name] for name in destinations},
        }
    )


async def _by_lead(uows, lead_ids):
    async with uows() as uow:
        return {
            lead: {d.destination: d for d in await store.list_deliveries(uow.session, lead_id=lead)}
            for lead in lead_ids
        }


async def _assignment(uows, lead_id):
    async with uows() as uow:
        (row,) = await store.lead_assignments(uow.session, lead_id)
    return row


async def test_one_round_records_each_outcome_and_leaves_unknown_destinations_alone(
    backend, settings_factory, tmp_path
):
    routed = tmp_path / "routed.jsonl"
    leads = [scored() for _ in range(3)]
    solo = scored()
    async with router_uows(settings_factory(backend)) as uows, httpx.AsyncClient() as client:
        for lead in leads:
            await route(uows, _config(routed, ["file", "hook", "old"]), lead, T0)
        await route(uows, _config(routed, ["file"]), solo, T0)
        # "old" is no longer configured: its rows must wait, neither claimed nor changed.
        config = _config(routed, ["file", "hook"])
        worker = DeliveryWorker(
            uows,
            config,
            build_destinations(config, client),
            lambda a: f"http://ack/{a}",
            lambda: T0,
        )
        assert await worker.run_once() == 7
        assert await worker.run_once() == 0  # the hook rows wait for their backoff
        rows = await _by_lead(uows, [lead.lead_id for lead in [*leads, solo]])
        assignments = {
            lead.lead_id: await _assignment(uows, lead.lead_id) for lead in [*leads, solo]
        }
    for lead in leads:
        file, hook, old = (rows[lead.lead_id][n] for n in ("file", "hook", "old"))
        assert (file.status, file.attempts, file.claims) == (store.DELIVERED, 1, 1)
        assert file.delivered_at == T0 and file.claimed_until is None
        assert (hook.status, hook.attempts, hook.claims) == (store.PENDING, 1, 1)
        assert hook.next_attempt_at > T0 and hook.claimed_until is None
        assert "ConnectError" in (hook.last_error or "")
        assert (old.status, old.attempts, old.claims, old.last_error) == (store.PENDING, 0, 0, None)
        assert assignments[lead.lead_id].delivered_at is None  # the hook is still owed
    assert rows[solo.lead_id]["file"].status == store.DELIVERED
    assert assignments[solo.lead_id].delivered_at == T0
    documents = {line["lead_id"]: line for line in file_lines(routed)}
    assert set(documents) == {lead.lead_id for lead in [*leads, solo]}
    for lead in [*leads, solo]:
        document = documents[lead.lead_id]
        assert document["assignment_id"] == assignments[lead.lead_id].assignment_id
        assert document["lead"]["email"] == lead.contact.email
        assert document["lead"]["fields"] == {"company_size": 120}


async def test_a_lead_scored_again_keeps_its_owner_and_its_first_capture_time(
    backend, settings_factory, tmp_path
):
    config = _config(tmp_path / "routed.jsonl", ["file"])
    captured = datetime(2026, 11, 25, 12, 30, tzinfo=timezone(timedelta(hours=2)))
    first = scored(captured_at=captured, fields={"company_size": 5, "trial": True})
    again = scored(lead_id=first.lead_id, company="Difference Engines")
    async with router_uows(settings_factory(backend)) as uows:
        await route(uows, config, first, T0)
        await route(uows, config, again, T0 + timedelta(minutes=1))
        assignment = await _assignment(uows, first.lead_id)
        async with uows() as uow:
            lead = await store.get_lead(uow.session, first.lead_id)
    assert lead is not None and assignment.captured_at == captured
    assert lead.captured_at == captured and lead.contact["company"] == "Difference Engines"
    assert assignment.created_at == T0 and assignment.rep_id == "a"


@pytest.mark.parametrize("hour", [3, 20])
async def test_daily_loads_count_from_each_reps_own_midnight(
    backend, settings_factory, tmp_path, hour
):
    config = RoutingConfig.model_validate(
        {
            "reps": {"utc": {}, "tokyo": {"timezone": "Asia/Tokyo"}, "idle": {}},
            "rules": [{"id": "all", "reps": ["utc"]}],
        }
    )
    now = datetime(2026, 11, 25, hour, 0, tzinfo=UTC)
    made = [now - timedelta(hours=h) for h in (1, 2, 5, 10, 15)]
    async with router_uows(settings_factory(backend)) as uows:
        async with uows() as uow:
            for rep_id in ("utc", "tokyo"):
                for n, created in enumerate(made):
                    await store.insert_assignment(
                        uow.session,
                        assignment_id=f"{rep_id}-{n}",
                        lead_id=f"lead-{rep_id}-{n}",
                        rep_id=rep_id,
                        rule_id="all",
                        status="reassigned" if n == 0 else "open",
                        reason={},
                        captured_at=created,
                        created_at=created,
                    )
            await uow.commit()
        starts = {rep_id: domain.day_start(rep, now) for rep_id, rep in config.reps.items()}
        async with uows() as uow:
            loads = await store.loads_since(uow.session, starts)
    expected = {
        rep_id: sum(1 for n, c in enumerate(made) if n != 0 and c >= starts[rep_id])
        for rep_id in ("utc", "tokyo")
    }
    assert loads == {**expected, "idle": 0}
    assert loads["utc"] != loads["tokyo"]


async def test_a_restarted_worker_sends_what_a_killed_process_had_claimed(
    backend, settings_factory, tmp_path
):
    routed = tmp_path / "routed.jsonl"
    lead = scored()
    config = _config(routed, ["file"])
    async with router_uows(settings_factory(backend)) as uows, httpx.AsyncClient() as client:
        await route(uows, config, lead, T0)
        # A process claims the delivery for a long lease, then dies before sending it.
        async with uows() as uow:
            claimed = await store.claim_due(
                uow.session, uow.dialect, T0, lambda _: T0 + timedelta(minutes=5), 10
            )
            await uow.commit()
        assert len(claimed) == 1

        def restarted() -> DeliveryWorker:
            return DeliveryWorker(
                uows,
                config,
                build_destinations(config, client),
                lambda a: f"http://ack/{a}",
                lambda: T0 + timedelta(seconds=5),
            )

        sent = await restarted().run_once()
        (row,) = (await _by_lead(uows, [lead.lead_id]))[lead.lead_id].values()
    if backend == "sqlite":
        # One process owns the database: the claim was the dead one's, and goes now.
        assert sent == 1 and row.status == store.DELIVERED and row.claims == 2
        assert [line["lead_id"] for line in file_lines(routed)] == [lead.lead_id]
    else:
        # Another replica may be sending it: its lease is honoured.
        assert sent == 0 and row.status == store.PENDING and row.claimed_until is not None
