"""Capture on real parts: HTTP → database + outbox → leads.captured, on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid

import orjson

from shared.events import LeadCaptured, decode
from tests.conftest import consume_all


async def test_form_submission_reaches_kafka_once_per_person(
    backend, broker, settings_factory, running_service
):
    settings = settings_factory(backend, kafka_bootstrap=broker.bootstrap)
    email = f"ada-{uuid.uuid4().hex[:6]}@example.com"
    async with running_service("capture", settings) as capture:
        first = await capture.client.post(
            "/v1/forms/demo-request",
            json={
                "work_email": email.upper(),
                "name": "Ada Lovelace",
                "utm_source": "google",
                "utm_medium": "cpc",
                "marketing_consent": "yes",
            },
        )
        second = await capture.client.post(
            "/v1/forms/demo-request", data={"work_email": email, "promo_code": "SPRING26"}
        )
        assert first.status_code == 202, first.text
        assert second.status_code == 202, second.text
        assert first.json()["lead_id"] == second.json()["lead_id"]
        records = await consume_all(broker.bootstrap, "leads.captured", 2)
    events = [decode(r.value, r.headers) for r in records]
    assert len(events) == 2
    data = sorted(
        (e.data for e in events if isinstance(e.data, LeadCaptured)), key=lambda d: d.touch_number
    )
    assert [d.is_new_lead for d in data] == [True, False]
    assert data[0].contact.email == email
    assert data[0].channel == "google_ads" and data[1].channel == "radio"
    assert data[1].first_touch.channel == "google_ads"
    assert data[0].marketing_consent is True
    assert all(r.key.decode() == first.json()["lead_id"] for r in records)
    headers = dict(records[0].headers)
    assert headers["ce_type"] == b"leadflow.lead.captured.v1"
    assert headers["ce_specversion"] == b"1.0"
    assert orjson.loads(records[0].value)["lead_id"] == first.json()["lead_id"]


async def test_invalid_submission_changes_nothing(
    backend, broker, settings_factory, running_service
):
    settings = settings_factory(backend, kafka_bootstrap=broker.bootstrap)
    async with running_service("capture", settings) as capture:
        bad = await capture.client.post(
            "/v1/forms/demo-request", json={"work_email": "not-an-email"}
        )
        unknown = await capture.client.post("/v1/forms/nope", json={"email": "a@example.com"})
        wrong_type = await capture.client.post(
            "/v1/forms/demo-request", content=b"x", headers={"content-type": "text/plain"}
        )
        assert bad.status_code == 422 and bad.json()["error"]["field"] == "work_email"
        assert unknown.status_code == 404
        assert wrong_type.status_code == 415
        records = await consume_all(broker.bootstrap, "leads.captured", 1, timeout=1.5)
    assert records == []
