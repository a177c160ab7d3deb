import itertools
import json
from datetime import UTC, datetime

import pytest

from services.capture.sources import meta
from services.capture.sources.common import RetrievalError, SourceError
from services.capture.sources.meta import GraphApiClient, MetaLeadNotification

APP_SECRET = "meta-app-secret"
_ids = itertools.count(900719925474099300)


def next_leadgen_id() -> str:
    """Unique ids above 2^53 so every client test owns its stub route."""
    return str(next(_ids))


# The App Dashboard "Test" button for the leadgen field sends this shape: string ids.
DASHBOARD_TEST_PAYLOAD = (
    b'{"entry": [{"id": "0", "time": 1733870000, "changes": [{"field": "leadgen", '
    b'"value": {"ad_id": "444444444", "form_id": "444444444", "leadgen_id": "444444444", '
    b'"created_time": 1733870000, "page_id": "444444444", "adgroup_id": "44444444"}}]}], '
    b'"object": "page"}'
)

# A real batch: two Pages, ids as bare JSON numbers beyond 2^53, a non-lead change mixed in.
BATCHED_PAYLOAD = b"""{
  "object": "page",
  "entry": [
    {"id": "112233445566778", "time": 1733870100, "changes": [
      {"field": "leadgen", "value": {"leadgen_id": 9007199254740993, "page_id": 112233445566778,
        "form_id": 1234567890123456789, "ad_id": 120211234567890123,
        "adgroup_id": 120211234567890123, "created_time": 1733870099}},
      {"field": "feed", "value": {"item": "status", "verb": "add"}},
      {"field": "leadgen", "value": {"leadgen_id": "9007199254740995", "page_id": "112233445566778",
        "form_id": "1234567890123456789", "created_time": 1733870098}}
    ]},
    {"id": "998877665544332", "time": 1733870101, "changes": [
      {"field": "leadgen", "value": {"leadgen_id": 9007199254740997, "page_id": 998877665544332,
        "form_id": 555, "created_time": 1733870097}}
    ]},
    {"id": "998877665544332", "time": 1733870102, "messaging": [{"message": {"text": "hi"}}]}
  ]
}"""


class TestHandshake:
    def test_returns_challenge_for_matching_token(self) -> None:
        params = {
            "hub.mode": "subscribe",
            "hub.challenge": "1158201444",
            "hub.verify_token": "meatyhamhock",
        }
        assert meta.verify_handshake(params, "meatyhamhock") == "1158201444"

    @pytest.mark.parametrize(
        ("params", "code"),
        [
            ({"hub.challenge": "1", "hub.verify_token": "tok"}, "bad_handshake"),
            (
                {"hub.mode": "unsubscribe", "hub.challenge": "1", "hub.verify_token": "tok"},
                "bad_handshake",
            ),
            (
                {"hub.mode": "subscribe", "hub.challenge": "1", "hub.verify_token": "nope"},
                "bad_verify_token",
            ),
            ({"hub.mode": "subscribe", "hub.challenge": "1"}, "bad_verify_token"),
        ],
    )
    def test_refuses_with_403(self, params: dict[str, str], code: str) -> None:
        with pytest.raises(SourceError) as caught:
            meta.verify_handshake(params, "tok")
        assert (caught.value.status, caught.value.code) == (403, code)

    def test_refuses_markup_in_challenge(self) -> None:
        params = {
            "hub.mode": "subscribe",
            "hub.challenge": "<script>alert(1)</script>",
            "hub.verify_token": "tok",
        }
        with pytest.raises(SourceError) as caught:
            meta.verify_handshake(params, "tok")
        assert caught.value.field == "hub.challenge"

    def test_unconfigured_token_never_matches_an_empty_one(self) -> None:
        params = {"hub.mode": "subscribe", "hub.challenge": "1", "hub.verify_token": ""}
        with pytest.raises(SourceError) as caught:
            meta.verify_handshake(params, "")
        assert caught.value.status == 403


