"""Landing-page forms on real parts: double submits, HTML posts, limits, CORS, spam."""

from __future__ import annotations

import asyncio
import uuid
from urllib.parse import parse_qs, urlsplit

from tests.integration.capture.support import (
    ADMIN,
    ADMIN_TOKEN,
    captured_events,
    count_rows,
    exactly,
    metric,
    platform_standin,
    write_config,
)

HTML = {
    "accept": "text/html,application/xhtml+xml",
    "content-type": "application/x-www-form-urlencoded",
}


def _email(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:6]}@example.com"


async def test_double_submit_is_one_lead(
    backend, broker, settings_factory, running_service, tmp_path
):
    settings = settings_factory(
        backend, kafka_bootstrap=broker.bootstrap, config=write_config(tmp_path)
    )
    json_email, html_email = _email("double"), _email("html")
    async with running_service("capture", settings) as capture:
        key = str(uuid.uuid4())
        first, second = await asyncio.gather(
            *(
                capture.client.post(
                    "/v1/forms/demo-request",
                    json={"work_email": json_email, "name": "Dee Double"},
                    headers={"Idempotency-Key": key},
                )
                for _ in range(2)
            )
        )
        assert {first.status_code, second.status_code} == {202}
        assert first.json()["submission_id"] == second.json()["submission_id"]
        assert {first.json()["status"], second.json()["status"]} == {"accepted", "duplicate"}
        # A browser double-click: the page's hidden idempotency_key is the same both times.
        token = str(uuid.uuid4())
        body = {
            "work_email": html_email,
            "idempotency_key": token,
            "utm_source": "facebook",
            "utm_medium": "cpc",
        }
        clicks = [
            await capture.client.post(
                "/v1/forms/demo-request", data=body, headers={"accept": "text/html"}
            )
            for _ in range(2)
        ]
        assert [c.status_code for c in clicks] == [303, 303]
        assert clicks[0].headers["location"] == "http://127.0.0.1:8000/thanks.html"
        events = await exactly(broker.bootstrap, 2)
        assert await count_rows(capture.runtime, "submissions") == 2
    assert {e.contact.email for e in events} == {json_email, html_email}
    html_event = next(e for e in events if e.contact.email == html_email)
    assert html_event.channel == "facebook_ads"
    assert "idempotency_key" not in html_event.fields


async def test_bad_input_is_refused_naming_the_field_and_stores_nothing(
    broker, settings_factory, running_service, tmp_path
):
    settings = settings_factory(kafka_bootstrap=broker.bootstrap, config=write_config(tmp_path))
    origin = "http://127.0.0.1:8000"
    async with running_service("capture", settings) as capture:
        post = capture.client.post
        many = await post(
            "/v1/forms/guide-download",
            json={f"f{i}": "x" for i in range(101)} | {"email": _email("m")},
        )
        long = await post(
            "/v1/forms/guide-download", json={"email": _email("l"), "note": "x" * 2001}
        )
        nested = await post(
            "/v1/forms/guide-download", json={"email": _email("n"), "note": {"a": 1}}
        )
        wrong_type = await post(
            "/v1/forms/guide-download", content=b"<x/>", headers={"content-type": "text/xml"}
        )
        unknown = await post("/v1/forms/nope", json={"email": _email("u")})
        huge = await post(
            "/v1/forms/guide-download", json={"email": _email("h"), "note": "x" * 70_000}
        )
        bad_key = await post(
            "/v1/forms/guide-download",
            json={"email": _email("k")},
            headers={"Idempotency-Key": "k" * 201},
        )
        assert (many.status_code, many.json()["error"]["code"]) == (422, "too_many_fields")
        assert (long.status_code, long.json()["error"]["field"]) == (422, "note")
        assert (nested.status_code, nested.json()["error"]["field"]) == (422, "note")
        assert (wrong_type.status_code, wrong_type.json()["error"]["field"]) == (
            415,
            "content-type",
        )
        assert (unknown.status_code, unknown.json()["error"]["field"]) == (404, "form_id")
        assert huge.status_code == 413
        assert (bad_key.status_code, bad_key.json()["error"]["field"]) == (422, "Idempotency-Key")
        # A plain HTML post that fails goes back to its page, with the error and its UTMs kept.
        page = f"{origin}/landing-page.html?utm_source=facebook"
        back = await post(
            "/v1/forms/demo-request",
            content=b"work_email=not-an-email",
            headers={**HTML, "referer": page},
        )
        assert back.status_code == 303
        query = parse_qs(urlsplit(back.headers["location"]).query)
        assert query == {
            "utm_source": ["facebook"],
            "lf_error": ["invalid_field"],
            "lf_field": ["work_email"],
        }
        # CORS: the preflight names what the page may send; an unknown origin is refused.
        preflight = await capture.client.options(
            "/v1/forms/demo-request",
            headers={
                "origin": origin,
                "access-control-request-method": "POST",
                "access-control-request-headers": "content-type",
            },
        )
        assert preflight.status_code == 204
        assert preflight.headers["access-control-allow-origin"] == origin
        assert "Idempotency-Key" in preflight.headers["access-control-allow-headers"]
        stranger = await capture.client.options(
            "/v1/forms/demo-request", headers={"origin": "https://evil.example"}
        )
        assert (
            stranger.status_code == 403 and stranger.json()["error"]["code"] == "origin_not_allowed"
        )
        refused = await post(
            "/v1/forms/demo-request", json={"work_email": "x"}, headers={"origin": origin}
        )
        assert (
            refused.status_code == 422 and refused.headers["access-control-allow-origin"] == origin
        )
        assert await count_rows(capture.runtime, "submissions") == 0
        assert await captured_events(broker.bootstrap, 1, timeout=1.0) == []


