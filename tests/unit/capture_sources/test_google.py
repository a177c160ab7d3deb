import json
from datetime import UTC, datetime

import pytest

from services.capture.sources.common import SourceError
from services.capture.sources.google import parse_google_lead

FORM_KEYS = {"18698608977": "bakerGoogleWebHookValue", "349080077126000000": "pmax-form-key"}

# The shape Google Ads posts for "Send test data" (is_test true, int64 ids as bare numbers).
GOOGLE_TEST_PAYLOAD = b"""{
  "lead_id": "TeSter-123-ABCDEFGHIJKLMNOPQRSTUVWXYZ-abcdefghijklmnopqrstuvwxyz-0123456789",
  "user_column_data": [
    {"column_name": "Full Name", "string_value": "FirstName LastName", "column_id": "FULL_NAME"},
    {"column_name": "User Phone", "string_value": "+16505550123", "column_id": "PHONE_NUMBER"},
    {"column_name": "User Email", "string_value": "test@example.com", "column_id": "EMAIL"},
    {"column_name": "Postal Code", "string_value": "94043", "column_id": "POSTAL_CODE"},
    {"string_value": "Roofing", "column_id": "SERVICE"}
  ],
  "api_version": "1.0",
  "form_id": 18698608977,
  "campaign_id": 991214827,
  "google_key": "bakerGoogleWebHookValue",
  "is_test": true,
  "gcl_id": "TeSter-123-ABCDEFGHIJKLMNOPQRSTUVWXYZ-abcdefghijklmnopqrstuvwxyz-0123456789",
  "adgroup_id": 20000000000,
  "creative_id": 30000000000
}"""


def parse(raw: bytes):
    return parse_google_lead(raw, FORM_KEYS.get)


def test_documented_test_payload() -> None:
    lead = parse(GOOGLE_TEST_PAYLOAD)
    assert lead.source == "google"
    assert lead.external_id.startswith("TeSter-123-")
    assert lead.is_test is True
    assert lead.fields == {
        "full_name": "FirstName LastName",
        "phone": "+16505550123",
        "email": "test@example.com",
        "postal_code": "94043",
        "service": "Roofing",
    }
    assert lead.form_id == "18698608977"
    assert lead.campaign_id == "991214827"
    assert lead.adgroup_id == "20000000000"
    assert lead.ad_id == "30000000000"
    assert lead.raw_platform["gcl_id"].startswith("TeSter-123-")
    assert lead.raw_platform["api_version"] == "1.0"
    assert lead.raw_platform["creative_id"] == "30000000000"
    assert lead.created_at is None


def test_int64_ids_beyond_2_pow_53_stay_exact_and_work_fields_map() -> None:
    raw = b"""{
      "lead_id": "Cj0KCQiA-lead", "api_version": "1.0",
      "form_id": 349080077126000000, "campaign_id": 9223372036854775807,
      "adgroup_id": 9007199254740993, "creative_id": 9007199254740995,
      "asset_group_id": 6543210987654321099,
      "google_key": "pmax-form-key", "is_test": false,
      "lead_submit_time": "2024-09-26T12:30:00Z",
      "user_column_data": [
        {"column_name": "First Name", "string_value": "Ada", "column_id": "FIRST_NAME"},
        {"column_name": "Last Name", "string_value": "Lovelace", "column_id": "LAST_NAME"},
        {"column_name": "Work Email", "string_value": "ada@engine.example",
         "column_id": "WORK_EMAIL"},
        {"column_name": "Work Phone", "string_value": "+442079460000", "column_id": "WORK_PHONE"},
        {"column_name": "Company Name", "string_value": "Analytical Engines",
         "column_id": "COMPANY_NAME"},
        {"column_name": "Job Title", "string_value": "Mathematician", "column_id": "JOB_TITLE"},
        {"column_name": "City", "string_value": "London", "column_id": "CITY"},
        {"column_name": "Country", "string_value": "GB", "column_id": "COUNTRY"},
        {"column_name": "What is your budget?", "string_value": "10k", "column_id": "QUESTION_1"}
      ]
    }"""
    lead = parse(raw)
    assert lead.form_id == "349080077126000000"
    assert lead.campaign_id == "9223372036854775807"
    assert lead.adgroup_id == "9007199254740993"
    assert lead.ad_id == "9007199254740995"
    assert lead.raw_platform["asset_group_id"] == "6543210987654321099"
    assert lead.created_at == datetime(2024, 9, 26, 12, 30, tzinfo=UTC)
    assert lead.is_test is False
    assert lead.fields == {
        "first_name": "Ada",
        "last_name": "Lovelace",
        "work_email": "ada@engine.example",
        "work_phone": "+442079460000",
        "company": "Analytical Engines",
        "job_title": "Mathematician",
        "city": "London",
        "country": "GB",
        "what_is_your_budget": "10k",
        "email": "ada@engine.example",
        "phone": "+442079460000",
        "full_name": "Ada Lovelace",
    }


@pytest.mark.parametrize(
    "change",
    [
        {"google_key": "wrong"},
        {"google_key": ""},
        {"google_key": None},
        {"form_id": 11111111111},
        {"form_id": None},
        {"form_id": 1.5},
    ],
)
def test_wrong_or_unknown_key_is_403(change: dict) -> None:
    payload = json.loads(GOOGLE_TEST_PAYLOAD)
    payload.update(change)
    with pytest.raises(SourceError) as caught:
        parse(json.dumps(payload).encode())
    assert (caught.value.status, caught.value.code, caught.value.field) == (
        403,
        "bad_google_key",
        "google_key",
    )


def test_key_is_checked_before_the_rest_of_the_payload() -> None:
    raw = b'{"form_id": 18698608977, "google_key": "wrong", "user_column_data": "garbage"}'
    with pytest.raises(SourceError) as caught:
        parse(raw)
    assert caught.value.status == 403


def test_missing_lead_id_is_400() -> None:
    payload = json.loads(GOOGLE_TEST_PAYLOAD)
    del payload["lead_id"]
    with pytest.raises(SourceError) as caught:
        parse(json.dumps(payload).encode())
    assert (caught.value.status, caught.value.field) == (400, "lead_id")


def test_bad_column_shape_names_the_field() -> None:
    payload = json.loads(GOOGLE_TEST_PAYLOAD)
    payload["user_column_data"] = ["FULL_NAME"]
    with pytest.raises(SourceError) as caught:
        parse(json.dumps(payload).encode())
    assert caught.value.field == "user_column_data[0]"


def test_malformed_json_is_400() -> None:
    with pytest.raises(SourceError) as caught:
        parse(GOOGLE_TEST_PAYLOAD[:-5])
    assert (caught.value.status, caught.value.code) == (400, "malformed_json")
