"""Each destination type gets the documented request shape; failures are retried or
dead-lettered; a re-drive after a config fix delivers once. Real broker, real HTTP."""

from __future__ import annotations

from email import message_from_bytes
from typing import Any

from aiosmtpd.controller import Controller

from shared.events import LeadDeliveryFailed, decode
from tests.conftest import consume_all, eventually
from tests.integration.router.crm_standins import (
    HubSpotStandIn,
    PipedriveStandIn,
    SalesforceStandIn,
    SlackStandIn,
    WebhookReceiver,
    wait_started,
)
from tests.integration.router.support import (
    ADMIN,
    ADMIN_TOKEN,
    publish,
    scored,
    settled,
    write_config,
)


class Inbox:
    """aiosmtpd handler keeping every message."""

    def __init__(self) -> None:
        self.messages: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(message_from_bytes(envelope.original_content or envelope.content))
        return "250 OK"


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _deliveries(router, lead_id: str) -> list[dict[str, Any]]:
    response = await router.client.get(f"/v1/leads/{lead_id}/assignments")
    return [d for a in response.json()["assignments"] for d in a["deliveries"]]


async def _all_delivered(router, lead_ids: list[str], count: int) -> bool:
    found = [d for lead_id in lead_ids for d in await _deliveries(router, lead_id)]
    return len(found) == count and all(d["status"] == "delivered" for d in found)


async def test_every_destination_type_gets_its_documented_shape(
    broker, settings_factory, running_service, tmp_path
):
    hubspot, salesforce, pipedrive, slack = (
        HubSpotStandIn(),
        SalesforceStandIn(),
        PipedriveStandIn(),
        SlackStandIn(),
    )
    await wait_started(hubspot, salesforce, pipedrive, slack)
    inbox = Inbox()
    smtp = Controller(inbox, hostname="127.0.0.1", port=_free_port())
    smtp.start()
    try:
        known = "returning@example.com"
        salesforce.leads["00Q000000000000042"] = {"Email": known, "LastName": "Old"}
        config = write_config(
            tmp_path,
            {
                "public_url": "https://router.example.com",
                "reps": {
                    "rep-a": {
                        "name": "Alice",
                        "email": "alice@example.com",
                        "owner_ids": {"hubspot": "9001", "sf": "005A", "pd": "77", "slack": "U1"},
                    },
                },
                "rules": [
                    {
                        "id": "all",
                        "reps": ["rep-a"],
                        "destinations": ["hubspot", "sf", "pd", "slack", "mail"],
                    }
                ],
                "destinations": {
                    "hubspot": {"type": "hubspot", "base_url": hubspot.url, "token": "hs-token"},
                    "sf": {
                        "type": "salesforce",
                        "instance_url": salesforce.url,
                        "token": "sf-token",
                    },
                    "pd": {"type": "pipedrive", "base_url": pipedrive.url, "token": "pd-token"},
                    "slack": {"type": "slack", "webhook_url": slack.webhook_url},
                    "mail": {
                        "type": "email",
                        "port": smtp.port,
                        "from": "leadflow <l@example.com>",
                    },
                },
            },
        )
        settings = settings_factory(kafka_bootstrap=broker.bootstrap, config=config)
        leads = [scored(email="NEW@example.com".lower()), scored(email=known)]
        async with running_service("router", settings) as router:
            await publish(broker.bootstrap, leads)
            ids = [lead.lead_id for lead in leads]
            await eventually(lambda: _all_delivered(router, ids, 10), timeout=20)
            first = await router.client.get(f"/v1/leads/{ids[0]}/assignments")
    finally:
        smtp.stop()
        for stand_in in (hubspot, salesforce, pipedrive, slack):
            stand_in.stop()

    # HubSpot: batch upsert keyed on email, bearer token, owner mapped.
    inputs = [i for r in hubspot.upsert_requests() for i in r.json()["inputs"]]
    assert {i["id"] for i in inputs} == {"new@example.com", known}
    assert all(i["idProperty"] == "email" for i in inputs)
    assert inputs[0]["properties"]["hubspot_owner_id"] == "9001"
    assert inputs[0]["properties"]["firstname"] == "Ada"
    assert hubspot.upsert_requests()[0].headers["authorization"] == "Bearer hs-token"
    assert set(hubspot.contacts) == {"new@example.com", known}
    # Salesforce: the new lead is created; the known one matched a duplicate rule and is updated.
    created = [r.json() for r in salesforce.calls("POST") if r.status == 201]
    assert [c["Email"] for c in created] == ["new@example.com"]
    assert created[0]["OwnerId"] == "005A" and created[0]["Company"] == "Analytical Engines"
    assert [r.status for r in salesforce.calls("PATCH")] == [204]
    assert salesforce.leads["00Q000000000000042"]["LastName"] == "Lovelace"
    assert len(salesforce.leads) == 2
    # Pipedrive: token in the header only; a person with email, then a lead linked to it.
    assert all(r.headers["x-api-token"] == "pd-token" for r in pipedrive.requests)
    persons = [r.json() for r in pipedrive.calls("POST", "/v1/persons")]
    assert persons[0]["email"][0]["primary"] is True and persons[0]["owner_id"] == 77
    assert len(pipedrive.leads) == 2
    assert {lead["person_id"] for lead in pipedrive.leads.values()} == set(pipedrive.persons)
    # Slack: a message with the acknowledgement link button.
    messages = slack.messages()
    assert len(messages) == 2
    assert "<@U1>" in messages[0]["text"]
    button = messages[0]["blocks"][1]["elements"][0]["url"]
    assert button.startswith("https://router.example.com/v1/assignments/")
    # Email to the rep, with the link.
    assert len(inbox.messages) == 2
    assert inbox.messages[0]["To"] == "alice@example.com"
    assert (
        "https://router.example.com/v1/assignments/"
        in inbox.messages[0].get_payload(decode=True).decode()
    )
    # External ids are kept on the deliveries.
    external = {
        d["destination"]: d["external_id"] for d in first.json()["assignments"][0]["deliveries"]
    }
    assert external["hubspot"] == hubspot.contacts["new@example.com"]["id"]
    assert external["sf"].startswith("00Q")


