"""Decay sweeps and replays on SQLite and PostgreSQL, with an injected clock."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

from services.scoring import messagebus, store
from services.scoring.commands import ReplayNextPage
from services.scoring.decay import DecayWorker
from services.scoring.domain import DECAY_CAUSE, REPLAY_CAUSE
from services.scoring.handlers import handle_replay_page
from services.scoring.model import RuleModel
from services.scoring.views import explain
from tests.conftest import eventually
from tests.integration.scoring.support import (
    consumer,
    record,
    scored_in_outbox,
    scoring_uows,
    table,
)
from tests.unit.scoring.support import T0, captured, engaged, example_config, example_model

MODEL = example_model()


async def test_decay_lowers_a_stale_lead_and_the_sweep_publishes_only_changes(
    backend, settings_factory
):
    settings = settings_factory(backend)
    stale = captured(country="BR", fields={})  # fit 20 + demo 30 + 5 clicks 25 = 75: hot
    fresh = captured(company="Analytical Engines")  # 80, touched again later
    cold = captured(form_type="newsletter", form_id="newsletter", email="x@gmail.com")
    now = {"t": T0}
    async with scoring_uows(settings) as uows:
        worker = consumer(settings, uows, MODEL, lambda: now["t"])
        events = [stale, fresh, cold, *[engaged(stale.lead_id, "click")] * 5]
        await worker.process([record(e, i) for i, e in enumerate(events)])
        (row,) = await table(uows, store.lead_scores, lead_id=stale.lead_id)
        due = row.regrade_due_at
        assert due is not None and row.grade == "hot"
        before = len(await scored_in_outbox(uows))

        sweep = DecayWorker(
            messagebus.bus(uows, MODEL), interval_seconds=60, batch_size=2, clock=lambda: now["t"]
        )
        now["t"] = due - timedelta(minutes=5)
        assert await sweep.sweep() == 0
        now["t"] = due + timedelta(minutes=1)
        await worker.process([record(engaged(fresh.lead_id, "reply"), 20)])
        assert await sweep.sweep() == 1
        assert await sweep.sweep() == 0
        scored = (await scored_in_outbox(uows))[before:]
        explained = await explain(uows, stale.lead_id, now["t"], 10, model=MODEL)

    decayed = [e for e in scored if e.cause_type == DECAY_CAUSE]
    assert [(e.lead_id, e.previous_grade, e.grade) for e in decayed] == [
        (stale.lead_id, "hot", "warm")
    ]
    assert not decayed[0].sales_ready and not decayed[0].became_sales_ready
    assert decayed[0].score < 70 and decayed[0].fit == 20
    assert decayed[0].cause_event_id.startswith("decay-")
    assert explained is not None and explained.last.grade == "warm"
    assert [h.cause_type for h in explained.history] == [
        "leadflow.lead.captured.v1",
        *["leadflow.lead.engaged.v1"] * 5,
        DECAY_CAUSE,
    ]


async def test_replay_after_a_threshold_change_regrades_exactly_the_affected_leads(
    backend, settings_factory
):
    settings = settings_factory(backend)
    config = example_config()
    strict = RuleModel(
        config.model_copy(update={"grades": config.grades.model_copy(update={"hot": 80})})
    )
    hot_75 = [captured() for _ in range(3)]  # 75: hot, warm under the new model
    hot_80 = [captured(company="Analytical Engines") for _ in range(2)]  # hot either way
    cold = [captured(form_type="download", form_id="guide-download", email="a@gmail.com")]
    erased = captured()
    async with scoring_uows(settings) as uows:
        worker = consumer(settings, uows, MODEL, lambda: T0)
        events = [*hot_75, *hot_80, *cold, erased]
        await worker.process([record(e, i) for i, e in enumerate(events)])
        from shared.events import LeadErased

        await worker.process([record(LeadErased(lead_id=erased.lead_id, erased_at=T0), 50)])
        before = len(await scored_in_outbox(uows))
        run_id = f"replay-{uuid.uuid4()}"

        async def replay(model: RuleModel, *, dry_run: bool = False) -> tuple[int, int, int]:
            after, totals = "", [0, 0, 0]
            while True:
                async with uows() as uow:
                    page = await handle_replay_page(
                        ReplayNextPage(
                            after=after, limit=2, now=T0, run_id=run_id, dry_run=dry_run
                        ),
                        uow,
                        model=model,
                    )
                    await uow.commit()
                if not page.lead_ids:
                    return totals[0], totals[1], totals[2]
                after = page.lead_ids[-1]
                totals[0] += page.rescored
                totals[1] += page.regraded
                totals[2] += page.newly_sales_ready

        assert await replay(strict, dry_run=True) == (6, 3, 0)
        assert len(await scored_in_outbox(uows)) == before
        assert await replay(strict) == (6, 3, 0)
        regraded = (await scored_in_outbox(uows))[before:]
        assert await replay(strict) == (6, 0, 0)  # nothing more changes
        assert await replay(MODEL) == (6, 3, 0)  # and back
        states = {r.lead_id: r for r in await table(uows, store.lead_scores)}
        history = await table(uows, store.score_changes, lead_id=hot_75[0].lead_id)

    assert sorted(e.lead_id for e in regraded) == sorted(x.lead_id for x in hot_75)
    assert all(
        (e.previous_grade, e.grade, e.sales_ready, e.became_sales_ready)
        == ("hot", "warm", True, False)
        for e in regraded
    )
    assert all(e.cause_type == REPLAY_CAUSE and e.model_version == strict.version for e in regraded)
    assert all(states[x.lead_id].model_version == MODEL.version for x in hot_75 + hot_80)
    assert states[erased.lead_id].model_version == MODEL.version  # erased: left alone
    assert [h.grade for h in history] == ["hot", "warm", "hot"]


async def test_the_sweep_runs_periodically_until_the_service_stops(backend, settings_factory):
    settings = settings_factory(backend)
    lead = captured()
    async with scoring_uows(settings) as uows:
        await consumer(settings, uows, MODEL, lambda: T0).process([record(lead, 0)])
        sweep = DecayWorker(
            messagebus.bus(uows, MODEL),
            interval_seconds=0.05,
            batch_size=10,
            clock=lambda: T0 + timedelta(days=400),
        )
        stop = asyncio.Event()
        task = asyncio.create_task(sweep.run(stop))

        async def decayed():
            return [e for e in await scored_in_outbox(uows) if e.cause_type == DECAY_CAUSE]

        found = await eventually(decayed, timeout=5)
        stop.set()
        await asyncio.wait_for(task, 5)
        assert len(await decayed()) == 1  # later rounds find nothing more to change

    assert (found[0].previous_grade, found[0].grade, found[0].sales_ready) == ("hot", "warm", False)
