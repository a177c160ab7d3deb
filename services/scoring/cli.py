"""`leadflow scoring …`: the model's version, and replay after a model change.

Replay folds every lead's logged events again under the model in the config
file and publishes `lead.scored` only for leads whose grade or sales-readiness
changed (through scoring's outbox: the running service's relay, or this
command before it exits, sends them to Kafka).
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from services.scoring import messagebus, store, views
from services.scoring.commands import ReplayNextPage
from services.scoring.model import RuleModel
from services.scoring.settings import load
from shared.clock import utc_now
from shared.config import ConfigError, load_config
from shared.db.engine import Database
from shared.db.uow import UnitOfWork
from shared.kafka.client import make_producer
from shared.kafka.outbox import OutboxRelay
from shared.messagebus import MessageBus
from shared.settings import Settings

COMMAND_NAME = "scoring"
SERVICE = "scoring"

app = typer.Typer(help="Scoring: the model's version, replay after a change.", no_args_is_help=True)
console = Console()
err = Console(stderr=True)

ConfigOption = Annotated[
    Path | None, typer.Option(help="Config file (default: LEADFLOW_CONFIG or leadflow.yaml).")
]


def _settings(config: Path | None) -> Settings:
    settings = Settings()
    return settings.model_copy(update={"config": config}) if config else settings


def _model(settings: Settings) -> RuleModel:
    try:
        return RuleModel(load(load_config(settings.config)))
    except ConfigError as exc:
        err.print(f"[red]config error[/red]\n{exc}", highlight=False)
        raise typer.Exit(2) from None


@app.command()
def version(config: ConfigOption = None) -> None:
    """Print the version (hash) of the scoring model in the config file."""
    console.print(_model(_settings(config)).version, highlight=False)


@app.command()
def replay(
    config: ConfigOption = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Count what would change; write nothing.")
    ] = False,
    page_size: Annotated[int, typer.Option(min=1, max=5000, help="Leads per transaction.")] = 200,
    publish_timeout: Annotated[
        float, typer.Option(help="Seconds to spend sending the new scores to Kafka at the end.")
    ] = 30.0,
) -> None:
    """Re-score every lead from its stored events under the current model; publish
    `lead.scored` only for leads whose grade or sales-readiness changed."""
    settings = _settings(config)
    model = _model(settings)
    totals = asyncio.run(_replay(settings, model, dry_run, page_size, publish_timeout))
    rescored, regraded, newly, unsent = totals
    verb = "would change" if dry_run else "changed"
    console.print(
        f"model {model.version}: re-scored {rescored} lead(s); grade or sales-readiness "
        f"{verb} for {regraded}, {newly} newly sales-ready",
        highlight=False,
    )
    if unsent:
        console.print(
            f"[yellow]{unsent} lead.scored event(s) wait in scoring's outbox[/yellow]: "
            "the scoring service sends them when it runs and Kafka is reachable"
        )


async def _replay(
    settings: Settings, model: RuleModel, dry_run: bool, page_size: int, publish_timeout: float
) -> tuple[int, int, int, int]:
    db = Database(
        settings.database_url_for(SERVICE),
        service=SERVICE,
        schema=settings.schema_for(SERVICE),
    )
    run_id = f"replay-{uuid.uuid4()}"
    rescored = regraded = newly = 0
    try:

        def uow() -> UnitOfWork:
            return UnitOfWork(db, store.outbox, store.inbox, source="leadflow/scoring")

        bus = messagebus.bus(uow, model)
        total = await views.count_leads(uow)
        columns = (
            TextColumn("[progress.description]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[regraded]} regraded"),
        )
        with Progress(*columns, console=console, transient=False) as progress:
            task = progress.add_task("re-scoring leads", total=total, regraded=0)
            after = ""
            while True:
                command = ReplayNextPage(
                    after=after, limit=page_size, now=utc_now(), run_id=run_id, dry_run=dry_run
                )
                # A dry run commits nothing.
                page = await (bus.query(command) if dry_run else bus.handle(command))
                if not page.lead_ids:
                    break
                after = page.lead_ids[-1]
                rescored += page.rescored
                regraded += page.regraded
                newly += page.newly_sales_ready
                progress.update(task, advance=len(page.lead_ids), regraded=regraded)
        unsent = 0 if dry_run else await _drain_outbox(settings, db, bus, publish_timeout)
        return rescored, regraded, newly, unsent
    finally:
        await db.dispose()


async def _drain_outbox(settings: Settings, db: Database, bus: MessageBus, timeout: float) -> int:
    """Send the outbox to Kafka (as the service's relay would); returns what is left."""
    relay = OutboxRelay(
        db,
        store.outbox,
        lambda: make_producer(settings, client_id="leadflow-scoring-replay"),
        service=SERVICE,
        publish_timeout=min(timeout, 15.0),
    )
    try:
        async with asyncio.timeout(timeout):
            while await relay.publish_batch():
                pass
    except Exception as exc:
        err.print(f"could not reach Kafka ({type(exc).__name__})", highlight=False)
    finally:
        if relay.producer is not None:
            await relay.producer.stop()
    return await views.count_unsent(bus.uow_factory)
