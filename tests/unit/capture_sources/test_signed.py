import json

import pytest

from services.capture.sources import signed
from services.capture.sources.common import SourceError

NOW = 1_733_870_000
BODY = b'{"external_id": "vendor-1", "fields": {"email": "jo@example.com"}}'


def test_sign_then_verify() -> None:
    header = signed.sign(BODY, "whsec_current", NOW)
    assert header.startswith(f"t={NOW},v1=")
    signed.verify(BODY, header, ["whsec_current"], now=NOW + 10)


def test_rotation_accepts_any_v1_against_any_secret() -> None:
    old = signed.sign(BODY, "whsec_old", NOW).split(",")[1]
    new = signed.sign(BODY, "whsec_new", NOW).split(",")[1]
    header = f"t={NOW},{old},{new},v0=ignored"
    signed.verify(BODY, header, ["whsec_new"], now=NOW)
    signed.verify(BODY, header, ["whsec_old"], now=NOW)
    signed.verify(BODY, signed.sign(BODY, "whsec_old", NOW), ["whsec_new", "whsec_old"], now=NOW)


@pytest.mark.parametrize("skew", [301, -301, 86_400])
def test_stale_timestamp_in_either_direction_is_refused(skew: int) -> None:
    header = signed.sign(BODY, "s", NOW)
    with pytest.raises(SourceError) as caught:
        signed.verify(BODY, header, ["s"], now=NOW + skew)
    assert (caught.value.status, caught.value.code) == (403, "stale_timestamp")


def test_tolerance_is_configurable() -> None:
    header = signed.sign(BODY, "s", NOW)
    signed.verify(BODY, header, ["s"], now=NOW + 300)
    signed.verify(BODY, header, ["s"], now=NOW + 900, tolerance=900)
    with pytest.raises(SourceError):
        signed.verify(BODY, header, ["s"], now=NOW + 61, tolerance=60)


def test_forged_signature_and_tampered_body_are_403() -> None:
    forged = signed.sign(BODY, "attacker", NOW)
    for body, header in ((BODY, forged), (BODY + b" ", signed.sign(BODY, "s", NOW))):
        with pytest.raises(SourceError) as caught:
            signed.verify(body, header, ["s"], now=NOW)
        assert (caught.value.status, caught.value.code) == (403, "bad_signature")


def test_replaying_a_signature_under_a_new_timestamp_fails() -> None:
    digest = signed.sign(BODY, "s", NOW).split("v1=")[1]
    with pytest.raises(SourceError) as caught:
        signed.verify(BODY, f"t={NOW + 100},v1={digest}", ["s"], now=NOW + 100)
    assert caught.value.code == "bad_signature"


@pytest.mark.parametrize(
    ("header", "status", "code"),
    [
        (None, 401, "missing_signature"),
        ("", 401, "missing_signature"),
        ("v1=abc", 401, "malformed_signature"),
        (f"t={NOW}", 401, "malformed_signature"),
        ("t=yesterday,v1=abc", 401, "malformed_signature"),
    ],
)
def test_missing_or_malformed_header(header, status: int, code: str) -> None:
    with pytest.raises(SourceError) as caught:
        signed.verify(BODY, header, ["s"], now=NOW)
    assert (caught.value.status, caught.value.code, caught.value.field) == (
        status,
        code,
        "Leadflow-Signature",
    )


def test_no_configured_secret_refuses_everything() -> None:
    with pytest.raises(SourceError) as caught:
        signed.verify(BODY, signed.sign(BODY, "", NOW), ["", ""], now=NOW)
    assert caught.value.status == 403


def test_parse_one_lead_with_fields_object() -> None:
    [lead] = signed.parse_generic(BODY)
    assert lead.source == "webhook"
    assert lead.external_id == "vendor-1"
    assert lead.fields == {"email": "jo@example.com"}


def test_parse_batch_with_flat_fields_and_attribution() -> None:
    raw = b"""{"leads": [
      {"id": 9007199254740993, "Email": "a@example.com", "phone_number": "+15550100",
       "company_name": "Acme", "zip": "02139", "budget": 5000, "newsletter": true,
       "utm_source": "partner-x", "gclid": "Cj0KCQ", "form_id": 42, "campaign_id": "spring",
       "is_test": true, "created_at": "2024-12-10T22:33:20Z"},
      {"external_id": "b-2", "fields": {"full_name": "Bo Diddley"},
       "raw_platform": {"vendor": "leadco"}}
    ]}"""
    first, second = signed.parse_generic(raw)
    assert first.external_id == "9007199254740993"
    assert first.fields == {
        "email": "a@example.com",
        "phone": "+15550100",
        "company": "Acme",
        "postal_code": "02139",
        "budget": "5000",
        "newsletter": "true",
    }
    assert first.raw_platform == {"utm_source": "partner-x", "gclid": "Cj0KCQ"}
    assert (first.form_id, first.campaign_id, first.is_test) == ("42", "spring", True)
    assert first.created_at is not None and first.created_at.tzinfo is not None
    assert second.external_id == "b-2"
    assert second.raw_platform == {"vendor": "leadco"}


def test_nested_answer_is_400_naming_the_field() -> None:
    raw = json.dumps({"leads": [{"id": "1", "fields": {"address": {"street": "x"}}}]}).encode()
    with pytest.raises(SourceError) as caught:
        signed.parse_generic(raw)
    assert (caught.value.status, caught.value.field) == (400, "leads[0].fields.address")


def test_lead_without_answers_is_400() -> None:
    with pytest.raises(SourceError) as caught:
        signed.parse_generic(b'{"external_id": "x"}')
    assert caught.value.code == "no_fields"


def test_batch_limits() -> None:
    with pytest.raises(SourceError) as caught:
        signed.parse_generic(b'{"leads": []}')
    assert caught.value.code == "empty_batch"
    many = json.dumps({"leads": [{"email": f"{i}@example.com"} for i in range(3)]}).encode()
    with pytest.raises(SourceError) as caught:
        signed.parse_generic(many, max_leads=2)
    assert (caught.value.status, caught.value.code) == (413, "too_many_leads")


def test_malformed_json_is_400() -> None:
    with pytest.raises(SourceError) as caught:
        signed.parse_generic(b"{'single': 'quotes'}")
    assert (caught.value.status, caught.value.code) == (400, "malformed_json")
