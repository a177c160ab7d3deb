"""Ad-platform webhooks end to end: documented payloads in, exactly one lead.captured per lead out.

Real broker, real databases, and a real local HTTP server standing in for the Graph
API and LinkedIn's API.
"""

from __future__ import annotations

import json
import time
import uuid

import pytest

from tests.conftest import eventually
from tests.integration.capture.support import (
    ADMIN_TOKEN,
    GOOGLE_FORM,
    GOOGLE_KEY,
    captured_events,
    count_rows,
    exactly,
    graph_lead,
    linkedin_signature,
    meta_signature,
    metric,
    platform_standin,
    tiktok_signature,
    vendor_signature,
    write_config,
)

# The App Dashboard "Test" button for the leadgen field: string ids.
DASHBOARD_TEST = (
    b'{"entry": [{"id": "0", "time": 1733870000, "changes": [{"field": "leadgen", '
    b'"value": {"ad_id": "444444444", "form_id": "444444444", "leadgen_id": "444444444", '
    b'"created_time": 1733870000, "page_id": "444444444", "adgroup_id": "44444444"}}]}], '
    b'"object": "page"}'
)

# A batch: two Pages, bare JSON numbers beyond 2^53, a non-lead change mixed in.
BATCHED = b"""{
  "object": "page",
  "entry": [
    {"id": "112233445566778", "time": 1733870100, "changes": [
      {"field": "leadgen", "value": {"leadgen_id": 9007199254740993, "page_id": 112233445566778,
        "form_id": 1234567890123456789, "ad_id": 120211234567890123, "created_time": 1733870099}},
      {"field": "feed", "value": {"item": "status", "verb": "add"}},
      {"field": "leadgen", "value": {"leadgen_id": "9007199254740995", "page_id": "112233445566778",
        "form_id": "1234567890123456789", "created_time": 1733870098}}
    ]},
    {"id": "998877665544332", "time": 1733870101, "changes": [
      {"field": "leadgen", "value": {"leadgen_id": 9007199254740997, "page_id": 998877665544332,
        "form_id": 555, "created_time": 1733870097}}
    ]}
  ]
}"""
LEADGEN_IDS = ("444444444", "9007199254740993", "9007199254740995", "9007199254740997")

GOOGLE_TEST = {
    "lead_id": "TeSter-123-ABCDEFGHIJKLMNOPQRSTUVWXYZ-abcdefghijklmnopqrstuvwxyz-0123456789",
    "user_column_data": [
        {
            "column_name": "Full Name",
            "string_value": "FirstName LastName",
            "column_id": "FULL_NAME",
        },
        {"column_name": "User Phone", "string_value": "+16505550123", "column_id": "PHONE_NUMBER"},
        {"column_name": "User Email", "string_value": "test@example.com", "column_id": "EMAIL"},
        {"column_name": "Postal Code", "string_value": "94043", "column_id": "POSTAL_CODE"},
    ],
    "api_version": "1.0",
    "form_id": int(GOOGLE_FORM),
    "campaign_id": 991214827,
    "google_key": GOOGLE_KEY,
    "is_test": True,
    "gcl_id": "TeSter-123-ABCDEFGHIJKLMNOPQRSTUVWXYZ",
    "adgroup_id": 20000000000,
    "creative_id": 30000000000,
}


def _json(body: bytes, **headers: str) -> dict[str, str]:
    return {"content-type": "application/json", **headers}


