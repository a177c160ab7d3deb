"""The router's HTTP surface: acknowledgement links, outcomes (API and HubSpot deal webhook),
admin tokens, and erasure arriving over Kafka."""

from __future__ import annotations

import time
from decimal import Decimal
from urllib.parse import parse_qs, urlparse

import orjson

from services.router import store
from services.router.outcomes import hubspot_signature
from shared.events import LeadConverted, LeadDisqualified, LeadErased, decode
from tests.conftest import consume_all, eventually
from tests.integration.router.crm_standins import HubSpotStandIn, SlackStandIn, wait_started
from tests.integration.router.support import (
    ADMIN,
    ADMIN_TOKEN,
    publish,
    scored,
    settled,
    write_config,
)

CLIENT_SECRET = "hubspot-app-secret"


async def test_ack_link_outcomes_and_erasure(broker, settings_factory, running_service, tmp_path):
    hubspot, slack = HubSpotStandIn(), SlackStandIn()
    await wait_started(hubspot, slack)
    config = write_config(
        tmp_path,
        {
            "public_url": "http://testserver",
            "reps": {"a": {"owner_ids": {"slack": "U1"}}},
            "rules": [{"id": "all", "reps": ["a"], "destinations": ["hubspot", "slack"]}],
            "destinations": {
                "hubspot": {"type": "hubspot", "base_url": hubspot.url, "token": "hs-token"},
                "slack": {"type": "slack", "webhook_url": slack.webhook_url},
            },
            "outcomes": {"hubspot_client_secret": CLIENT_SECRET, "hubspot_destination": "hubspot"},
        },
    )
    settings = settings_factory(
        kafka_bootstrap=broker.bootstrap, config=config, admin_token=ADMIN_TOKEN
    )
    won, lost, erased = scored(), scored(), scored()
    try:
        async with running_service("router", settings) as router:
            client = router.client
            await publish(broker.bootstrap, [won, lost, erased])
            await eventually(lambda: len(slack.messages()) == 3 and len(hubspot.contacts) == 3)

            # The rep clicks the link in the Slack message.
            links = [m["blocks"][1]["elements"][0]["url"] for m in slack.messages()]
            link = urlparse(links[0])
            token = parse_qs(link.query)["token"][0]
            assignment_id = link.path.split("/")[3]
            forged = await client.get(f"{link.path}?token={'0' * 40}")
            clicked = await client.get(f"{link.path}?{link.query}")
            twice = await client.post(link.path, json={"token": token})
            shown = await client.get(f"/v1/assignments/{assignment_id}")
            anonymous = await client.post(link.path)
            missing = await client.get("/v1/assignments/nope")

            # Outcomes by API: admin token required; idempotent per outcome id.
            body = {"email": won.contact.email, "outcome": "converted", "value": "4800.00"}
            no_token = await client.post("/v1/outcomes", json=body)
            wrong = await client.post(
                "/v1/outcomes", json=body, headers={"Authorization": "Bearer nope"}
            )
            recorded = await client.post("/v1/outcomes", json=body, headers=ADMIN)
            repeated = await client.post("/v1/outcomes", json=body, headers=ADMIN)
            unknown = await client.post(
                "/v1/outcomes", json={**body, "email": "nobody@example.com"}, headers=ADMIN
            )
            invalid = await client.post(
                "/v1/outcomes", json={"outcome": "converted"}, headers=ADMIN
            )

            # HubSpot: a deal of the `lost` lead's contact moved to closedlost.
            contact_id = hubspot.contacts[lost.contact.email]["id"]
            hubspot.deals["d-7"] = {
                "properties": {"amount": "900", "closed_lost_reason": "no budget"},
                "contacts": [contact_id],
            }
            events = orjson.dumps(
                [
                    {
                        "eventId": 1,
                        "subscriptionType": "deal.propertyChange",
                        "objectId": "d-7",
                        "propertyName": "dealstage",
                        "propertyValue": "closedlost",
                        "occurredAt": int(time.time() * 1000),
                    },
                    {"eventId": 2, "subscriptionType": "contact.creation", "objectId": 5},
                ]
            )
            stamp = str(int(time.time() * 1000))
            url = "http://testserver/v1/webhooks/hubspot"
            signed = {
                "X-HubSpot-Signature-v3": hubspot_signature(
                    CLIENT_SECRET, "POST", url, events, stamp
                ),
                "X-HubSpot-Request-Timestamp": stamp,
                "Content-Type": "application/json",
            }
            deal = await client.post("/v1/webhooks/hubspot", content=events, headers=signed)
            forged_deal = await client.post(
                "/v1/webhooks/hubspot", content=events + b" ", headers=signed
            )
            records = await consume_all(broker.bootstrap, "leads.outcomes", 2, timeout=10)
            kafka_dlq = await client.get("/v1/dlq?topic=leads.scored", headers=ADMIN)
            bad_topic = await client.get("/v1/dlq?topic=leads.nope", headers=ADMIN)

            # Erasure arrives from capture over Kafka.
            await publish(
                broker.bootstrap, [LeadErased(lead_id=erased.lead_id, erased_at=erased.scored_at)]
            )

            async def scrubbed() -> bool:
                async with router.runtime.uow() as uow:
                    row = await store.get_lead(uow.session, erased.lead_id)
                return row is not None and row.erased_at is not None and row.email is None

            await eventually(scrubbed, timeout=10)
            await settled(router)
    finally:
        hubspot.stop()
        slack.stop()

    assert forged.status_code == 403 and "Not acknowledged" in forged.text
    assert clicked.status_code == 200 and "is yours" in clicked.text
    assert twice.status_code == 200 and twice.json()["status"] == "acknowledged"
    assert shown.json()["acknowledged_at"] is not None and shown.json()["sla_due_at"] is None
    assert anonymous.status_code == 401 and anonymous.json()["error"]["field"] == "token"
    assert missing.status_code == 404
    assert no_token.status_code == 401 and wrong.status_code == 403
    assert recorded.status_code == 202 and recorded.json()["status"] == "recorded"
    assert repeated.json()["status"] == "duplicate"
    assert unknown.status_code == 404 and unknown.json()["error"]["field"] == "email"
    assert invalid.status_code == 422
    assert deal.status_code == 200 and deal.json()["outcomes"] == 1
    assert forged_deal.status_code == 403
    assert kafka_dlq.json() == {"topic": "leads.scored.dlq", "dead_letters": []}
    assert bad_topic.status_code == 422 and bad_topic.json()["error"]["field"] == "topic"
    outcomes = [decode(r.value, r.headers).data for r in records]
    converted = [o for o in outcomes if isinstance(o, LeadConverted)]
    disqualified = [o for o in outcomes if isinstance(o, LeadDisqualified)]
    assert [(o.lead_id, o.value) for o in converted] == [(won.lead_id, Decimal("4800.00"))]
    assert [(o.lead_id, o.reason) for o in disqualified] == [(lost.lead_id, "no budget")]
