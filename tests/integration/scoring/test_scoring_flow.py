"""Scoring on real parts: leads.captured and leads.engagement in, leads.scored out, the
explanation over HTTP, the decay sweep and `leadflow scoring replay`, on both databases."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from typer.testing import CliRunner

from leadflow.cli import app as leadflow
from tests.conftest import eventually
from tests.integration.scoring.support import (
    consumer,
    example_with,
    publish,
    record,
    scored_events,
    scoring_uows,
    settled,
)
from tests.unit.scoring.support import captured, engaged, example_model


def form(**overrides):
    """A capture as the example forms produce it, captured now."""
    return captured(at=datetime.now(UTC), **overrides)


async def test_leads_are_graded_explained_and_engagement_makes_them_sales_ready_once(
    backend, broker, settings_factory, running_service
):
    settings = settings_factory(backend, kafka_bootstrap=broker.bootstrap)
    hot = form()
    guide = form(
        form_id="guide-download",
        form_type="download",
        email="sam@gmail.com",
        job_title=None,
        country=None,
        fields={},
        channel="direct",
        utm_source=None,
        utm_medium=None,
    )
    contact = form(
        form_id="contact-sales",
        form_type="contact_me",
        email="jo@acme.io",
        company="Acme",
        job_title=None,
        channel="direct",
        fields={"message": "call me"},
    )
    warm = form(
        form_id="guide-download",
        form_type="download",
        email="kim@acme.io",
        job_title="Head of Marketing",
        country="DE",
        fields={"company_size": "300"},
        channel="direct",
    )
    async with running_service("scoring", settings) as scoring:
        await settled(scoring)
        await publish(broker.bootstrap, [hot, guide, contact, warm])
        first = {e.lead_id: e for e in await scored_events(broker.bootstrap, 4)}
        clicks = [engaged(warm.lead_id, "click", at=datetime.now(UTC)) for _ in range(5)]
        click_ids = await publish(broker.bootstrap, clicks)
        events = await scored_events(broker.bootstrap, 9)
        explained = await scoring.client.get(f"/v1/leads/{warm.lead_id}/score")
        unknown = await scoring.client.get("/v1/leads/no-such-lead/score")
        malformed = await scoring.client.get("/v1/leads/" + "x" * 65 + "/score")

        # The periodic sweep, a month and a half later: the hot lead's demo request has
        # faded, and the grade change goes out on leads.scored.
        decay = scoring.app.state.decay
        decay.clock = lambda: datetime.now(UTC) + timedelta(days=45)
        assert await decay.sweep() >= 1
        decayed = await eventually(
            lambda: _decayed(broker.bootstrap, hot.lead_id), timeout=10, interval=0.3
        )

    assert (first[hot.lead_id].grade, first[hot.lead_id].sales_ready) == ("hot", True)
    assert first[hot.lead_id].became_sales_ready
    assert (first[guide.lead_id].grade, first[guide.lead_id].sales_ready) == ("cold", False)
    assert first[contact.lead_id].sales_ready and first[contact.lead_id].became_sales_ready
    assert (first[warm.lead_id].grade, first[warm.lead_id].score) == ("warm", 50)

    warm_events = [e for e in events if e.lead_id == warm.lead_id]
    assert [e.became_sales_ready for e in warm_events].count(True) == 1
    assert warm_events[-1].grade == "hot" and warm_events[-1].sales_ready
    assert len(events) == 9  # one per capture, one per click that changed the score

    assert explained.status_code == 200, explained.text
    body = explained.json()
    assert round(sum(r["points"] for r in body["reasons"]), 2) == body["score"] == 75
    assert body["current"]["score"] <= body["score"]
    assert [h["grade"] for h in body["history"]] == ["warm"] * 4 + ["hot"] * 2
    assert body["history"][4]["became_sales_ready"] and body["history_total"] == 6
    assert [h["cause_event_id"] for h in body["history"][1:]] == click_ids
    assert unknown.status_code == 404
    assert unknown.json() == {
        "error": {
            "code": "not_found",
            "message": "scoring has not scored this lead",
            "field": "lead_id",
        }
    }
    assert malformed.status_code == 422 and malformed.json()["error"]["field"] == "lead_id"
    assert (decayed.previous_grade, decayed.grade) == ("hot", "warm")


async def _decayed(bootstrap, lead_id):
    for event in await scored_events(bootstrap, 100, timeout=0.5):
        if event.lead_id == lead_id and event.cause_type == "leadflow.scoring.decay":
            return event
    return None


async def test_replay_command_shows_progress_and_publishes_only_regraded_leads(
    backend, broker, settings_factory, tmp_path, monkeypatch
):
    settings = settings_factory(backend, kafka_bootstrap=broker.bootstrap)
    model = example_model()
    leads = [captured(), captured(), captured(company="Analytical Engines"), captured(fields={})]
    async with scoring_uows(settings) as uows:
        worker = consumer(settings, uows, model, lambda: datetime.now(UTC))
        await worker.process([record(e, i) for i, e in enumerate(leads)])

    stricter = example_with(tmp_path, lambda s: s["grades"].update(hot=80))
    monkeypatch.setenv("LEADFLOW_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("LEADFLOW_DATABASE_SCHEMA_PREFIX", settings.database_schema_prefix)
    monkeypatch.setenv("LEADFLOW_KAFKA_BOOTSTRAP", broker.bootstrap)
    monkeypatch.setenv("LEADFLOW_CONFIG", str(stricter))
    runner = CliRunner()

    async def scoring(*args: str):
        return await asyncio.to_thread(
            runner.invoke, leadflow, ["scoring", *args], env={"COLUMNS": "200"}
        )

    version = await scoring("version")
    dry = await scoring("replay", "--dry-run")
    real = await scoring("replay", "--page-size", "3")
    again = await scoring("replay")
    # The outbox goes out with the replay: the 4 first scores, then the 2 regrades.
    published = await scored_events(broker.bootstrap, 6, timeout=5)
    replayed = [e for e in published if e.cause_type == "leadflow.scoring.replay"]

    assert version.exit_code == 0 and version.output.strip() != model.version
    assert dry.exit_code == 0, dry.output
    assert "re-scored 4 lead(s); grade or sales-readiness would change for 2" in dry.output
    assert real.exit_code == 0, real.output
    assert "re-scoring leads" in real.output and "4/4" in real.output
    assert "changed for 2, 0 newly sales-ready" in real.output
    assert "changed for 0" in again.output
    assert len(published) == 6
    assert sorted(e.lead_id for e in replayed) == sorted(x.lead_id for x in leads[:2])
    assert all((e.previous_grade, e.grade) == ("hot", "warm") for e in replayed)
    assert all(e.model_version == version.output.strip() for e in replayed)