class TestSignature:
    def test_accepts_signature_over_exact_raw_bytes(self) -> None:
        header = meta.expected_signature(DASHBOARD_TEST_PAYLOAD, APP_SECRET)
        meta.verify_signature(DASHBOARD_TEST_PAYLOAD, header, APP_SECRET)
        meta.verify_signature(
            DASHBOARD_TEST_PAYLOAD, header.upper().replace("SHA256", "sha256"), APP_SECRET
        )

    def test_missing_header_is_401(self) -> None:
        for header in (None, "", "  "):
            with pytest.raises(SourceError) as caught:
                meta.verify_signature(DASHBOARD_TEST_PAYLOAD, header, APP_SECRET)
            assert (caught.value.status, caught.value.code) == (401, "missing_signature")

    def test_forged_signature_is_403(self) -> None:
        forged = meta.expected_signature(DASHBOARD_TEST_PAYLOAD, "someone-elses-secret")
        with pytest.raises(SourceError) as caught:
            meta.verify_signature(DASHBOARD_TEST_PAYLOAD, forged, APP_SECRET)
        assert (caught.value.status, caught.value.code) == (403, "bad_signature")
        assert caught.value.field == "X-Hub-Signature-256"

    def test_reserialized_body_does_not_verify(self) -> None:
        header = meta.expected_signature(DASHBOARD_TEST_PAYLOAD, APP_SECRET)
        reencoded = json.dumps(json.loads(DASHBOARD_TEST_PAYLOAD), separators=(",", ":")).encode()
        with pytest.raises(SourceError):
            meta.verify_signature(reencoded, header, APP_SECRET)

    def test_sha1_header_is_malformed(self) -> None:
        with pytest.raises(SourceError) as caught:
            meta.verify_signature(DASHBOARD_TEST_PAYLOAD, "sha1=abc", APP_SECRET)
        assert caught.value.code == "malformed_signature"


class TestNotifications:
    def test_dashboard_test_payload(self) -> None:
        [notification] = meta.parse_notifications(DASHBOARD_TEST_PAYLOAD)
        assert notification == MetaLeadNotification(
            leadgen_id="444444444",
            page_id="444444444",
            form_id="444444444",
            ad_id="444444444",
            adgroup_id="44444444",
            created_at=datetime.fromtimestamp(1733870000, tz=UTC),
        )

    def test_batched_entries_keep_large_ids_exact(self) -> None:
        notifications = meta.parse_notifications(BATCHED_PAYLOAD)
        assert [n.leadgen_id for n in notifications] == [
            "9007199254740993",
            "9007199254740995",
            "9007199254740997",
        ]
        first = notifications[0]
        assert first.form_id == "1234567890123456789"
        assert first.ad_id == "120211234567890123"
        assert notifications[2].page_id == "998877665544332"

    def test_duplicate_leadgen_ids_in_one_batch_collapse(self) -> None:
        change = {"field": "leadgen", "value": {"leadgen_id": "42", "page_id": "7"}}
        body = json.dumps(
            {"object": "page", "entry": [{"id": "7", "changes": [change, change]}]}
        ).encode()
        assert [n.leadgen_id for n in meta.parse_notifications(body)] == ["42"]

    def test_non_page_object_is_refused(self) -> None:
        with pytest.raises(SourceError) as caught:
            meta.parse_notifications(b'{"object": "user", "entry": []}')
        assert (caught.value.status, caught.value.field) == (400, "object")

    def test_missing_leadgen_id_names_the_path(self) -> None:
        body = b'{"object": "page", "entry": [{"changes": [{"field": "leadgen", "value": {}}]}]}'
        with pytest.raises(SourceError) as caught:
            meta.parse_notifications(body)
        assert caught.value.field == "entry[0].changes[0].value.leadgen_id"

    def test_malformed_json_is_400(self) -> None:
        with pytest.raises(SourceError) as caught:
            meta.parse_notifications(b'{"object": "page", "entry": [')
        assert (caught.value.status, caught.value.code) == (400, "malformed_json")


