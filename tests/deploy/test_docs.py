"""docs/metrics.md and docs/operations.md stay in step with the code and the deploy files."""

from __future__ import annotations

import re

import pytest
import yaml

from tests.deploy._support import DEPLOY, ROOT, markdown_anchors, metrics_catalog

METRICS_DOC = ROOT / "docs" / "metrics.md"
OPERATIONS = ROOT / "docs" / "operations.md"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"


def catalog_rows() -> dict[str, str]:
    """Rows of the catalog tables, by the metric name in their first cell."""
    rows = {}
    for line in METRICS_DOC.read_text(encoding="utf-8").splitlines():
        if match := re.match(r"\|\s*`(leadflow_\w+)`\s*\|", line):
            rows[match.group(1)] = line
    return rows


@pytest.mark.parametrize("metric", sorted(metrics_catalog()))
def test_metrics_catalog_documents_every_metric(metric: str) -> None:
    declared = metrics_catalog()[metric]
    row = catalog_rows().get(declared.main_name)
    assert row, f"docs/metrics.md has no row for {declared.main_name}"
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    assert cells[1] == declared.kind, f"{declared.main_name}: type {cells[1]!r}"
    documented = set(re.findall(r"`(\w+)`", cells[2]))
    assert set(declared.labels) <= documented, f"{declared.main_name}: labels {cells[2]!r}"
    assert len(cells) >= 5 and cells[3] and cells[4], f"{declared.main_name}: meaning, emitter"


def test_metrics_catalog_lists_no_undeclared_metric() -> None:
    declared = {metric.main_name for metric in metrics_catalog().values()}
    unknown = set(catalog_rows()) - declared
    assert not unknown, f"documented but not in shared/metrics.py: {unknown}"


def test_operations_has_a_runbook_per_alert() -> None:
    groups = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))["groups"]
    headings = set(re.findall(r"^### (\w+)$", OPERATIONS.read_text(encoding="utf-8"), re.M))
    for rule in (r for g in groups for r in g["rules"] if "alert" in r):
        assert rule["alert"] in headings, f"no runbook section for {rule['alert']}"


def test_links_into_operations_md_resolve() -> None:
    anchors = markdown_anchors(OPERATIONS)
    sources = [*DEPLOY.rglob("*.y*ml"), ROOT / "docker-compose.yml", OPERATIONS, METRICS_DOC]
    for source in sources:
        text = source.read_text(encoding="utf-8")
        for anchor in re.findall(r"operations\.md#([\w-]+)", text):
            assert anchor in anchors, f"{source.relative_to(ROOT)} links to missing #{anchor}"
        if source == OPERATIONS:
            for anchor in re.findall(r"\]\(#([\w-]+)\)", text):
                assert anchor in anchors, f"operations.md links to missing #{anchor}"
