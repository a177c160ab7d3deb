import hashlib
import hmac
import itertools
import json
import uuid
from datetime import UTC, datetime

import pytest

from services.capture.sources import linkedin
from services.capture.sources.common import RetrievalError, SourceError
from services.capture.sources.linkedin import LeadSyncClient

CLIENT_SECRET = "li-client-secret"
_forms = itertools.count(7234246)

NOTIFICATION = b"""{
  "type": "LEAD_ACTION",
  "leadGenFormResponse": "urn:li:leadGenFormResponse:1a2b3c4d-5e6f-4a5b-9c8d-7e6f5a4b3c2d-4",
  "leadGenForm": "urn:li:versionedLeadGenForm:(urn:li:leadGenForm:5236798, 1)",
  "owner": {"sponsoredAccount": "urn:li:sponsoredAccount:522529623"},
  "associatedEntity": {"sponsoredCreative": "urn:li:sponsoredCreative:241257736"},
  "leadType": "SPONSORED",
  "leadAction": "CREATED",
  "occurredAt": 1686182358881
}"""


def form_response(response_id: str, form_id: int, *, with_form: bool = True) -> dict:
    element = {
        "owner": {"sponsoredAccount": "urn:li:sponsoredAccount:522529623"},
        "submitter": "urn:li:person:WwPm8qk4Ga",
        "leadType": "SPONSORED",
        "leadMetadata": {
            "sponsoredLeadMetadata": {"campaign": "urn:li:sponsoredCampaign:301516393"}
        },
        "versionedLeadGenFormUrn": f"urn:li:versionedLeadGenForm:(urn:li:leadGenForm:{form_id},1)",
        "id": response_id,
        "submittedAt": 1686182358000,
        "testLead": True,
        "associatedEntity": {"associatedCreative": "urn:li:sponsoredCreative:241257736"},
        "formResponse": {
            "answers": [
                {"answerDetails": {"textQuestionAnswer": {"answer": "Ada"}}, "questionId": 1},
                {"answerDetails": {"textQuestionAnswer": {"answer": "Lovelace"}}, "questionId": 2},
                {
                    "answerDetails": {"textQuestionAnswer": {"answer": "ada@engine.example"}},
                    "questionId": 3,
                },
                {
                    "answerDetails": {"textQuestionAnswer": {"answer": "Engines Ltd"}},
                    "questionId": 4,
                },
                {"answerDetails": {"textQuestionAnswer": {"answer": "W1A 1AA"}}, "questionId": 5},
                {"answerDetails": {"multipleChoiceAnswer": {"options": [2, 3]}}, "questionId": 6},
            ],
            "consentResponses": [{"accepted": True, "consentId": 11}],
        },
    }
    if with_form:
        element["form"] = form_definition(form_id)
    return element


def form_definition(form_id: int) -> dict:
    return {
        "id": form_id,
        "name": "Engine demo",
        "hiddenFields": [{"name": "utm_campaign", "value": "spring-launch"}],
        "content": {
            "questions": [
                {"questionId": 1, "name": "firstName", "predefinedField": "FIRST_NAME"},
                {"questionId": 2, "name": "lastName", "predefinedField": "LAST_NAME"},
                {"questionId": 3, "name": "email", "predefinedField": "WORK_EMAIL"},
                {"questionId": 4, "name": "company", "predefinedField": "COMPANY_NAME"},
                {"questionId": 5, "name": "zip", "predefinedField": "ZIP_CODE"},
                {
                    "questionId": 6,
                    "name": "Products of interest",
                    "question": {"localized": {"en_US": "Which products?"}},
                    "questionDetails": {
                        "multipleChoiceQuestionDetails": {
                            "options": [
                                {"id": 1, "text": {"localized": {"en_US": "Pumps"}}},
                                {"id": 2, "text": {"localized": {"en_US": "Valves"}}},
                                {"id": 3, "text": {"localized": {"en_US": "Seals"}}},
                            ]
                        }
                    },
                },
            ]
        },
    }


def test_challenge_response_is_hex_hmac_of_the_code() -> None:
    code = "890e4665-4dfe-4ab1-b689-ed553bceeed0"
    answer = linkedin.challenge_response({"challengeCode": code}, CLIENT_SECRET)
    expected = hmac.new(CLIENT_SECRET.encode(), code.encode(), hashlib.sha256).hexdigest()
    assert answer == {"challengeCode": code, "challengeResponse": expected}


def test_challenge_without_code_is_400() -> None:
    with pytest.raises(SourceError) as caught:
        linkedin.challenge_response({}, CLIENT_SECRET)
    assert (caught.value.status, caught.value.field) == (400, "challengeCode")


def test_signature_covers_prefix_and_exact_body() -> None:
    header = hmac.new(
        CLIENT_SECRET.encode(), b"hmacsha256=" + NOTIFICATION, hashlib.sha256
    ).hexdigest()
    linkedin.verify_signature(NOTIFICATION, header, CLIENT_SECRET)
    linkedin.verify_signature(NOTIFICATION, header.upper(), CLIENT_SECRET)


def test_forged_and_missing_signatures() -> None:
    without_prefix = hmac.new(CLIENT_SECRET.encode(), NOTIFICATION, hashlib.sha256).hexdigest()
    with pytest.raises(SourceError) as caught:
        linkedin.verify_signature(NOTIFICATION, without_prefix, CLIENT_SECRET)
    assert (caught.value.status, caught.value.code) == (403, "bad_signature")
    with pytest.raises(SourceError) as caught:
        linkedin.verify_signature(NOTIFICATION, None, CLIENT_SECRET)
    assert (caught.value.status, caught.value.field) == (401, "X-LI-Signature")


