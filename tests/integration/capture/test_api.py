"""The lead API, erasure, the consent ledger and a database outage, on real parts."""

from __future__ import annotations

import uuid
from decimal import Decimal

import httpx
import pytest

from services.capture import messagebus
from services.capture.commands import CreateApiKey
from tests.conftest import PG_AVAILABLE, PG_URL
from tests.integration.capture.support import (
    ADMIN,
    ADMIN_TOKEN,
    count_rows,
    erased_events,
    exactly,
    tcp_proxy,
    write_config,
)


async def _api_key(
    runtime, source: str = "partner-a", cost: str | None = "12.50"
) -> dict[str, str]:
    key = await messagebus.bus(runtime.db).handle(
        CreateApiKey(name="test", source=source, cost_per_lead=Decimal(cost) if cost else None)
    )
    return {"Authorization": f"Bearer {key}"}


async def test_batch_results_per_item_and_retries_are_no_ops(
    broker, settings_factory, running_service, tmp_path
):
    settings = settings_factory(kafka_bootstrap=broker.bootstrap, config=write_config(tmp_path))
    tag = uuid.uuid4().hex[:6]
    batch = {
        "leads": [
            {"email": f"pos-{tag}@example.com", "promo_code": "SPRING26", "external_id": "pos-1"},
            {"fields": {"phone": "+44 20 7946 0958", "first_name": "Pat"}, "external_id": "pos-2"},
            {"email": "not-an-email", "external_id": "pos-3"},
            "not an object",
            {"email": f"f-{tag}@example.com", "form_id": "missing-form"},
        ]
    }
    async with running_service("capture", settings) as capture:
        headers = await _api_key(capture.runtime)
        assert (await capture.client.post("/v1/leads", json=batch)).status_code == 401
        assert (
            await capture.client.post(
                "/v1/leads", json=batch, headers={"Authorization": "Bearer nope"}
            )
        ).status_code == 403
        not_json = await capture.client.post(
            "/v1/leads",
            content=b"email=x",
            headers={**headers, "content-type": "application/x-www-form-urlencoded"},
        )
        assert not_json.status_code == 415
        too_many = await capture.client.post(
            "/v1/leads", json={"leads": [{}] * 501}, headers=headers
        )
        assert too_many.status_code == 413
        first = await capture.client.post("/v1/leads", json=batch, headers=headers)
        retry = await capture.client.post("/v1/leads", json=batch, headers=headers)
        single = await capture.client.post("/v1/leads", json={"email": "bad"}, headers=headers)
        events = await exactly(broker.bootstrap, 2)
    assert first.status_code == 207
    results = first.json()["results"]
    assert [r["status"] for r in results] == [
        "accepted",
        "accepted",
        "rejected",
        "rejected",
        "rejected",
    ]
    assert results[2]["error"]["field"] == "email"
    assert results[4]["error"] == {
        "code": "unknown_form",
        "field": "form_id",
        "message": "no form 'missing-form' is configured",
    }
    assert [r["status"] for r in retry.json()["results"][:2]] == ["duplicate", "duplicate"]
    assert retry.json()["results"][0]["lead_id"] == results[0]["lead_id"]
    assert (single.status_code, single.json()["error"]["field"]) == (422, "email")
    by_phone = {e.contact.phone: e for e in events}
    pos = next(e for e in events if e.contact.email == f"pos-{tag}@example.com")
    assert (pos.channel, pos.attribution.promo_code, pos.cost) == (
        "radio",
        "SPRING26",
        Decimal("12.50"),
    )
    assert pos.attribution.utm_source == "partner-a"
    assert by_phone["+442079460958"].contact.country == "GB"


async def test_erasure_scrubs_the_person_everywhere_and_consent_ledger(
    backend, broker, settings_factory, running_service, tmp_path
):
    settings = settings_factory(
        backend,
        kafka_bootstrap=broker.bootstrap,
        config=write_config(tmp_path),
        admin_token=ADMIN_TOKEN,
    )
    email = f"forget-{uuid.uuid4().hex[:6]}@example.com"
    async with running_service("capture", settings) as capture:
        accepted = await capture.client.post(
            "/v1/forms/demo-request",
            json={"work_email": email, "marketing_consent": "on"},
        )
        held = await capture.client.post(
            "/v1/forms/demo-request", json={"work_email": email, "website": "x"}
        )
        assert held.json()["status"] == "quarantined"
        lead_id = accepted.json()["lead_id"]
        ledger = await capture.client.get(f"/v1/leads/{lead_id}/consents", headers=ADMIN)
        assert ledger.status_code == 200
        [consent] = ledger.json()["consents"]
        assert consent["marketing"] is True
        assert consent["text"].startswith("Send me product news")
        assert (consent["version"], consent["source"], consent["form_id"]) == (
            "2026-11",
            "form",
            "demo-request",
        )
        assert consent["ip"] and consent["recorded_at"]

        key = await _api_key(capture.runtime)
        unknown = await capture.client.post(
            "/v1/erasure", json={"email": "nobody@example.com"}, headers=key
        )
        no_auth = await capture.client.post("/v1/erasure", json={"email": email})
        erased = await capture.client.post(
            "/v1/erasure", json={"email": email.upper()}, headers=key
        )
        assert (unknown.status_code, no_auth.status_code, erased.status_code) == (404, 401, 202)
        assert erased.json() == {"lead_id": lead_id, "status": "erased"}
        [event] = await erased_events(broker.bootstrap, 1)
        leftovers = await count_rows(
            capture.runtime, "submissions", f"email = '{email}' OR client_ip IS NOT NULL"
        )
        lead_rows = await count_rows(capture.runtime, "leads", f"email = '{email}'")
        held_rows = await count_rows(capture.runtime, "submissions", "status = 'erased'")
        anonymous_consent = await count_rows(capture.runtime, "consents", "ip IS NULL")
        # Erasing by admin token and lead id works too (and is repeatable).
        again = await capture.client.post("/v1/erasure", json={"lead_id": lead_id}, headers=ADMIN)
    assert event.lead_id == lead_id
    assert (leftovers, lead_rows, held_rows, anonymous_consent) == (0, 0, 1, 1)
    assert again.status_code == 202


@pytest.mark.postgres
async def test_database_down_answers_503_with_retry_after(
    broker, settings_factory, running_service, tmp_path
):
    if not PG_AVAILABLE:
        pytest.skip("PostgreSQL is not reachable at 127.0.0.1:5432")
    async with tcp_proxy(5432) as proxy:
        url = PG_URL.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
        settings = settings_factory(
            "postgres",
            kafka_bootstrap=broker.bootstrap,
            config=write_config(tmp_path),
            database_url=url,
        )
        async with running_service("capture", settings) as capture:
            ok = await capture.client.post(
                "/v1/forms/newsletter", json={"email": f"up-{uuid.uuid4().hex[:6]}@example.com"}
            )
            assert ok.status_code == 202
            await proxy.stop()
            # The edge answers 503 itself (nothing is raised to the server): read it as a client.
            transport = httpx.ASGITransport(app=capture.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                down = await client.post("/v1/forms/newsletter", json={"email": "down@example.com"})
                ready = await client.get("/readyz")
    assert down.status_code == 503, down.text
    assert down.headers["retry-after"] == "5"
    assert down.json()["error"]["code"] == "unavailable"
    assert ready.status_code == 503
