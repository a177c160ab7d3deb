"""Posted spend: the admin token, validation naming the field, replace-per-day; negotiation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.integration.insights.campaign import CONFIG_YAML

pytestmark = pytest.mark.broker
TOKEN = "insights-admin"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
NOV_3 = {"since": "2024-11-03", "until": "2024-11-03"}


@pytest.fixture
async def insights(broker: Any, settings_factory: Any, running_service: Any, tmp_path: Path) -> Any:
    config = tmp_path / "leadflow.yaml"
    config.write_text(CONFIG_YAML)
    settings = settings_factory(
        "sqlite", kafka_bootstrap=broker.bootstrap, config=config, admin_token=TOKEN
    )
    async with running_service("insights", settings) as svc:
        yield svc


async def facebook_on_nov_3(svc: Any) -> dict[str, Any]:
    report = (await svc.client.get("/v1/reports/channels", params=NOV_3)).json()
    return next(r for r in report["channels"] if r["channel"] == "facebook_ads")


async def test_posting_spend_needs_the_admin_token(insights: Any) -> None:
    body = {"date": "2024-11-03", "amount": "10.00"}
    missing = await insights.client.post("/v1/channels/facebook_ads/spend", json=body)
    assert missing.status_code == 401
    assert missing.json()["error"]["field"] == "authorization"
    wrong = await insights.client.post(
        "/v1/channels/facebook_ads/spend", json=body, headers={"Authorization": "Bearer nope"}
    )
    assert wrong.status_code == 403
    assert (await facebook_on_nov_3(insights))["spend"] == "51.67"  # 1550 / 30, unchanged


BAD_SPEND: list[tuple[str, dict[str, Any], str]] = [
    ("facebook_ads", {"date": "2024-11-31", "amount": "1"}, "date"),
    ("facebook_ads", {"date": "2024-11-03", "amount": "-1"}, "amount"),
    ("facebook_ads", {"date": "2024-11-03", "amount": "ten"}, "amount"),
    ("facebook_ads", {"date": "2024-11-03", "amount": "1.00001"}, "amount"),
    ("facebook_ads", {"date": "2024-11-03"}, "amount"),
    ("facebook_ads", {"date": "2024-11-03", "amount": 1, "clicks": -2}, "clicks"),
    (
        "facebook_ads",
        {"date": "2024-11-03", "amount": 1, "impressions": 5, "clicks": 9},
        "clicks",
    ),
    ("facebook_ads", {"date": "2024-11-03", "amount": 1, "cpc": 2}, "cpc"),
    ("bad%20name!", {"date": "2024-11-03", "amount": 1}, "channel"),
]


async def test_bad_spend_is_a_422_naming_the_field_and_changes_nothing(insights: Any) -> None:
    for path, body, field in BAD_SPEND:
        response = await insights.client.post(
            f"/v1/channels/{path}/spend", json=body, headers=ADMIN
        )
        assert response.status_code == 422, (body, response.text)
        assert response.json()["error"]["field"] == field, body
    assert (await facebook_on_nov_3(insights))["spend"] == "51.67"


async def test_a_posted_day_replaces_the_earlier_post_and_the_config(insights: Any) -> None:
    first = await insights.client.post(
        "/v1/channels/facebook_ads/spend",
        json={"date": "2024-11-03", "amount": 99.5, "impressions": 100, "clicks": 7},
        headers=ADMIN,
    )
    assert first.status_code == 200
    assert first.json() == {
        "channel": "facebook_ads",
        "date": "2024-11-03",
        "amount": "99.50",
        "impressions": 100,
        "clicks": 7,
    }
    assert (await facebook_on_nov_3(insights))["spend"] == "99.50"
    second = await insights.client.post(
        "/v1/channels/facebook_ads/spend",
        json={"date": "2024-11-03", "amount": "0.125"},
        headers=ADMIN,
    )
    assert second.json()["amount"] == "0.125"
    row = await facebook_on_nov_3(insights)
    assert (row["spend"], row["impressions"], row["clicks"]) == ("0.13", None, None)

    new_channel = await insights.client.post(
        "/v1/channels/podcast.ads/spend", json={"date": "2024-11-03", "amount": 40}, headers=ADMIN
    )
    assert new_channel.status_code == 200
    report = (await insights.client.get("/v1/reports/channels", params=NOV_3)).json()
    podcast = next(r for r in report["channels"] if r["channel"] == "podcast.ads")
    assert (podcast["spend"], podcast["leads"], podcast["cost_per_lead"]) == ("40.00", 0, None)


NEGOTIATION = [
    ("text/csv", "", True),
    ("text/csv, */*;q=0.8", "", True),
    ("application/json, text/csv", "", False),
    ("application/json;q=0.5, text/csv", "", True),
    ("*/*", "", False),
    ("", "", False),
    ("application/json", "&format=csv", True),
    ("text/csv", "&format=json", False),
]


async def test_csv_or_json_by_accept_header_or_format(insights: Any) -> None:
    for accept, query, csv in NEGOTIATION:
        response = await insights.client.get(
            f"/v1/reports/channels?since=2024-11-03{query}", headers={"Accept": accept}
        )
        assert response.status_code == 200
        kind = response.headers["content-type"]
        assert kind.startswith("text/csv" if csv else "application/json"), (accept, query)
        if csv:
            assert response.text.startswith("channel,label,impressions,clicks,ctr,leads,")
    unknown = await insights.client.get("/v1/reports/channels?format=xlsx")
    assert unknown.status_code == 422
    assert unknown.json()["error"]["field"] == "format"