def test_parse_documented_notification() -> None:
    [notification] = linkedin.parse_notifications(NOTIFICATION)
    assert notification.response_id == "1a2b3c4d-5e6f-4a5b-9c8d-7e6f5a4b3c2d-4"
    assert notification.form_id == "5236798"
    assert notification.form_version == "1"
    assert notification.lead_type == "SPONSORED"
    assert notification.owner_urn == "urn:li:sponsoredAccount:522529623"
    assert notification.occurred_at == datetime.fromtimestamp(1686182358.881, tz=UTC)
    assert notification.is_deletion is False


def test_deleted_and_foreign_notifications() -> None:
    deleted = json.loads(NOTIFICATION) | {"leadAction": "DELETED"}
    social = {"type": "ORGANIZATION_SOCIAL_ACTION_NOTIFICATIONS", "notifications": []}
    notifications = linkedin.parse_notifications(json.dumps([deleted, social]).encode())
    assert [n.is_deletion for n in notifications] == [True]


def test_bad_urn_names_the_field() -> None:
    body = json.loads(NOTIFICATION) | {"leadGenFormResponse": "urn:li:person:123"}
    with pytest.raises(SourceError) as caught:
        linkedin.parse_notifications(json.dumps(body).encode())
    assert (caught.value.status, caught.value.field) == (400, "leadGenFormResponse")


def test_malformed_json_is_400() -> None:
    with pytest.raises(SourceError) as caught:
        linkedin.parse_notifications(NOTIFICATION[:40])
    assert caught.value.code == "malformed_json"


EXPECTED_FIELDS = {
    "first_name": "Ada",
    "last_name": "Lovelace",
    "work_email": "ada@engine.example",
    "company": "Engines Ltd",
    "postal_code": "W1A 1AA",
    "products_of_interest": "Valves, Seals",
    "email": "ada@engine.example",
    "full_name": "Ada Lovelace",
}


async def test_client_fetches_form_response_with_projection(stub_api) -> None:
    response_id = f"{uuid.uuid4()}-4"
    form_id = next(_forms)
    stub_api.reply(
        f"/rest/leadFormResponses/{response_id}", json_body=form_response(response_id, form_id)
    )
    async with LeadSyncClient("li-token", base_url=f"{stub_api.url}/rest") as client:
        lead = await client.fetch_form_response(response_id)

    assert lead.source == "linkedin"
    assert lead.external_id == response_id
    assert lead.fields == EXPECTED_FIELDS
    assert lead.form_id == str(form_id)
    assert lead.campaign_id == "301516393"
    assert lead.ad_id == "241257736"
    assert lead.is_test is True
    assert lead.created_at == datetime.fromtimestamp(1686182358, tz=UTC)
    assert lead.raw_platform == {
        "lead_type": "SPONSORED",
        "owner": "urn:li:sponsoredAccount:522529623",
        "associated_entity": "urn:li:sponsoredCreative:241257736",
        "hidden_utm_campaign": "spring-launch",
        "consent_11": "true",
        "form_version": "1",
    }
    [request] = stub_api.requests_to(f"/rest/leadFormResponses/{response_id}")
    assert request.headers["authorization"] == "Bearer li-token"
    assert request.headers["linkedin-version"] == linkedin.DEFAULT_API_VERSION
    assert request.headers["x-restli-protocol-version"] == "2.0.0"
    assert "form:(hiddenFields" in request.query["fields"][0]


async def test_client_reads_the_form_when_the_projection_is_missing(stub_api) -> None:
    response_id = f"{uuid.uuid4()}-4"
    form_id = next(_forms)
    stub_api.reply(
        f"/rest/leadFormResponses/{response_id}",
        json_body=form_response(response_id, form_id, with_form=False),
    )
    stub_api.reply(f"/rest/leadForms/{form_id}", json_body=form_definition(form_id))
    async with LeadSyncClient("li-token", base_url=f"{stub_api.url}/rest") as client:
        lead = await client.fetch_form_response(response_id)
    assert lead.fields == EXPECTED_FIELDS
    assert len(stub_api.requests_to(f"/rest/leadForms/{form_id}")) == 1


@pytest.mark.parametrize(
    ("status", "retryable"),
    [
        (500, True),
        (503, True),
        (429, True),
        (400, False),
        (401, False),
        (403, False),
        (404, False),
        (426, False),
    ],
)
async def test_client_failures_are_classified(stub_api, status: int, retryable: bool) -> None:
    response_id = f"{uuid.uuid4()}-4"
    stub_api.reply(
        f"/rest/leadFormResponses/{response_id}",
        status,
        json_body={"status": status, "serviceErrorCode": 100, "message": "nope"},
    )
    async with LeadSyncClient("li-token", base_url=f"{stub_api.url}/rest") as client:
        with pytest.raises(RetrievalError) as caught:
            await client.fetch_form_response(response_id)
    assert (caught.value.retryable, caught.value.status) == (retryable, status)


async def test_client_network_failure_is_retryable(closed_port_url: str) -> None:
    async with LeadSyncClient("t", base_url=f"{closed_port_url}/rest") as client:
        with pytest.raises(RetrievalError) as caught:
            await client.fetch_form_response("abc-4")
    assert caught.value.retryable is True
