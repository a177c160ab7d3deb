"""Forged, tampered and replayed signatures: refused (4xx), nothing stored, nothing emitted.

tests/integration/capture/test_webhooks.py already refuses a Meta signature made with
another secret, a missing one, a stale vendor timestamp, a forged vendor signature, a
wrong google_key and an unknown Google form. These add what an attacker tries next:
truncated and re-schemed signatures, a body changed after signing, timestamps that are
not ASCII digits or are thousands of digits long, future timestamps, replays of an
accepted request (inside and after its window), tampered acknowledgement links and
forged HubSpot deal webhooks.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
import uuid
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest

from services.router.domain import ack_token
from services.router.outcomes import hubspot_signature
from tests.conftest import eventually
from tests.hostile.support import (
    ADMIN_TOKEN,
    BASE_URL,
    HUBSPOT_SECRET,
    SHORT_WINDOW,
    SHORT_WINDOW_SECONDS,
    hostile_settings,
    published,
    row_counts,
)
from tests.integration.capture.support import (
    GOOGLE_FORM,
    GOOGLE_KEY,
    META_SECRET,
    TIKTOK_SECRET,
    VENDOR_SECRET,
    exactly,
    meta_signature,
    tiktok_signature,
    vendor_signature,
)
from tests.integration.router.support import publish, scored, settled, write_config

pytestmark = pytest.mark.broker

HUGE_TIME = "1" * 5000


def _hex(secret: str, message: bytes) -> str:
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def _json(**headers: Any) -> dict[str, Any]:
    return {"content-type": "application/json", **headers}


async def _refused(client: Any, cases: list[tuple[str, str, bytes, dict, int, str]]) -> list:
    """Send each case; the mismatches between what was expected and what came back."""
    wrong = []
    for name, path, body, headers, status, code in cases:
        response = await client.post(path, content=body, headers=_json(**headers))
        error = response.json().get("error", {}) if response.content else {}
        if (response.status_code, error.get("code")) != (status, code):
            wrong.append((name, status, code, response.status_code, response.text[:200]))
    return wrong


async def test_forged_truncated_and_malformed_platform_signatures_store_nothing(
    broker: Any, settings_factory: Any, running_service: Any, tmp_path: Any
) -> None:
    settings = hostile_settings(settings_factory, broker, tmp_path, "sqlite")
    tag = uuid.uuid4().hex[:8]
    meta = json.dumps(
        {
            "object": "page",
            "entry": [
                {
                    "id": "1",
                    "time": 1,
                    "changes": [
                        {"field": "leadgen", "value": {"leadgen_id": "4242", "page_id": "1"}}
                    ],
                }
            ],
        }
    ).encode()
    valid_meta = meta_signature(meta)
    vendor = json.dumps({"external_id": f"v-{tag}", "email": f"v-{tag}@example.com"}).encode()
    now = int(time.time())
    v1 = _hex(VENDOR_SECRET, f"{now}.".encode() + vendor)
    tiktok = json.dumps({"lead_id": f"77{now}", "fields": {"email": f"t-{tag}@example.com"}})
    tiktok_body = tiktok.encode()
    digest = _hex(TIKTOK_SECRET, f"{now}.".encode() + tiktok_body)
    google = {
        "lead_id": f"G-{tag}",
        "form_id": int(GOOGLE_FORM),
        "user_column_data": [{"column_id": "EMAIL", "string_value": f"g-{tag}@example.com"}],
    }
    meta_header = "X-Hub-Signature-256"
    cases: list[tuple[str, str, bytes, dict, int, str]] = [
        ("meta: truncated", "/v1/webhooks/meta", meta, {meta_header: valid_meta[:39]}, 403,
         "bad_signature"),
        ("meta: empty digest", "/v1/webhooks/meta", meta, {meta_header: "sha256="}, 401,
         "malformed_signature"),
        ("meta: sha1 scheme", "/v1/webhooks/meta", meta,
         {meta_header: "sha1=" + hmac.new(META_SECRET.encode(), meta, hashlib.sha1).hexdigest()},
         401, "malformed_signature"),
        ("meta: body changed after signing", "/v1/webhooks/meta", meta.replace(b"4242", b"4243"),
         {meta_header: valid_meta}, 403, "bad_signature"),
        ("meta: digest of another body", "/v1/webhooks/meta", meta,
         {meta_header: meta_signature(meta + b" ")}, 403, "bad_signature"),
        ("meta: non-ASCII digest", "/v1/webhooks/meta", meta,
         {meta_header: b"sha256=" + b"\xe9" * 64}, 403, "bad_signature"),
        ("vendor: truncated v1", "/v1/webhooks/acme-leads", vendor,
         {"Leadflow-Signature": f"t={now},v1={v1[:63]}"}, 403, "bad_signature"),
        ("vendor: future timestamp", "/v1/webhooks/acme-leads", vendor,
         {"Leadflow-Signature": vendor_signature(vendor, t=now + 600)}, 403, "stale_timestamp"),
        ("vendor: superscript digit as time", "/v1/webhooks/acme-leads", vendor,
         {"Leadflow-Signature": b"t=\xb2,v1=" + v1.encode()}, 401, "malformed_signature"),
        ("vendor: 5,000-digit time", "/v1/webhooks/acme-leads", vendor,
         {"Leadflow-Signature": f"t={HUGE_TIME},v1={v1}"}, 401, "malformed_signature"),
        ("vendor: only an unknown scheme", "/v1/webhooks/acme-leads", vendor,
         {"Leadflow-Signature": f"t={now},v0={v1}"}, 401, "malformed_signature"),
        ("vendor: signed for another time", "/v1/webhooks/acme-leads", vendor,
         {"Leadflow-Signature": f"t={now - 1},v1={v1}"}, 403, "bad_signature"),
        ("tiktok: superscript digit as time", "/v1/webhooks/tiktok", tiktok_body,
         {"TikTok-Signature": b"t=\xb9,s=" + digest.encode()}, 401, "malformed_signature"),
        ("tiktok: 5,000-digit time", "/v1/webhooks/tiktok", tiktok_body,
         {"TikTok-Signature": f"t={HUGE_TIME},s={digest}"}, 401, "malformed_signature"),
        ("tiktok: truncated", "/v1/webhooks/tiktok", tiktok_body,
         {"TikTok-Signature": f"t={now},s={digest[:40]}"}, 403, "bad_signature"),
        ("tiktok: other secret", "/v1/webhooks/tiktok", tiktok_body,
         {"TikTok-Signature": tiktok_signature(tiktok_body, "forged")}, 403, "bad_signature"),
        ("google: no key", "/v1/webhooks/google", json.dumps(google).encode(), {}, 403,
         "bad_google_key"),
        ("google: key in upper case", "/v1/webhooks/google",
         json.dumps({**google, "google_key": GOOGLE_KEY.upper()}).encode(), {}, 403,
         "bad_google_key"),
        ("google: key with a trailing space", "/v1/webhooks/google",
         json.dumps({**google, "google_key": GOOGLE_KEY + " "}).encode(), {}, 403,
         "bad_google_key"),
        ("google: key prefix", "/v1/webhooks/google",
         json.dumps({**google, "google_key": GOOGLE_KEY[:-1]}).encode(), {}, 403,
         "bad_google_key"),
    ]  # fmt: skip
    async with running_service("capture", settings) as capture:
        before = await row_counts(capture.runtime, "capture")
        events = await published(broker.bootstrap)
        wrong = await _refused(capture.client, cases)
        after = await row_counts(capture.runtime, "capture")
        await asyncio.sleep(0.5)  # the outbox relay polls every 0.2 s
        assert await published(broker.bootstrap) == events
    assert not wrong, wrong
    assert after == before


async def test_replayed_vendor_request_stores_nothing_new_and_is_refused_after_its_window(
    broker: Any, settings_factory: Any, running_service: Any, tmp_path: Any
) -> None:
    settings = hostile_settings(settings_factory, broker, tmp_path, "sqlite")
    tag = uuid.uuid4().hex[:8]
    # No external_id: only the signature can tell a replay from a new submission.
    body = json.dumps({"email": f"replay-{tag}@example.com", "first_name": "Re"}).encode()
    short = json.dumps({"email": f"short-{tag}@example.com", "first_name": "Sh"}).encode()
    signed = _json(**{"Leadflow-Signature": vendor_signature(body)})
    signed_at = int(time.time())
    signed_short = _json(**{"Leadflow-Signature": vendor_signature(short, t=signed_at)})
    async with running_service("capture", settings) as capture:
        client = capture.client
        accepted = await client.post("/v1/webhooks/acme-leads", content=body, headers=signed)
        replayed = await client.post("/v1/webhooks/acme-leads", content=body, headers=signed)
        first = await client.post(
            f"/v1/webhooks/{SHORT_WINDOW}", content=short, headers=signed_short
        )
        # The same request, captured and replayed once its window has closed.
        await asyncio.sleep(max(0.0, signed_at + SHORT_WINDOW_SECONDS + 1.2 - time.time()))
        late = await client.post(
            f"/v1/webhooks/{SHORT_WINDOW}", content=short, headers=signed_short
        )
        events = await exactly(broker.bootstrap, 2)
        stored = await row_counts(capture.runtime, "capture")
    assert accepted.status_code == 200 and accepted.json()["results"][0]["status"] == "accepted"
    assert replayed.status_code == 200 and replayed.json()["results"][0]["status"] == "duplicate"
    assert first.status_code == 200 and first.json()["results"][0]["status"] == "accepted"
    assert (late.status_code, late.json()["error"]["code"]) == (403, "stale_timestamp")
    assert sorted(str(e.contact.email) for e in events) == [
        f"replay-{tag}@example.com",
        f"short-{tag}@example.com",
    ]
    assert stored["submissions"] == 2


def _routing(tmp_path: Any) -> Any:
    return write_config(
        tmp_path,
        {
            "public_url": BASE_URL,
            "reps": {"rep-a": {"name": "A", "email": "a@example.com"}},
            "rules": [{"id": "all", "reps": ["rep-a"], "destinations": ["file"]}],
            "destinations": {"file": {"type": "file", "path": str(tmp_path / "routed.jsonl")}},
            "outcomes": {"hubspot_client_secret": HUBSPOT_SECRET},
        },
    )


def _routed_links(tmp_path: Any) -> list[str]:
    path = tmp_path / "routed.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    return [parse_qs(urlparse(json.loads(line)["ack_url"]).query)["token"][0] for line in lines]


async def _assignment_of(router: Any, lead_id: str) -> dict[str, Any] | None:
    response = await router.client.get(f"/v1/leads/{lead_id}/assignments")
    assignments = response.json()["assignments"]
    return assignments[0] if assignments else None


async def test_tampered_acknowledgement_links_are_refused_and_change_nothing(
    broker: Any, settings_factory: Any, running_service: Any, tmp_path: Any
) -> None:
    settings = settings_factory(
        kafka_bootstrap=broker.bootstrap, config=_routing(tmp_path), admin_token=ADMIN_TOKEN
    )
    secret = settings.secret_key.get_secret_value()
    mine, other = scored(), scored()
    async with running_service("router", settings) as router:
        await publish(broker.bootstrap, [mine, other])
        await eventually(lambda: _assignment_of(router, mine.lead_id), timeout=15)
        target = await eventually(lambda: _assignment_of(router, other.lead_id), timeout=15)
        mine_id = (await _assignment_of(router, mine.lead_id) or {})["assignment_id"]
        target_id = target["assignment_id"]
        good = ack_token(secret, target_id)
        link = f"/v1/assignments/{target_id}/ack"
        tampered = {
            "another assignment's token": ack_token(secret, mine_id),
            "truncated": good[:-1],
            "one more character": good + "0",
            "upper case": good.upper(),
            "one character changed": good[:-1] + ("1" if good[-1] != "1" else "2"),
            "non-ASCII": "é" * 40,
            "the admin token": ADMIN_TOKEN,
            "signed with another secret": ack_token("another-secret", target_id),
        }
        answers = {}
        for name, token in tampered.items():
            answers[f"GET {name}"] = await router.client.get(link, params={"token": token})
            answers[f"POST {name}"] = await router.client.post(link, json={"token": token})
        answers["POST without a token"] = await router.client.post(link)
        answers["POST wrong bearer, no token"] = await router.client.post(
            link, headers={"Authorization": "Bearer not-the-admin-token"}
        )
        untouched = await router.client.get(f"/v1/assignments/{target_id}")
        routed = await eventually(lambda: _routed_links(tmp_path), timeout=15)
        taken = await router.client.post(link, json={"token": good})
        await settled(router)

    refused = {
        name: r.status_code for name, r in answers.items() if r.status_code not in (401, 403)
    }
    assert not refused, refused
    assert answers["POST without a token"].status_code == 401
    assert untouched.json()["status"] == "open" and untouched.json()["acknowledged_at"] is None
    # The links the router hands out carry exactly the tokens these tests compute.
    assert set(routed) <= {good, ack_token(secret, mine_id)}
    assert taken.status_code == 200 and taken.json()["status"] == "acknowledged"


async def test_forged_hubspot_deal_webhooks_are_refused_and_record_nothing(
    broker: Any, settings_factory: Any, running_service: Any, tmp_path: Any
) -> None:
    settings = settings_factory(
        kafka_bootstrap=broker.bootstrap, config=_routing(tmp_path), admin_token=ADMIN_TOKEN
    )
    url = f"{BASE_URL}/v1/webhooks/hubspot"
    events = [
        {
            "eventId": 1,
            "subscriptionType": "deal.propertyChange",
            "objectId": 7,
            "propertyName": "dealstage",
            "propertyValue": "closedwon",
            "occurredAt": 1733870000000,
        }
    ]
    body = json.dumps(events).encode()
    now = str(int(time.time() * 1000))
    stale = str(int(time.time() * 1000) - 6 * 60 * 1000)
    valid = hubspot_signature(HUBSPOT_SECRET, "POST", url, body, now)
    overflow = json.dumps([{**events[0], "occurredAt": 1e308}]).encode()
    sig, stamp = "X-HubSpot-Signature-v3", "X-HubSpot-Request-Timestamp"
    cases: list[tuple[str, bytes, dict[str, Any], int]] = [
        ("non-ASCII signature", body, {sig: b"\xe9" * 44, stamp: now}, 403),
        ("superscript digit as time", body, {sig: valid, stamp: b"\xb2"}, 403),
        ("5,000-digit time", body, {sig: valid, stamp: HUGE_TIME}, 403),
        ("stale but validly signed", body,
         {sig: hubspot_signature(HUBSPOT_SECRET, "POST", url, body, stale), stamp: stale}, 403),
        ("signed for another URL", body,
         {sig: hubspot_signature(HUBSPOT_SECRET, "POST", "https://evil.example/x", body, now),
          stamp: now}, 403),
        ("signed for another method", body,
         {sig: hubspot_signature(HUBSPOT_SECRET, "GET", url, body, now), stamp: now}, 403),
        ("truncated", body, {sig: valid[:-2], stamp: now}, 403),
        ("no timestamp", body, {sig: valid}, 401),
        ("validly signed, occurredAt out of range", overflow,
         {sig: hubspot_signature(HUBSPOT_SECRET, "POST", url, overflow, now), stamp: now}, 422),
    ]  # fmt: skip
    async with running_service("router", settings) as router:
        before = await row_counts(router.runtime, "router")
        offsets = await published(broker.bootstrap)
        answers = {
            name: await router.client.post(
                "/v1/webhooks/hubspot", content=content, headers=_json(**headers)
            )
            for name, content, headers, _ in cases
        }
        after = await row_counts(router.runtime, "router")
        await asyncio.sleep(0.5)
        assert await published(broker.bootstrap) == offsets
        await settled(router)
    wrong = {
        name: (status, answers[name].status_code, answers[name].text[:200])
        for name, _, _, status in cases
        if answers[name].status_code != status or "error" not in answers[name].json()
    }
    assert not wrong, wrong
    assert after == before