async def test_spam_is_quarantined_listed_and_released(
    backend, broker, settings_factory, running_service, tmp_path
):
    settings = settings_factory(
        backend,
        kafka_bootstrap=broker.bootstrap,
        config=write_config(tmp_path),
        admin_token=ADMIN_TOKEN,
    )
    bot, fast, throwaway, rival = (
        _email("bot"),
        _email("fast"),
        f"x{uuid.uuid4().hex[:6]}@mailinator.com",
        "spy@competitor.example",
    )
    async with running_service("capture", settings) as capture:
        before = await metric(
            capture.client, "leadflow_leads_quarantined_total", source="form", reason="honeypot"
        )
        post = capture.client.post
        honeypot = await post(
            "/v1/forms/demo-request",
            data={"work_email": bot, "website": "http://spam.example"},
            headers={"accept": "text/html"},
        )
        too_fast = await post(
            "/v1/forms/contact-sales", json={"email": fast, "lf_elapsed_ms": "400"}
        )
        disposable = await post("/v1/forms/guide-download", json={"email": throwaway})
        blocked = await post(
            "/v1/forms/contact-sales", json={"email": rival, "lf_elapsed_ms": "9000"}
        )
        assert honeypot.status_code == 303  # a bot learns nothing
        assert [r.json()["status"] for r in (too_fast, disposable, blocked)] == ["quarantined"] * 3
        assert too_fast.json()["lead_id"] is None
        assert (
            await metric(
                capture.client, "leadflow_leads_quarantined_total", source="form", reason="honeypot"
            )
            == before + 1
        )
        assert await captured_events(broker.bootstrap, 1, timeout=1.0) == []

        assert (await capture.client.get("/v1/quarantine")).status_code == 401
        listing = await capture.client.get("/v1/quarantine", headers=ADMIN)
        assert listing.status_code == 200
        held = {item["email"]: item for item in listing.json()["items"]}
        assert {e: held[e]["reason"] for e in held} == {
            bot: "honeypot",
            fast: "too_fast",
            throwaway: "disposable_email",
            rival: "disposable_email",
        }
        page = await capture.client.get("/v1/quarantine", headers=ADMIN, params={"limit": 2})
        rest = await capture.client.get(
            "/v1/quarantine",
            headers=ADMIN,
            params={"limit": 2, "before": page.json()["next_before"]},
        )
        assert len(page.json()["items"]) + len(rest.json()["items"]) == 4

        submission_id = held[fast]["submission_id"]
        released = await post(f"/v1/quarantine/{submission_id}/release", headers=ADMIN)
        assert released.status_code == 202, released.text
        assert released.json()["status"] == "released" and released.json()["lead_id"]
        again = await post(f"/v1/quarantine/{submission_id}/release", headers=ADMIN)
        unknown = await post(f"/v1/quarantine/{uuid.uuid4()}/release", headers=ADMIN)
        assert (again.status_code, unknown.status_code) == (409, 404)
        rejected_id = held[bot]["submission_id"]
        assert (await post(f"/v1/quarantine/{rejected_id}/reject")).status_code == 401
        rejected = await post(f"/v1/quarantine/{rejected_id}/reject", headers=ADMIN)
        assert rejected.json() == {"submission_id": rejected_id, "status": "rejected"}
        twice = await post(f"/v1/quarantine/{rejected_id}/reject", headers=ADMIN)
        not_held = await post(f"/v1/quarantine/{submission_id}/reject", headers=ADMIN)
        assert (twice.status_code, not_held.status_code) == (404, 409)
        [event] = await exactly(broker.bootstrap, 1)
        remaining = await capture.client.get("/v1/quarantine", headers=ADMIN)
    assert (event.contact.email, event.form_id, event.lead_id) == (
        fast,
        "contact-sales",
        released.json()["lead_id"],
    )
    assert event.submission_id == submission_id
    assert event.marketing_consent is True  # contact-sales: asking to be contacted is consent
    assert {fast, bot}.isdisjoint(item["email"] for item in remaining.json()["items"])


