"""The campaign of campaign.py, driven through the real broker into a running insights
service, gives exactly the expected report on SQLite and PostgreSQL; redelivery
changes nothing; CSV carries the same numbers; a bad window is a 422 naming the field.
"""

from __future__ import annotations

import csv
import io
import uuid
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from aiokafka import AIOKafkaProducer
from prometheus_client import REGISTRY

from services.insights import store
from shared.events import Envelope, Event, LeadCaptured, LeadConverted, encode
from shared.events.topics import TOPICS
from tests.conftest import eventually
from tests.integration.insights.campaign import (
    CONFIG_YAML,
    EXPECTED_CHANNELS,
    EXPECTED_TOTALS,
    POSTED_SPEND,
    SINCE,
    UNTIL,
    build_campaign,
)

pytestmark = pytest.mark.broker
ADMIN = {"Authorization": "Bearer campaign-admin"}


async def publish(bootstrap: str, envelopes: list[Envelope[Event]]) -> None:
    """Send real CloudEvents, later topics first: a lead's routing and outcomes tend to
    reach insights before its capture (one lead's events on one topic keep their order)."""
    order = {topic: i for i, topic in enumerate(reversed(TOPICS))}
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for envelope in sorted(envelopes, key=lambda e: order[e.topic]):
            key, value, headers = encode(envelope)
            await producer.send_and_wait(envelope.topic, value, key=key, headers=headers)
    finally:
        await producer.stop()


def duplicates_seen() -> float:
    return sum(
        REGISTRY.get_sample_value(
            "leadflow_events_consumed_total",
            {"service": "insights", "topic": topic, "handler": "-", "outcome": "duplicate"},
        )
        or 0.0
        for topic in TOPICS
    )


async def handled(svc: Any, event_ids: list[str]) -> bool:
    async with svc.runtime.uow() as uow:
        rows = await uow.session.execute(
            sa.select(sa.func.count()).where(store.inbox.c.event_id.in_(event_ids))
        )
        return rows.scalar_one() == len(event_ids)


async def test_campaign_gives_the_exact_report_and_redelivery_changes_nothing(
    backend: str, broker: Any, settings_factory: Any, running_service: Any, tmp_path: Path
) -> None:
    config = tmp_path / "leadflow.yaml"
    config.write_text(CONFIG_YAML)
    settings = settings_factory(
        backend, kafka_bootstrap=broker.bootstrap, config=config, admin_token="campaign-admin"
    )
    campaign = build_campaign()
    params = {"since": SINCE, "until": UNTIL}
    async with running_service("insights", settings) as svc:
        for channel, body in POSTED_SPEND:
            response = await svc.client.post(
                f"/v1/channels/{channel}/spend", json=body, headers=ADMIN
            )
            assert response.status_code == 200, response.text
        await publish(broker.bootstrap, campaign.envelopes)

        async def report_matches() -> dict[str, Any] | None:
            report = (await svc.client.get("/v1/reports/channels", params=params)).json()
            expected = (EXPECTED_CHANNELS, EXPECTED_TOTALS)
            return report if (report["channels"], report["totals"]) == expected else None

        try:
            first = await eventually(report_matches, timeout=20)
        except AssertionError:
            report = (await svc.client.get("/v1/reports/channels", params=params)).json()
            assert report["channels"] == EXPECTED_CHANNELS  # shows the difference
            assert report["totals"] == EXPECTED_TOTALS
            raise
        assert first["currency"] == "USD"
        assert (first["first_day"], first["last_day"]) == (SINCE, UNTIL)
        assert first["since"].startswith("2024-11-01T00:00:00")
        assert first["until"].startswith("2024-11-11T00:00:00")

        # Redelivery: every event again (same ids), plus the same facts under new ids —
        # a CRM re-posting a won deal, capture re-announcing a submission.
        before = duplicates_seen()
        won = next(e for e in campaign.envelopes if isinstance(e.data, LeadConverted))
        touch = next(e for e in campaign.envelopes if isinstance(e.data, LeadCaptured))
        again = [Envelope(data=won.data, source="leadflow/router", id=str(uuid.uuid4()))]
        again.append(Envelope(data=touch.data, source="leadflow/capture", id=str(uuid.uuid4())))
        await publish(broker.bootstrap, [*campaign.envelopes, *again])
        await eventually(lambda: duplicates_seen() - before >= len(campaign.envelopes), 20)
        await eventually(lambda: handled(svc, [e.id for e in again]), 20)
        assert (await svc.client.get("/v1/reports/channels", params=params)).json() == first

        # The same numbers as CSV, one line per channel.
        response = await svc.client.get(
            "/v1/reports/channels", params=params, headers={"Accept": "text/csv"}
        )
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/csv")
        rows = list(csv.DictReader(io.StringIO(response.text)))
        assert [r["channel"] for r in rows] == [c["channel"] for c in EXPECTED_CHANNELS]
        facebook, google, radio, vendor = rows
        assert facebook["spend"] == "513.58" and facebook["cost_per_lead"] == "171.19"
        assert facebook["ctr"] == "0.0233" and facebook["impressions"] == "15000"
        assert google["revenue"] == "4800.00" and google["speed_to_lead_median_seconds"] == "60.0"
        assert radio["cost_per_sales_ready"] == "" and radio["leads"] == "1"
        assert vendor["erased"] == "1" and vendor["cost_per_conversion"] == ""

        # A bad window names its field and changes nothing.
        bad = await svc.client.get("/v1/reports/channels", params={"since": "last tuesday"})
        assert bad.status_code == 422
        assert bad.json()["error"]["field"] == "since"
        backwards = await svc.client.get(
            "/v1/reports/channels", params={"since": UNTIL, "until": SINCE}
        )
        assert backwards.status_code == 422
        assert backwards.json()["error"]["field"] == "until"
        assert (await svc.client.get("/v1/reports/channels", params=params)).json() == first
