"""`leadflow router deliveries list | show | redrive` against a real router database."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import httpx
from typer.testing import CliRunner, Result

from leadflow.cli import app
from services.router import store
from services.router.delivery import DeliveryWorker
from services.router.destinations import build_destinations
from services.router.settings import RoutingConfig
from tests.integration.router.support import route, router_uows, scored

T0 = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)


async def test_failed_deliveries_are_listed_and_redriven(settings_factory, tmp_path, monkeypatch):
    settings = settings_factory()
    config = RoutingConfig.model_validate(
        {
            "reps": {"a": {}},
            "rules": [{"id": "all", "reps": ["a"], "destinations": ["hook"]}],
            "destinations": {"hook": {"type": "webhook", "url": "http://127.0.0.1:9/down"}},
            "delivery": {"max_attempts": 1},
        }
    )
    lead = scored()
    async with router_uows(settings) as uows, httpx.AsyncClient() as client:
        worker = DeliveryWorker(
            uows, config, build_destinations(config, client), lambda a: a, lambda: T0
        )
        await route(uows, config, lead, T0 - timedelta(seconds=1))
        await worker.run_once()
        async with uows() as uow:
            (failed,) = await store.list_deliveries(uow.session, status=store.FAILED)

    monkeypatch.setenv("LEADFLOW_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("LEADFLOW_VAR_DIR", str(settings.var_dir))
    runner = CliRunner()

    async def leadflow(*args: str) -> Result:
        # The command runs its own event loop, as it does in a terminal.
        return await asyncio.to_thread(runner.invoke, app, list(args), env={"COLUMNS": "200"})

    listed = await leadflow("router", "deliveries", "list")
    shown = await leadflow("router", "deliveries", "show", failed.delivery_id)
    redriven = await leadflow("router", "deliveries", "redrive", failed.delivery_id)
    again = await leadflow("router", "deliveries", "redrive", failed.delivery_id)
    bad = await leadflow("router", "deliveries", "list", "--status", "lost")

    assert listed.exit_code == 0, listed.output
    assert failed.delivery_id in listed.output and "hook" in listed.output
    assert shown.exit_code == 0 and '"status": "failed"' in shown.output
    assert redriven.exit_code == 0 and "re-drove 1 delivery" in redriven.output
    assert again.exit_code == 1 and "not failed" in again.output
    assert bad.exit_code == 2
    async with router_uows(settings) as uows, uows() as uow:
        row = await store.get_delivery(uow.session, failed.delivery_id)
    assert (row.status, row.attempts, row.redrives) == (store.PENDING, 0, 1)