async def test_meta_dashboard_test_and_batched_entries_each_end_as_one_lead(
    backend, broker, settings_factory, running_service, tmp_path
):
    with platform_standin() as standin:
        tag = uuid.uuid4().hex[:6]
        for index, leadgen_id in enumerate(LEADGEN_IDS):
            standin.serve(
                f"/graph/{leadgen_id}",
                graph_lead(leadgen_id, f"m{leadgen_id}-{tag}@example.com", f"+1415555010{index}"),
            )
        settings = settings_factory(
            backend,
            kafka_bootstrap=broker.bootstrap,
            config=write_config(tmp_path, standin_url=standin.url),
        )
        async with running_service("capture", settings) as capture:
            handshake = await capture.client.get(
                "/v1/webhooks/meta",
                params={
                    "hub.mode": "subscribe",
                    "hub.challenge": "1158201444",
                    "hub.verify_token": "test-verify-token",
                },
            )
            assert (handshake.status_code, handshake.text) == (200, "1158201444")
            for body in (DASHBOARD_TEST, BATCHED):
                response = await capture.client.post(
                    "/v1/webhooks/meta",
                    content=body,
                    headers=_json(body, **{"X-Hub-Signature-256": meta_signature(body)}),
                )
                assert response.status_code == 200, response.text
            events = await exactly(broker.bootstrap, 4)
            # Meta redelivers: the same notifications again add nothing.
            again = await capture.client.post(
                "/v1/webhooks/meta",
                content=BATCHED,
                headers=_json(BATCHED, **{"X-Hub-Signature-256": meta_signature(BATCHED)}),
            )
            assert again.json() == {"received": 3, "new": 0}
            assert len(await captured_events(broker.bootstrap, 5, timeout=1.0)) == 4
            stored = await count_rows(capture.runtime, "submissions", "source = 'meta'")
    assert stored == 4
    by_email = {e.contact.email: e for e in events}
    assert set(by_email) == {f"m{i}-{tag}@example.com" for i in LEADGEN_IDS}
    first = by_email[f"m9007199254740993-{tag}@example.com"]
    assert (first.source, first.channel, first.form_id) == ("meta", "meta_lead_ads", "demo-request")
    assert first.attribution.campaign_id == "120211234567890999"
    assert first.attribution.ad_id == "120211234567890123"
    assert first.contact.phone == "+14155550101"
    assert (first.contact.first_name, first.contact.last_name) == ("Meta", "Person")
    assert first.fields.get("what_is_your_budget?") == "10k"


async def test_graph_api_failing_for_a_while_the_lead_still_arrives(
    broker, settings_factory, running_service, tmp_path
):
    with platform_standin() as standin:
        leadgen_id = str(9007199254740000 + int(time.time() * 1000) % 999)
        route = standin.serve(
            f"/graph/{leadgen_id}",
            graph_lead(leadgen_id, f"late-{leadgen_id}@example.com"),
            healthy=False,
        )
        body = json.dumps(
            {
                "object": "page",
                "entry": [
                    {
                        "id": "1",
                        "time": 1,
                        "changes": [
                            {
                                "field": "leadgen",
                                "value": {"leadgen_id": leadgen_id, "page_id": "1"},
                            }
                        ],
                    }
                ],
            }
        ).encode()
        settings = settings_factory(
            kafka_bootstrap=broker.bootstrap, config=write_config(tmp_path, standin_url=standin.url)
        )
        async with running_service("capture", settings) as capture:
            retried_before = await metric(
                capture.client,
                "leadflow_webhook_retrievals_total",
                platform="meta",
                outcome="retried",
            )
            response = await capture.client.post(
                "/v1/webhooks/meta",
                content=body,
                headers=_json(body, **{"X-Hub-Signature-256": meta_signature(body)}),
            )
            assert response.status_code == 200
            await eventually(lambda: route.failures >= 3, timeout=10)
            await eventually(
                lambda: metric(
                    capture.client, "leadflow_webhook_retrievals_pending", platform="meta"
                ),
                timeout=5,
            )
            # The stand-in counts a failure when it answers; the worker counts the retry
            # once it has read that answer.
            await eventually(
                lambda: _at_least(
                    metric(
                        capture.client,
                        "leadflow_webhook_retrievals_total",
                        platform="meta",
                        outcome="retried",
                    ),
                    retried_before + 3,
                ),
                timeout=5,
            )
            assert await captured_events(broker.bootstrap, 1, timeout=0.5) == []
            assert await count_rows(capture.runtime, "retrievals", "status = 'pending'") == 1
            route.healthy = True
            [event] = await exactly(broker.bootstrap, 1)
            assert event.contact.email == f"late-{leadgen_id}@example.com"
            await eventually(
                lambda: _is_zero(
                    metric(capture.client, "leadflow_webhook_retrievals_pending", platform="meta")
                ),
                timeout=5,
            )
            assert await count_rows(capture.runtime, "retrievals", "status = 'done'") == 1


async def _is_zero(value) -> bool:
    return (await value) == 0


async def _at_least(value, minimum: float) -> bool:
    return (await value) >= minimum


