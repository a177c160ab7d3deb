"""`leadflow report channels` against a listening insights service, and with --direct."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from typer.testing import CliRunner

from leadflow import registry
from leadflow.cli import app as cli
from leadflow.processes import free_port
from tests.conftest import eventually, migrate_service
from tests.integration.insights.campaign import (
    CONFIG_YAML,
    EXPECTED_CHANNELS,
    EXPECTED_TOTALS,
    POSTED_SPEND,
    SINCE,
    UNTIL,
    build_campaign,
)
from tests.integration.insights.test_campaign_report import publish

pytestmark = pytest.mark.broker


async def test_report_channels_over_http_and_direct(
    broker: Any, settings_factory: Any, tmp_path: Path
) -> None:
    config = tmp_path / "leadflow.yaml"
    config.write_text(CONFIG_YAML)
    settings = settings_factory(
        "sqlite", kafka_bootstrap=broker.bootstrap, config=config, env="development"
    )
    await migrate_service(settings, "insights")
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            registry.app_factory("insights")(settings),
            host="127.0.0.1",
            port=port,
            log_config=None,
            access_log=False,
        )
    )
    serving = asyncio.create_task(server.serve())
    url = f"http://127.0.0.1:{port}"
    runner = CliRunner()
    window = ["--since", SINCE, "--until", UNTIL]

    def report(*args: str, env: dict[str, str] | None = None) -> Any:
        return runner.invoke(cli, ["report", "channels", *args], env=env, catch_exceptions=False)

    try:
        await eventually(lambda: server.started, 10)
        for channel, body in POSTED_SPEND:  # open without a token in development
            result = await asyncio.to_thread(
                lambda c=channel, b=body: __import__("httpx").post(
                    f"{url}/v1/channels/{c}/spend", json=b, trust_env=False
                )
            )
            assert result.status_code == 200, result.text
        await publish(broker.bootstrap, build_campaign().envelopes)

        async def as_json() -> Any:
            result = await asyncio.to_thread(report, *window, "--format", "json", "--url", url)
            assert result.exit_code == 0, result.output
            data = json.loads(result.stdout)
            return data if data["totals"] == EXPECTED_TOTALS else None

        data = await eventually(as_json, 20)
        assert data["channels"] == EXPECTED_CHANNELS

        table = await asyncio.to_thread(report, *window, "--url", url, env={"COLUMNS": "200"})
        assert table.exit_code == 0, table.output
        lines = table.stdout.splitlines()
        spend = next(line for line in lines if "Spend" in line and "per" not in line)
        cells = [cell.strip() for cell in spend.split("│")[2:7]]
        assert cells == ["513.58", "1000.00", "800.00", "25.00", "2338.58"]
        per_sales_ready = next(line for line in lines if "Cost per sales-ready" in line)
        assert "500.00" in per_sales_ready and "25.00" in per_sales_ready
        assert "Cheapest sales-ready lead: vendor_x at USD 25.00" in table.stdout

        as_csv = await asyncio.to_thread(report, *window, "--format", "csv", "--url", url)
        rows = list(csv.DictReader(io.StringIO(as_csv.stdout)))
        assert [r["cost_per_lead"] for r in rows] == ["171.19", "250.00", "800.00", "12.50"]

        bad = await asyncio.to_thread(report, "--since", "yesterday-ish", "--url", url)
        assert bad.exit_code == 2
        assert "since" in bad.stderr

        env = {
            "LEADFLOW_DATABASE_URL": settings.database_url,
            "LEADFLOW_CONFIG": str(config),
        }
        direct = await asyncio.to_thread(report, *window, "--direct", "--format", "json", env=env)
        assert direct.exit_code == 0, direct.output
        assert json.loads(direct.stdout) == data
        direct_csv = await asyncio.to_thread(
            report, *window, "--direct", "--format", "csv", env=env
        )
        assert direct_csv.stdout == as_csv.stdout
    finally:
        server.should_exit = True
        await serving

    down = await asyncio.to_thread(report, "--url", url)
    assert down.exit_code == 1
    assert "not reachable" in down.stderr
