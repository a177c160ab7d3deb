"""The Grafana dashboard and provisioning: valid, wired to the provisioned datasource, and
querying only metrics that shared/metrics.py declares."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import yaml

from tests.deploy._support import DEPLOY, exposed_metric_names, metric_names_in

GRAFANA = DEPLOY / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "leadflow.json"


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    loaded = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


@pytest.fixture(scope="module")
def datasource_uid() -> str:
    provisioning = yaml.safe_load(
        (GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text(encoding="utf-8")
    )
    assert provisioning["apiVersion"] == 1
    (datasource,) = provisioning["datasources"]
    assert datasource["type"] == "prometheus"
    assert datasource["url"] == "http://prometheus:9090"
    return str(datasource["uid"])


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    for panel in dashboard["panels"]:
        found.append(panel)
        found.extend(panel.get("panels", []))  # collapsed rows keep their panels inside
    return found


def test_dashboard_identity(dashboard: dict[str, Any]) -> None:
    assert dashboard["uid"] == "leadflow-overview"
    assert isinstance(dashboard["schemaVersion"], int) and dashboard["schemaVersion"] >= 36
    assert dashboard["title"]
    assert dashboard.get("id") is None, "provisioned dashboards carry no database id"


def test_dashboard_provider_loads_the_dashboards_folder() -> None:
    provider = yaml.safe_load(
        (GRAFANA / "provisioning" / "dashboards" / "leadflow.yml").read_text(encoding="utf-8")
    )
    assert provider["apiVersion"] == 1
    (entry,) = provider["providers"]
    assert entry["type"] == "file" and entry["options"]["path"]


def test_every_panel_has_a_place_a_datasource_and_queries(
    dashboard: dict[str, Any], datasource_uid: str
) -> None:
    ids = [p["id"] for p in panels(dashboard)]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    occupied: dict[tuple[int, int], str] = {}
    for panel in panels(dashboard):
        grid = panel["gridPos"]
        assert {"h", "w", "x", "y"} <= set(grid), panel["title"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        for cell in (
            (x, y)
            for x in range(grid["x"], grid["x"] + grid["w"])
            for y in range(grid["y"], grid["y"] + grid["h"])
        ):
            assert cell not in occupied, f"{panel['title']} overlaps {occupied[cell]}"
            occupied[cell] = panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": datasource_uid}, panel["title"]
        assert panel["targets"], f"{panel['title']} has no query"
        ref_ids = [t["refId"] for t in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == datasource_uid
            assert target["expr"].strip()


def test_queries_use_only_declared_metrics(dashboard: dict[str, Any]) -> None:
    known = exposed_metric_names()
    for panel in panels(dashboard):
        for target in panel.get("targets", []):
            unknown = metric_names_in(target["expr"]) - known
            assert not unknown, f"{panel['title']}: not in shared/metrics.py: {unknown}"
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            match = re.fullmatch(r"label_values\((\w+),\s*(\w+)\)", variable["query"]["query"])
            assert match and match.group(1) in known, variable["name"]


def test_the_dashboard_covers_what_operators_watch(dashboard: dict[str, Any]) -> None:
    queried = " ".join(t["expr"] for p in panels(dashboard) for t in p.get("targets", []))
    for needle in (
        "sum by (channel) (rate(leadflow_leads_captured_total",
        "sum by (channel) (rate(leadflow_sales_ready_total",
        "leadflow_leads_routed_total",
        "histogram_quantile(0.5, sum by (le, stage) (rate(leadflow_speed_to_lead_seconds_bucket",
        "histogram_quantile(0.9, sum by (le, stage) (rate(leadflow_speed_to_lead_seconds_bucket",
        "leadflow_consumer_lag",
        "leadflow_outbox_backlog",
        "leadflow_outbox_oldest_age_seconds",
        "leadflow_dlq_messages_total",
        "sum by (service, route) (rate(leadflow_http_requests_total",
        "leadflow_http_request_duration_seconds_bucket",
        "sum by (destination, outcome) (rate(leadflow_deliveries_total",
        "leadflow_nurture_emails_total",
        'leadflow_nurture_engagement_total{kind="open"}',
        'leadflow_nurture_engagement_total{kind="click"}',
    ):
        assert needle in queried, needle