async def test_google_test_lead_flagged_and_duplicate_lead_id_still_200(
    broker, settings_factory, running_service, tmp_path
):
    settings = settings_factory(kafka_bootstrap=broker.bootstrap, config=write_config(tmp_path))
    body = json.dumps(GOOGLE_TEST).encode()
    async with running_service("capture", settings) as capture:
        first = await capture.client.post("/v1/webhooks/google", content=body, headers=_json(body))
        again = await capture.client.post("/v1/webhooks/google", content=body, headers=_json(body))
        assert (first.status_code, again.status_code) == (200, 200)
        [event] = await exactly(broker.bootstrap, 1)
    assert event.is_test is True
    assert (event.source, event.channel, event.form_id) == ("google", "google_ads", "demo-request")
    assert event.contact.email == "test@example.com"
    assert event.attribution.gclid == "TeSter-123-ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    assert event.attribution.campaign_id == "991214827"
    assert event.attribution.ad_id == "30000000000"


async def test_linkedin_notification_is_retrieved_and_tiktok_and_vendor_leads_arrive(
    broker, settings_factory, running_service, tmp_path
):
    response_id = f"{uuid.uuid4()}-4"
    notification = json.dumps(
        {
            "type": "LEAD_ACTION",
            "leadGenFormResponse": f"urn:li:leadGenFormResponse:{response_id}",
            "leadGenForm": "urn:li:versionedLeadGenForm:(urn:li:leadGenForm:5236798,1)",
            "owner": {"sponsoredAccount": "urn:li:sponsoredAccount:522529623"},
            "leadType": "SPONSORED",
            "leadAction": "CREATED",
            "occurredAt": 1686182358881,
        }
    ).encode()
    form_response = {
        "id": response_id,
        "leadType": "SPONSORED",
        "versionedLeadGenFormUrn": "urn:li:versionedLeadGenForm:(urn:li:leadGenForm:5236798,1)",
        "submittedAt": 1686182358000,
        "testLead": False,
        "leadMetadata": {
            "sponsoredLeadMetadata": {"campaign": "urn:li:sponsoredCampaign:301516393"}
        },
        "formResponse": {
            "answers": [
                {"answerDetails": {"textQuestionAnswer": {"answer": "Ada"}}, "questionId": 1},
                {
                    "answerDetails": {"textQuestionAnswer": {"answer": "li-ada@engine.example"}},
                    "questionId": 2,
                },
            ]
        },
        "form": {
            "hiddenFields": [{"name": "utm_campaign", "value": "spring-launch"}],
            "content": {
                "questions": [
                    {"questionId": 1, "name": "firstName", "predefinedField": "FIRST_NAME"},
                    {"questionId": 2, "name": "email", "predefinedField": "WORK_EMAIL"},
                ]
            },
        },
    }
    tiktok_body = json.dumps(
        {
            "client_key": "bwo2m45353a6k85",
            "event": "lead.create",
            "create_time": int(time.time()),
            "content": json.dumps(
                {
                    "lead_id": 7301234567890123456,
                    "page_id": 7309876543210987654,
                    "campaign_id": 1789012345678901234,
                    "fields": [
                        {"field_name": "name", "field_value": "Jo Bloggs"},
                        {"field_name": "email", "field_value": "jo-tt@example.com"},
                    ],
                }
            ),
        }
    ).encode()
    vendor_body = json.dumps(
        {
            "external_id": "acme-778",
            "email": "vendor-lead@example.com",
            "first_name": "Vee",
            "utm_campaign": "partner-list",
        }
    ).encode()
    with platform_standin() as standin:
        standin.serve(f"/linkedin/leadFormResponses/{response_id}", form_response)
        settings = settings_factory(
            kafka_bootstrap=broker.bootstrap, config=write_config(tmp_path, standin_url=standin.url)
        )
        async with running_service("capture", settings) as capture:
            challenge = await capture.client.get(
                "/v1/webhooks/linkedin", params={"challengeCode": "890e4665"}
            )
            assert challenge.status_code == 200 and len(challenge.json()["challengeResponse"]) == 64
            li = await capture.client.post(
                "/v1/webhooks/linkedin",
                content=notification,
                headers=_json(notification, **{"X-LI-Signature": linkedin_signature(notification)}),
            )
            tt = await capture.client.post(
                "/v1/webhooks/tiktok",
                content=tiktok_body,
                headers=_json(tiktok_body, **{"TikTok-Signature": tiktok_signature(tiktok_body)}),
            )
            vendor = await capture.client.post(
                "/v1/webhooks/acme-leads",
                content=vendor_body,
                headers=_json(vendor_body, **{"Leadflow-Signature": vendor_signature(vendor_body)}),
            )
            vendor_again = await capture.client.post(
                "/v1/webhooks/acme-leads",
                content=vendor_body,
                headers=_json(vendor_body, **{"Leadflow-Signature": vendor_signature(vendor_body)}),
            )
            assert [r.status_code for r in (li, tt, vendor, vendor_again)] == [200] * 4
            assert vendor_again.json()["results"][0]["status"] == "duplicate"
            events = await exactly(broker.bootstrap, 3)
    by_source = {e.source: e for e in events}
    linkedin = by_source["linkedin"]
    assert (linkedin.channel, linkedin.contact.email) == ("linkedin_ads", "li-ada@engine.example")
    assert linkedin.attribution.campaign_id == "301516393"
    assert linkedin.attribution.utm_campaign == "spring-launch"
    tiktok = by_source["tiktok"]
    assert (tiktok.channel, tiktok.contact.email, tiktok.form_id) == (
        "tiktok_ads",
        "jo-tt@example.com",
        "demo-request",
    )
    assert tiktok.attribution.campaign_id == "1789012345678901234"
    webhook = by_source["webhook"]
    assert (webhook.channel, webhook.form_id, webhook.cost) == (
        "lead_vendors",
        "guide-download",
        pytest.approx(12.5),
    )
    assert (webhook.attribution.utm_source, webhook.attribution.utm_campaign) == (
        "acme-leads",
        "partner-list",
    )