def graph_lead_body(leadgen_id: str) -> bytes:
    # Built as text so the ids stay bare 64-bit JSON numbers, as a strict client must handle.
    return (
        (
            '{"id": "LEADGEN_ID", "created_time": "2024-12-10T22:33:20+0000", '
            '"ad_id": 120211234567890123, "adset_id": "120211234567890456", '
            '"form_id": "1234567890123456789", "campaign_id": 120211234567890789, '
            '"is_organic": false, "platform": "ig", '
            '"field_data": ['
            '{"name": "email", "values": ["jo@example.com"]}, '
            '{"name": "full_name", "values": ["Jo Bloggs"]}, '
            '{"name": "phone_number", "values": ["+447700900123"]}, '
            '{"name": "company_name", "values": ["Acme Ltd"]}, '
            '{"name": "job_title", "values": ["CTO"]}, '
            '{"name": "zip_code", "values": ["SW1A 1AA"]}, '
            '{"name": "city", "values": ["London"]}, '
            '{"name": "country", "values": ["GB"]}, '
            '{"name": "which_products_interest_you?", "values": ["Pumps", "Valves"]}'
            "]}"
        )
        .replace("LEADGEN_ID", leadgen_id)
        .encode()
    )


class TestGraphApiClient:
    async def test_fetches_and_maps_documented_lead_shape(self, stub_api) -> None:
        leadgen_id = next_leadgen_id()
        stub_api.reply(f"/v21.0/{leadgen_id}", raw=graph_lead_body(leadgen_id))
        notification = MetaLeadNotification(
            leadgen_id=leadgen_id, page_id="112233445566778", adgroup_id="120211234567890123"
        )
        async with GraphApiClient(
            "page-token", base_url=f"{stub_api.url}/v21.0", app_secret=APP_SECRET
        ) as client:
            lead = await client.fetch_lead(leadgen_id, notification=notification)

        assert lead.source == "meta"
        assert lead.external_id == leadgen_id
        assert lead.fields == {
            "email": "jo@example.com",
            "full_name": "Jo Bloggs",
            "phone": "+447700900123",
            "company": "Acme Ltd",
            "job_title": "CTO",
            "postal_code": "SW1A 1AA",
            "city": "London",
            "country": "GB",
            "which_products_interest_you?": "Pumps, Valves",
        }
        assert lead.ad_id == "120211234567890123"
        assert lead.adgroup_id == "120211234567890456"
        assert lead.campaign_id == "120211234567890789"
        assert lead.form_id == "1234567890123456789"
        assert lead.created_at == datetime(2024, 12, 10, 22, 33, 20, tzinfo=UTC)
        assert lead.raw_platform == {
            "page_id": "112233445566778",
            "meta_adgroup_id": "120211234567890123",
            "platform": "ig",
            "is_organic": "false",
        }

        [request] = stub_api.requests_to(f"/v21.0/{leadgen_id}")
        assert request.headers["authorization"] == "Bearer page-token"
        assert "access_token" not in request.query
        fields = request.query["fields"][0].split(",")
        for wanted in (
            "field_data",
            "created_time",
            "ad_id",
            "form_id",
            "campaign_id",
            "is_organic",
            "platform",
        ):
            assert wanted in fields
        assert len(request.query["appsecret_proof"][0]) == 64

    async def test_per_call_token_overrides_default(self, stub_api) -> None:
        leadgen_id = next_leadgen_id()
        stub_api.reply(f"/v21.0/{leadgen_id}", raw=graph_lead_body(leadgen_id))
        async with GraphApiClient("default", base_url=f"{stub_api.url}/v21.0") as client:
            await client.fetch_lead(leadgen_id, access_token="other-page-token")
        [request] = stub_api.requests_to(f"/v21.0/{leadgen_id}")
        assert request.headers["authorization"] == "Bearer other-page-token"
        assert "appsecret_proof" not in request.query

    @pytest.mark.parametrize(
        ("status", "body", "retryable", "code"),
        [
            (
                500,
                {"error": {"message": "oops", "code": 2, "is_transient": True}},
                True,
                "graph_error_2",
            ),
            (503, "<html>unavailable</html>", True, "http_503"),
            (429, {"error": {"message": "slow down", "code": 613}}, True, "graph_error_613"),
            (
                400,
                {
                    "error": {
                        "message": "Unsupported get request",
                        "type": "GraphMethodException",
                        "code": 100,
                        "error_subcode": 33,
                    }
                },
                False,
                "graph_error_100",
            ),
            (
                400,
                {"error": {"message": "Application request limit reached", "code": 4}},
                True,
                "graph_error_4",
            ),
            (
                400,
                {"error": {"message": "LeadGen BUC limit", "code": 80005}},
                True,
                "graph_error_80005",
            ),
            (
                401,
                {
                    "error": {
                        "message": "Error validating access token",
                        "type": "OAuthException",
                        "code": 190,
                    }
                },
                False,
                "graph_error_190",
            ),
            (
                403,
                {"error": {"message": "no leads_retrieval", "code": 200}},
                False,
                "graph_error_200",
            ),
        ],
    )
    async def test_failures_are_classified(
        self, stub_api, status: int, body, retryable: bool, code: str
    ) -> None:
        leadgen_id = next_leadgen_id()
        raw = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        stub_api.reply(f"/v21.0/{leadgen_id}", status, raw=raw, headers={"Retry-After": "7"})
        async with GraphApiClient("t", base_url=f"{stub_api.url}/v21.0") as client:
            with pytest.raises(RetrievalError) as caught:
                await client.fetch_lead(leadgen_id)
        assert caught.value.retryable is retryable
        assert caught.value.status == status
        assert caught.value.code == code
        assert caught.value.retry_after == 7.0

    async def test_garbled_success_is_retryable(self, stub_api) -> None:
        leadgen_id = next_leadgen_id()
        stub_api.reply(f"/v21.0/{leadgen_id}", raw=b'{"id": "1"')
        async with GraphApiClient("t", base_url=f"{stub_api.url}/v21.0") as client:
            with pytest.raises(RetrievalError) as caught:
                await client.fetch_lead(leadgen_id)
        assert (caught.value.retryable, caught.value.code) == (True, "bad_response")

    async def test_connection_refused_is_retryable(self, closed_port_url: str) -> None:
        async with GraphApiClient("t", base_url=f"{closed_port_url}/v21.0") as client:
            with pytest.raises(RetrievalError) as caught:
                await client.fetch_lead("123")
        assert (caught.value.retryable, caught.value.code) == (True, "network_error")

    async def test_timeout_is_retryable(self, stub_api) -> None:
        leadgen_id = next_leadgen_id()
        stub_api.reply(f"/v21.0/{leadgen_id}", raw=graph_lead_body(leadgen_id), delay=1.0)
        async with GraphApiClient("t", base_url=f"{stub_api.url}/v21.0", timeout=0.2) as client:
            with pytest.raises(RetrievalError) as caught:
                await client.fetch_lead(leadgen_id)
        assert (caught.value.retryable, caught.value.code) == (True, "timeout")

    async def test_non_numeric_id_is_refused_without_a_call(self, stub_api) -> None:
        async with GraphApiClient("t", base_url=f"{stub_api.url}/v21.0") as client:
            with pytest.raises(RetrievalError) as caught:
                await client.fetch_lead("../me")
        assert (caught.value.retryable, caught.value.code) == (False, "invalid_id")
        assert stub_api.requests_to("/v21.0/../me") == []