async def test_429_and_5xx_bursts_are_retried_and_delivered_once(
    broker, settings_factory, running_service, tmp_path
):
    hubspot, hook = HubSpotStandIn(), WebhookReceiver(secret="k")
    await wait_started(hubspot, hook)
    try:
        hubspot.fail(
            429, times=1, retry_after=1, body={"status": "error", "errorType": "RATE_LIMIT"}
        )
        hubspot.fail(503, times=2)
        hook.fail(500, times=3)
        config = write_config(
            tmp_path,
            {
                "reps": {"a": {}},
                "rules": [{"id": "all", "reps": ["a"], "destinations": ["hubspot", "hook"]}],
                "destinations": {
                    "hubspot": {"type": "hubspot", "base_url": hubspot.url, "token": "hs-token"},
                    "hook": {"type": "webhook", "url": hook.hook_url, "secret": "k"},
                },
                "delivery": {"backoff_seconds": 0.05, "backoff_max_seconds": 0.2},
            },
        )
        settings = settings_factory(kafka_bootstrap=broker.bootstrap, config=config)
        lead = scored()
        async with running_service("router", settings) as router:
            await publish(broker.bootstrap, [lead])
            await eventually(lambda: _all_delivered(router, [lead.lead_id], 2), timeout=20)
            deliveries = {d["destination"]: d for d in await _deliveries(router, lead.lead_id)}
    finally:
        hubspot.stop()
        hook.stop()
    statuses = [r.status for r in hubspot.upsert_requests()]
    assert statuses == [429, 503, 503, 200]
    assert list(hubspot.contacts) == [lead.contact.email]
    assert [r.status for r in hook.calls("POST")] == [500, 500, 500, 200]
    assert hook.lead_counts() == {lead.lead_id: 1}
    # The 429 is not an attempt of its own: the destination asked us to wait.
    assert deliveries["hubspot"]["attempts"] == 3
    assert deliveries["hook"]["attempts"] == 4


async def test_permanent_4xx_is_dead_lettered_and_redrive_delivers_after_a_fix(
    backend, broker, settings_factory, running_service, tmp_path
):
    salesforce = SalesforceStandIn(token="right-token")
    await wait_started(salesforce)

    def routing(token: str) -> dict[str, Any]:
        return {
            "reps": {"a": {}},
            "rules": [{"id": "all", "reps": ["a"], "destinations": ["sf"]}],
            "destinations": {
                "sf": {"type": "salesforce", "instance_url": salesforce.url, "token": token}
            },
        }

    settings = settings_factory(
        backend,
        kafka_bootstrap=broker.bootstrap,
        config=write_config(tmp_path, routing("expired-token")),
        admin_token=ADMIN_TOKEN,
    )
    lead = scored()
    try:
        async with running_service("router", settings) as router:
            await publish(broker.bootstrap, [lead])

            async def dead_lettered() -> list[dict[str, Any]]:
                response = await router.client.get("/v1/dlq", headers=ADMIN)
                return response.json()["deliveries"]

            (failed,) = await eventually(dead_lettered, timeout=15)
            unauthorized = await router.client.get("/v1/dlq")
            records = await consume_all(broker.bootstrap, "leads.routed", 2, timeout=10)
        fixed = settings.model_copy(
            update={"config": write_config(tmp_path, routing("right-token"))}
        )
        async with running_service("router", fixed, migrate=False) as router:
            redriven = await router.client.post(
                f"/v1/dlq/{failed['delivery_id']}/redrive", headers=ADMIN
            )
            await eventually(lambda: _all_delivered(router, [lead.lead_id], 1), timeout=10)
            again = await router.client.post(
                f"/v1/dlq/{failed['delivery_id']}/redrive", headers=ADMIN
            )
            left = (await router.client.get("/v1/dlq", headers=ADMIN)).json()["deliveries"]
            await settled(router)
    finally:
        salesforce.stop()
    assert failed["attempts"] == 1 and failed["last_status"] == 401
    assert "INVALID_SESSION_ID" in failed["last_error"]
    assert unauthorized.status_code == 401
    events = [decode(r.value, r.headers).data for r in records]
    (failure,) = [e for e in events if isinstance(e, LeadDeliveryFailed)]
    assert (failure.lead_id, failure.destination, failure.attempts) == (lead.lead_id, "sf", 1)
    assert redriven.status_code == 202
    assert again.status_code == 409
    assert left == []
    assert [r.status for r in salesforce.calls("POST")] == [401, 201]
    assert len(salesforce.leads) == 1