async def test_forged_stale_wrong_key_and_oversize_are_refused_and_store_nothing(
    broker, settings_factory, running_service, tmp_path
):
    settings = settings_factory(
        kafka_bootstrap=broker.bootstrap, config=write_config(tmp_path), admin_token=ADMIN_TOKEN
    )
    stale_t = int(time.time()) - 301
    vendor_body = json.dumps({"external_id": "x1", "email": "stale@example.com"}).encode()
    tiktok_body = json.dumps({"lead_id": "1", "fields": {"email": "tt-stale@example.com"}}).encode()
    wrong_key = json.dumps({**GOOGLE_TEST, "google_key": "guess"}).encode()
    unknown_form = json.dumps({**GOOGLE_TEST, "form_id": 1}).encode()
    huge = json.dumps({"object": "page", "entry": [], "pad": "x" * 70_000}).encode()
    cases = [
        (
            "/v1/webhooks/meta",
            DASHBOARD_TEST,
            {"X-Hub-Signature-256": meta_signature(DASHBOARD_TEST, "forged")},
            403,
        ),
        ("/v1/webhooks/meta", DASHBOARD_TEST, {}, 401),
        ("/v1/webhooks/google", wrong_key, {}, 403),
        ("/v1/webhooks/google", unknown_form, {}, 403),
        (
            "/v1/webhooks/acme-leads",
            vendor_body,
            {"Leadflow-Signature": vendor_signature(vendor_body, t=stale_t)},
            403,
        ),
        (
            "/v1/webhooks/acme-leads",
            vendor_body,
            {"Leadflow-Signature": vendor_signature(vendor_body, "forged")},
            403,
        ),
        (
            "/v1/webhooks/tiktok",
            tiktok_body,
            {"TikTok-Signature": tiktok_signature(tiktok_body, t=stale_t)},
            403,
        ),
        ("/v1/webhooks/linkedin", DASHBOARD_TEST, {"X-LI-Signature": "00" * 32}, 403),
        (
            "/v1/webhooks/nobody",
            vendor_body,
            {"Leadflow-Signature": vendor_signature(vendor_body)},
            404,
        ),
        ("/v1/webhooks/meta", huge, {"X-Hub-Signature-256": meta_signature(huge)}, 413),
    ]
    async with running_service("capture", settings) as capture:
        for path, body, headers, status in cases:
            response = await capture.client.post(path, content=body, headers=_json(body, **headers))
            assert response.status_code == status, (path, response.text)
            assert "code" in response.json()["error"]
        form = await capture.client.post(
            "/v1/webhooks/acme-leads",
            content=b"email=a@example.com",
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
        assert form.status_code == 415
        assert await count_rows(capture.runtime, "submissions") == 0
        assert await count_rows(capture.runtime, "retrievals") == 0
        assert await captured_events(broker.bootstrap, 1, timeout=1.0) == []
