"""Router on real parts: leads.scored → assignment → file and signed webhook, on both databases."""

from __future__ import annotations

from collections import Counter

from prometheus_client import REGISTRY

from shared import metrics
from shared.events import LeadRouted, decode
from tests.conftest import consume_all, eventually
from tests.integration.router.crm_standins import WebhookReceiver
from tests.integration.router.support import (
    ADMIN_TOKEN,
    file_lines,
    publish,
    scored,
    write_config,
)


def _speed_count(stage: str) -> float:
    return REGISTRY.get_sample_value("leadflow_speed_to_lead_seconds_count", {"stage": stage}) or 0


def _handled() -> float:
    counter = metrics.events_consumed_total.labels(
        "router", "leads.scored", "handle_lead_scored", "handled"
    )
    return counter._value.get()


async def test_sales_ready_leads_reach_file_and_webhook_once(
    backend, broker, settings_factory, running_service, tmp_path
):
    routed_file = tmp_path / "out" / "routed.jsonl"
    with WebhookReceiver(secret="s3cret") as receiver:
        config = write_config(
            tmp_path,
            {
                "reps": {"rep-a": {"name": "A"}, "rep-b": {"name": "B"}},
                "rules": [
                    {"id": "all", "reps": ["rep-a", "rep-b"], "destinations": ["file", "hook"]}
                ],
                "destinations": {
                    "file": {"type": "file", "path": str(routed_file)},
                    "hook": {"type": "webhook", "url": receiver.hook_url, "secret": "s3cret"},
                },
            },
        )
        settings = settings_factory(
            backend, kafka_bootstrap=broker.bootstrap, config=config, admin_token=ADMIN_TOKEN
        )
        hot = [scored(), scored()]
        cold = scored(sales_ready=False)
        test_lead = scored(is_test=True)
        already = scored(became_sales_ready=False)
        assigned, delivered = _speed_count("assigned"), _speed_count("delivered")
        async with running_service("router", settings) as router:
            await publish(broker.bootstrap, [*hot, cold, test_lead, already])
            await eventually(lambda: len(file_lines(routed_file)) >= 2, timeout=15)
            await eventually(lambda: len(receiver.accepted()) >= 2, timeout=10)
            records = await consume_all(broker.bootstrap, "leads.routed", 2, timeout=5)
            response = await router.client.get(f"/v1/leads/{hot[0].lead_id}/assignments")
            # A repeated sales-ready signal for a lead that has an owner routes nothing.
            handled = _handled()
            await publish(broker.bootstrap, [hot[0]])
            await eventually(lambda: _handled() > handled, timeout=10)
            await router.runtime.relay.publish_batch()
            lines = file_lines(routed_file)
            await eventually(lambda: _speed_count("delivered") - delivered >= 2, timeout=5)
            clocked = (_speed_count("assigned") - assigned, _speed_count("delivered") - delivered)
            again = await consume_all(broker.bootstrap, "leads.routed", 3, timeout=1)

    assert len(again) == 2
    assert clocked == (2, 2)  # speed-to-lead: assigned and delivered, once per lead
    assert sorted(line["lead_id"] for line in lines) == sorted(h.lead_id for h in hot)
    assert Counter(receiver.lead_counts()) == {h.lead_id: 1 for h in hot}
    assert receiver.bad_signatures == 0
    assert {line["rep_id"] for line in lines} == {"rep-a", "rep-b"}
    assert lines[0]["lead"]["email"] == hot[0].contact.email or lines[1]["lead"]["email"]
    events = [decode(r.value, r.headers).data for r in records]
    assert all(isinstance(e, LeadRouted) for e in events)
    assert {e.lead_id for e in events} == {h.lead_id for h in hot}
    assert response.status_code == 200
    (assignment,) = response.json()["assignments"]
    assert assignment["reason"]["rule_id"] == "all"
    assert assignment["reason"]["chosen"] == assignment["rep_id"]
    assert [c["rep_id"] for c in assignment["reason"]["candidates"]] == ["rep-a", "rep-b"]
    assert {d["destination"]: d["status"] for d in assignment["deliveries"]} == {
        "file": "delivered",
        "hook": "delivered",
    }
