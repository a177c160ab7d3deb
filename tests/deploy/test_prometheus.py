"""Prometheus: the config and alert rules load, every alert is unit-tested and documented."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy._support import (
    DEPLOY,
    ROOT,
    exposed_metric_names,
    grafana_to_promql,
    markdown_anchors,
    metric_names_in,
    run,
    tool,
)

PROMETHEUS = DEPLOY / "prometheus"
ALERTS = PROMETHEUS / "alerts.yml"
ALERTS_TEST = PROMETHEUS / "alerts_test.yml"
CONFIG = PROMETHEUS / "prometheus.yml"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "leadflow.json"
OPERATIONS = ROOT / "docs" / "operations.md"


def alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def test_promtool_accepts_the_alert_rules() -> None:
    done = run(tool("promtool"), "check", "rules", str(ALERTS))
    assert done.returncode == 0, done.stdout + done.stderr


def test_promtool_unit_tests_of_the_alerts_pass() -> None:
    done = run(tool("promtool"), "test", "rules", str(ALERTS_TEST))
    assert done.returncode == 0, done.stdout + done.stderr


def test_promtool_accepts_the_compose_prometheus_config() -> None:
    done = run(tool("promtool"), "check", "config", str(CONFIG))
    assert done.returncode == 0, done.stdout + done.stderr


def test_prometheus_config_scrapes_every_service_and_loads_the_rules() -> None:
    config = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))
    assert config["rule_files"] == ["alerts.yml"]
    targets = {
        job["job_name"]: [t for sc in job["static_configs"] for t in sc["targets"]]
        for job in config["scrape_configs"]
    }
    ports = {"capture": 8001, "scoring": 8002, "nurture": 8003, "router": 8004, "insights": 8005}
    for service, port in ports.items():
        assert targets.get(f"leadflow-{service}") == [f"{service}:{port}"], service


def test_every_alert_has_severity_summary_description_and_runbook() -> None:
    anchors = markdown_anchors(OPERATIONS)
    names = [rule["alert"] for rule in alert_rules()]
    assert len(names) == len(set(names)), "duplicate alert names"
    for rule in alert_rules():
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}, rule["alert"]
        annotations = rule["annotations"]
        assert annotations["summary"].strip() and annotations["description"].strip()
        runbook = annotations["runbook_url"]
        page, _, anchor = runbook.partition("#")
        assert page == "docs/operations.md", runbook
        assert anchor in anchors, f"{rule['alert']}: no heading for #{anchor} in {OPERATIONS}"


def test_the_alerts_cover_the_operational_risks() -> None:
    expressions = {rule["alert"]: rule["expr"] for rule in alert_rules()}
    uses = {
        metric: [name for name, expr in expressions.items() if metric in metric_names_in(expr)]
        for metric in (
            "up",
            "leadflow_consumer_lag",
            "leadflow_outbox_oldest_age_seconds",
            "leadflow_dlq_messages_total",
            "leadflow_deliveries_total",
            "leadflow_sla_breaches_total",
            "leadflow_http_requests_total",
            "leadflow_leads_captured_total",
            "leadflow_webhook_retrievals_pending",
        )
    }
    missing = [metric for metric, alerts in uses.items() if not alerts]
    assert not missing, f"no alert watches {missing}"
    assert 'outcome="failed"' in expressions[uses["leadflow_deliveries_total"][0]]
    capture_errors = expressions[uses["leadflow_http_requests_total"][0]]
    assert 'service="capture"' in capture_errors and 'status=~"5.."' in capture_errors


def test_alert_expressions_use_only_declared_metrics() -> None:
    known = exposed_metric_names()
    for rule in alert_rules():
        unknown = metric_names_in(rule["expr"]) - known
        assert not unknown, f"{rule['alert']} uses metrics not in shared/metrics.py: {unknown}"


def test_every_alert_is_unit_tested_firing_and_silent() -> None:
    tests = yaml.safe_load(ALERTS_TEST.read_text(encoding="utf-8"))
    assert tests["rule_files"] == ["alerts.yml"]
    fires, silent = set(), set()
    for case in tests["tests"]:
        for check in case.get("alert_rule_test", []):
            (fires if check.get("exp_alerts") else silent).add(check["alertname"])
    names = {rule["alert"] for rule in alert_rules()}
    assert names - fires == set(), "alerts never shown firing"
    assert names - silent == set(), "alerts never shown staying silent"


def test_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    """promtool parses every dashboard query, written as a recording rule."""
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    rules = [
        {"record": f"dashboard:query:{i}", "expr": grafana_to_promql(target["expr"])}
        for i, target in enumerate(
            t for panel in dashboard["panels"] for t in panel.get("targets", [])
        )
    ]
    assert rules
    path = tmp_path / "dashboard_queries.yml"
    path.write_text(
        yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}), encoding="utf-8"
    )
    done = run(tool("promtool"), "check", "rules", str(path))
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        (
            'sum by (le, stage) (rate(leadflow_speed_to_lead_seconds_bucket{stage="x"}[5m]))',
            {"leadflow_speed_to_lead_seconds_bucket"},
        ),
        ('up{job=~"leadflow-.+"} == 0', {"up"}),
        ("a_total / on (x) group_left (y) b offset 1w > 0.5 unless c", {"a_total", "b", "c"}),
        ("histogram_quantile(0.9, x_bucket) > bool 1e3", {"x_bucket"}),
    ],
)
def test_metric_name_extraction(expr: str, expected: set[str]) -> None:
    assert metric_names_in(expr) == expected