async def test_rate_limits_answer_429_with_retry_after(
    broker, settings_factory, running_service, tmp_path
):
    settings = settings_factory(kafka_bootstrap=broker.bootstrap, config=write_config(tmp_path))
    async with running_service("capture", settings) as capture:
        answers = [
            await capture.client.post(
                "/v1/forms/contact-sales", json={"email": _email(f"r{i}"), "lf_elapsed_ms": "5000"}
            )
            for i in range(6)
        ]
        other_form = await capture.client.post(
            "/v1/forms/guide-download", json={"email": _email("g")}
        )
        assert [a.status_code for a in answers] == [202] * 5 + [429]
        assert int(answers[-1].headers["retry-after"]) >= 1
        assert answers[-1].json()["error"]["code"] == "rate_limited"
        assert other_form.status_code == 202
        assert await count_rows(capture.runtime, "submissions") == 6


async def test_captcha_verified_against_the_configured_siteverify(
    broker, settings_factory, running_service, tmp_path
):
    with platform_standin() as standin:
        config = write_config(
            tmp_path,
            forms={
                "webinar": {
                    "required": ["email"],
                    "captcha": {
                        "provider": "turnstile",
                        "secret": "ts-secret",
                        "verify_url": f"{standin.url}/siteverify",
                    },
                }
            },
        )
        settings = settings_factory(kafka_bootstrap=broker.bootstrap, config=config)
        human, robot, silent = _email("human"), _email("robot"), _email("silent")
        async with running_service("capture", settings) as capture:
            passed = await capture.client.post(
                "/v1/forms/webinar", json={"email": human, "cf-turnstile-response": "good-token"}
            )
            failed = await capture.client.post(
                "/v1/forms/webinar", json={"email": robot, "cf-turnstile-response": "forged"}
            )
            missing = await capture.client.post("/v1/forms/webinar", json={"email": silent})
            statuses = [r.json()["status"] for r in (passed, failed, missing)]
            [event] = await exactly(broker.bootstrap, 1)
            reasons = await count_rows(
                capture.runtime,
                "submissions",
                "quarantine_reason IN ('captcha_failed', 'captcha_missing')",
            )
    assert statuses == ["accepted", "quarantined", "quarantined"]
    assert event.contact.email == human and "cf-turnstile-response" not in event.fields
    assert reasons == 2
    assert standin.posts[0]["secret"] == ["ts-secret"] and standin.posts[0]["response"] == [
        "good-token"
    ]
