import json
from datetime import UTC, datetime

import pytest

from services.capture.sources import tiktok
from services.capture.sources.common import SourceError

SECRET = "tiktok-client-secret"
NOW = 1_733_870_000

LEAD_CONTENT = (
    '{"lead_id": 7301234567890123456, "advertiser_id": 7012345678901234567, '
    '"page_id": 7309876543210987654, "campaign_id": 1789012345678901234, '
    '"adgroup_id": 1789012345678905678, "ad_id": 1789012345678909012, '
    '"create_time": 1733869990, '
    '"fields": [{"field_name": "name", "field_value": "Jo Bloggs"}, '
    '{"field_name": "email", "field_value": "jo@example.com"}, '
    '{"field_name": "phone_number", "field_value": "+447700900123"}, '
    '{"field_name": "What is your budget?", "field_value": "10k"}]}'
)
ENVELOPE = json.dumps(
    {
        "client_key": "bwo2m45353a6k85",
        "event": "lead.create",
        "create_time": 1733870000,
        "content": LEAD_CONTENT,
    }
).encode()


def test_documented_signature_example_format_verifies() -> None:
    header = tiktok.sign(ENVELOPE, SECRET, NOW)
    assert header.startswith(f"t={NOW},s=")
    tiktok.verify_signature(ENVELOPE, header, SECRET, now=NOW + 5)


def test_forged_stale_missing() -> None:
    with pytest.raises(SourceError) as caught:
        tiktok.verify_signature(ENVELOPE, tiktok.sign(ENVELOPE, "other", NOW), SECRET, now=NOW)
    assert (caught.value.status, caught.value.code) == (403, "bad_signature")
    with pytest.raises(SourceError) as caught:
        tiktok.verify_signature(ENVELOPE, tiktok.sign(ENVELOPE, SECRET, NOW), SECRET, now=NOW + 301)
    assert (caught.value.status, caught.value.code) == (403, "stale_timestamp")
    with pytest.raises(SourceError) as caught:
        tiktok.verify_signature(ENVELOPE, None, SECRET, now=NOW)
    assert (caught.value.status, caught.value.field) == (401, "TikTok-Signature")
    with pytest.raises(SourceError) as caught:
        tiktok.verify_signature(ENVELOPE, "s=abc", SECRET, now=NOW)
    assert caught.value.code == "malformed_signature"


def test_envelope_with_serialized_content_keeps_ids_exact() -> None:
    [lead] = tiktok.parse_leads(ENVELOPE)
    assert lead.source == "tiktok"
    assert lead.external_id == "7301234567890123456"
    assert lead.form_id == "7309876543210987654"
    assert lead.campaign_id == "1789012345678901234"
    assert lead.adgroup_id == "1789012345678905678"
    assert lead.ad_id == "1789012345678909012"
    assert lead.raw_platform == {"advertiser_id": "7012345678901234567", "event": "lead.create"}
    assert lead.created_at == datetime.fromtimestamp(1733869990, tz=UTC)
    assert lead.fields == {
        "full_name": "Jo Bloggs",
        "email": "jo@example.com",
        "phone": "+447700900123",
        "what_is_your_budget": "10k",
    }


def test_direct_batch_with_object_answers() -> None:
    raw = b"""{"data": {"leads": [
      {"lead_id": "1", "form_id": "22", "is_test": true,
       "answers": {"first_name": "Ana", "zip_code": "1010", "interests": ["A", "B"]}},
      {"id": 2, "field_data": [{"name": "email", "values": ["b@example.com"]}]}
    ]}}"""
    first, second = tiktok.parse_leads(raw)
    assert (first.external_id, first.form_id, first.is_test) == ("1", "22", True)
    assert first.fields == {
        "first_name": "Ana",
        "postal_code": "1010",
        "interests": "A, B",
        "full_name": "Ana",
    }
    assert (second.external_id, second.fields) == ("2", {"email": "b@example.com"})


def test_non_lead_event_yields_nothing() -> None:
    body = json.dumps(
        {
            "client_key": "k",
            "event": "authorization.removed",
            "create_time": 1,
            "content": '{"reason": 1}',
        }
    ).encode()
    assert tiktok.parse_leads(body) == []


def test_malformed_content_is_400() -> None:
    body = json.dumps({"client_key": "k", "event": "lead.create", "content": "{oops"}).encode()
    with pytest.raises(SourceError) as caught:
        tiktok.parse_leads(body)
    assert (caught.value.status, caught.value.code) == (400, "malformed_json")


def test_payload_without_a_lead_is_400() -> None:
    with pytest.raises(SourceError) as caught:
        tiktok.parse_leads(b'{"hello": "world"}')
    assert caught.value.code == "no_lead"
