"""Scoring's batch consumer on SQLite and PostgreSQL: writes, redelivery, poison, erasure,
a model change."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from services.scoring import store
from services.scoring.model import RuleModel
from shared.events import LeadErased, LeadScored
from tests.integration.scoring.support import (
    consumer,
    outbox,
    record,
    scored_in_outbox,
    scoring_uows,
    table,
)
from tests.unit.scoring.support import (
    T0,
    captured,
    engaged,
    example_config,
    example_model,
    unsubscribed,
)

MODEL = example_model()


def warm_lead(**overrides):
    values = {
        "form_id": "guide-download",
        "form_type": "download",
        "email": "kim@acme.io",
        "job_title": "Head of Marketing",
        "country": "DE",
        "fields": {"company_size": "300"},
        "channel": "direct",
        "utm_source": None,
        "utm_medium": None,
    }
    return captured(**{**values, **overrides})


def by_lead(events: list[LeadScored]) -> dict[str, list[LeadScored]]:
    found: dict[str, list[LeadScored]] = {}
    for event in events:
        found.setdefault(event.lead_id, []).append(event)
    return found


async def test_a_batch_is_scored_in_one_go_and_redelivery_changes_nothing(
    backend, settings_factory
):
    settings = settings_factory(backend)
    hot, warm = captured(), warm_lead()
    clicks = [engaged(warm.lead_id, "click") for _ in range(5)]
    records = [record(e, i) for i, e in enumerate([hot, warm, *clicks])]
    async with scoring_uows(settings) as uows:
        worker = consumer(settings, uows, MODEL, lambda: T0)
        await worker.process(records)
        first = await scored_in_outbox(uows)
        states = await table(uows, store.lead_scores)
        logged = await table(uows, store.score_events)
        changes = await table(uows, store.score_changes)

        await worker.process(records)  # the broker hands the batch over again
        await worker.process(records[3:])

        assert await scored_in_outbox(uows) == first
        assert await table(uows, store.lead_scores) == states
        assert len(await table(uows, store.score_events)) == len(logged) == 7
        assert len(await table(uows, store.score_changes)) == len(changes)

    leads = by_lead(first)
    assert [e.grade for e in leads[hot.lead_id]] == ["hot"]
    assert leads[hot.lead_id][0].became_sales_ready and leads[hot.lead_id][0].previous_grade is None
    warm_scores = [(e.score, e.grade, e.became_sales_ready) for e in leads[warm.lead_id]]
    assert warm_scores == [
        (50, "warm", False),
        (55, "warm", False),
        (60, "warm", False),
        (65, "warm", False),
        (70, "hot", True),
        (75, "hot", False),
    ]
    row = next(s for s in states if s.lead_id == warm.lead_id)
    assert (row.grade, row.score, row.sales_ready, row.events) == ("hot", 75, True, 6)
    assert [r.seq for r in logged if r.lead_id == warm.lead_id] == [1, 2, 3, 4, 5, 6]
    event = leads[hot.lead_id][0]
    assert event.contact.email == hot.contact.email and event.fields == {"company_size": "120"}
    assert event.captured_at == hot.captured_at and event.channel == "google_ads"
    assert event.model_version == MODEL.version
    assert event.cause_type == "leadflow.lead.captured.v1"
    assert round(sum(r.points for r in event.reasons), 2) == event.score


async def test_a_poison_record_is_dead_lettered_and_the_rest_of_the_batch_is_scored(
    backend, settings_factory
):
    settings = settings_factory(backend)
    good, other = captured(), warm_lead()
    poison = record(captured(), 1)
    poison = poison.__class__(**{**poison.__dict__, "value": b'{"lead_id": "x", "oops": '})
    batch = [record(good, 0), poison, record(other, 2)]
    async with scoring_uows(settings) as uows:
        worker = consumer(settings, uows, MODEL, lambda: T0)
        await worker.process(batch)
        rows = await outbox(uows)
        await worker.process(batch)  # redelivered: the poison is not dead-lettered twice
        assert len(await outbox(uows)) == len(rows)

    topics = [topic for topic, _ in rows]
    assert sorted(topics) == ["leads.captured.dlq", "leads.scored", "leads.scored"]
    assert {e.lead_id for t, e in rows if t == "leads.scored"} == {good.lead_id, other.lead_id}


async def test_an_erased_person_leaves_the_snapshot_and_the_log(backend, settings_factory):
    settings = settings_factory(backend)
    lead = captured(company="Analytical Engines")
    erased = LeadErased(lead_id=lead.lead_id, erased_at=T0 + timedelta(hours=1))
    async with scoring_uows(settings) as uows:
        worker = consumer(settings, uows, MODEL, lambda: T0)
        await worker.process([record(lead, 0), record(engaged(lead.lead_id, "click"), 1)])
        await worker.process([record(erased, 2), record(engaged(lead.lead_id, "reply"), 3)])
        # Erasure of a lead scoring never saw: later events of it are ignored too.
        ghost = LeadErased(lead_id="ghost-lead", erased_at=T0)
        await worker.process([record(ghost, 4), record(captured(lead_id="ghost-lead"), 5)])
        # Captured and erased in one batch: the logged submission is scrubbed before it
        # is written.
        brief = captured(company="Difference Engines", email="brief@difference.example")
        gone = LeadErased(lead_id=brief.lead_id, erased_at=T0 + timedelta(hours=1))
        await worker.process([record(brief, 6), record(gone, 7)])
        (brief_log,) = await table(uows, store.score_events, lead_id=brief.lead_id)
        (state,) = await table(uows, store.lead_scores, lead_id=lead.lead_id)
        logged = await table(uows, store.score_events, lead_id=lead.lead_id)
        (ghost_state,) = await table(uows, store.lead_scores, lead_id="ghost-lead")
        scored = await scored_in_outbox(uows)

    assert state.erased_at is not None and state.regrade_due_at is None
    assert state.snapshot["contact"] == {} and state.snapshot["fields"] == {}
    assert state.grade == "hot" and state.reasons  # the anonymous score stays
    assert len(logged) == 2  # the reply after the erasure was not scored
    assert all(r.payload.get("contact", {}) == {} for r in logged)
    assert "ada@" not in str([r.payload for r in logged])
    assert ghost_state.erased_at is not None and ghost_state.grade is None
    assert brief_log.payload["contact"] == {} and brief_log.payload["fields"] == {}
    assert brief_log.payload["lead_id"] == brief.lead_id
    # The submission was scored before the erasure came, as events arrive in order.
    assert [e.lead_id for e in scored] == [lead.lead_id, lead.lead_id, brief.lead_id]


async def test_a_lead_scored_by_an_older_model_is_rebuilt_from_its_log(backend, settings_factory):
    settings = settings_factory(backend)
    lead = warm_lead()
    config = example_config()
    no_clicks = RuleModel(
        config.model_copy(
            update={"engagement": [r for r in config.engagement if r.id != "email_click"]}
        )
    )
    async with scoring_uows(settings) as uows:
        old = consumer(settings, uows, MODEL, lambda: T0)
        await old.process(
            [record(e, i) for i, e in enumerate([lead, *[engaged(lead.lead_id, "click")] * 3])]
        )
        new = consumer(settings, uows, no_clicks, lambda: T0)
        await new.process([record(engaged(lead.lead_id, "open"), 9)])
        (state,) = await table(uows, store.lead_scores, lead_id=lead.lead_id)
        scored = await scored_in_outbox(uows)

    last = scored[-1]
    assert last.model_version == no_clicks.version != MODEL.version
    assert {r.rule_id for r in last.reasons} >= {"content_download", "email_open"}
    assert "email_click" not in {r.rule_id for r in last.reasons}
    assert (last.score, last.previous_grade, last.grade) == (51, "warm", "warm")
    assert state.model_version == no_clicks.version and state.events == 5


async def test_history_rows_are_written_in_one_statement_per_table(backend, settings_factory):
    settings = settings_factory(backend)
    leads = [captured() for _ in range(20)]
    statements: list[str] = []
    async with scoring_uows(settings) as uows:
        worker = consumer(settings, uows, MODEL, lambda: T0)
        probe = uows()
        engine = probe.db.engine.sync_engine

        def count(_conn, _cursor, statement, *_args):
            statements.append(statement.split()[0].upper() + " " + statement)

        sa.event.listen(engine, "before_cursor_execute", count)
        try:
            await worker.process([record(e, i) for i, e in enumerate(leads)])
        finally:
            sa.event.remove(engine, "before_cursor_execute", count)
    inserts = [s for s in statements if s.startswith("INSERT")]
    selects = [s for s in statements if s.startswith("SELECT")]
    # The batch's leads; the inbox marks claimed up front (one INSERT ... RETURNING), then
    # events, states, history and outbox.
    assert len(selects) == 1, selects
    assert len(inserts) == 5, inserts


async def test_consent_follows_confirmation_and_unsubscribe(backend, settings_factory):
    settings = settings_factory(backend)
    lead = warm_lead(form_id="newsletter", form_type="newsletter", double_opt_in=True)
    events = [lead, engaged(lead.lead_id, "confirm"), unsubscribed(lead.lead_id)]
    async with scoring_uows(settings) as uows:
        worker = consumer(settings, uows, MODEL, lambda: T0)
        for i, event in enumerate(events):
            await worker.process([record(event, i)])
        scored = await scored_in_outbox(uows)

    assert [(e.marketing_consent, e.double_opt_in) for e in scored] == [
        (True, True),  # given, waiting for the confirmation click
        (True, False),  # confirmed: nurture may email
        (False, False),  # withdrawn
    ]
    assert [e.score for e in scored] == [45, 50, 30]
    assert scored[-1].cause_type == "leadflow.lead.unsubscribed.v1"


async def test_a_row_the_database_refuses_fails_only_its_own_event(backend, settings_factory):
    if backend == "sqlite":
        pytest.skip("SQLite does not enforce column lengths")
    settings = settings_factory(backend)
    good, other = captured(), warm_lead()
    too_long = captured(lead_id="x" * 100)  # lead ids are at most 64 characters
    batch = [record(good, 0), record(too_long, 1), record(other, 2)]
    async with scoring_uows(settings) as uows:
        worker = consumer(settings, uows, MODEL, lambda: T0)
        await worker.process(batch)  # fails at commit, then event by event
        rows = await outbox(uows)
        states = await table(uows, store.lead_scores)

    assert sorted(t for t, _ in rows) == ["leads.captured.dlq", "leads.scored", "leads.scored"]
    assert {s.lead_id for s in states} == {good.lead_id, other.lead_id}
