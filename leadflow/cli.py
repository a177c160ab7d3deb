"""The `leadflow` command."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from leadflow import registry
from shared.app import freeze_heap_once_started
from shared.config import ConfigError, load_config
from shared.settings import SERVICES, Settings

app = typer.Typer(
    help="leadflow: lead capture, scoring, nurture, routing and insights.",
    no_args_is_help=True,
    add_completion=False,
)
topics_app = typer.Typer(help="Kafka topics.", no_args_is_help=True)
config_app = typer.Typer(help="The YAML config file.", no_args_is_help=True)
db_app = typer.Typer(help="Database migrations (for developers of leadflow).", no_args_is_help=True)
app.add_typer(topics_app, name="topics")
app.add_typer(config_app, name="config")
app.add_typer(db_app, name="db")

console = Console()
err = Console(stderr=True)


def _settings(config: Path | None = None) -> Settings:
    settings = Settings()
    if config is not None:
        settings = settings.model_copy(update={"config": config})
    return settings


@app.command()
def up(
    config: Annotated[
        Path | None,
        typer.Option(help="Config file (default: leadflow.yaml, else leadflow.example.yaml)."),
    ] = None,
    port_base: Annotated[int, typer.Option(help="Services listen on base+1 … base+5.")] = 8000,
    broker_port: Annotated[
        int, typer.Option(help="Embedded broker port (0: 9092 if free, else any free port).")
    ] = 0,
    smtp_port: Annotated[int, typer.Option(help="Local SMTP sink port.")] = 1025,
    var_dir: Annotated[Path, typer.Option(help="Where SQLite files, mail and sinks go.")] = Path(
        "var"
    ),
) -> None:
    """Run the whole system on this machine: broker, databases, all five services, sinks."""
    from leadflow.embedded import run_embedded

    raise typer.Exit(
        run_embedded(
            config=config,
            port_base=port_base,
            broker_port=broker_port,
            smtp_port=smtp_port,
            var_dir=var_dir,
        )
    )


@app.command()
def serve(
    service: Annotated[str, typer.Argument(help=f"One of: {', '.join(SERVICES)}")],
    host: Annotated[str | None, typer.Option(help="Bind address (LEADFLOW_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default: the service's).")] = None,
    config: Annotated[Path | None, typer.Option(help="Config file (LEADFLOW_CONFIG).")] = None,
) -> None:
    """Run one service against Kafka and the database named in the environment."""
    import uvicorn

    from shared.logging import configure_logging

    registry.check(service)
    settings = _settings(config)
    configure_logging(service, settings.log_level, settings.log_format)
    try:
        application = registry.app_factory(service)(settings)
    except ConfigError as exc:
        err.print(f"[red]config error[/red]\n{exc}")
        raise typer.Exit(2) from None
    freeze_heap_once_started(application)
    uvicorn.run(
        application,
        host=host or settings.host,
        port=port or settings.port_of(service),
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=15,
    )


@app.command()
def migrate(
    services: Annotated[
        list[str] | None, typer.Argument(help="Services to migrate (default: all).")
    ] = None,
) -> None:
    """Create or upgrade every service's tables (own SQLite file / own PostgreSQL schema)."""
    settings = _settings()
    for name in services or SERVICES:
        registry.check(name)
        asyncio.run(registry.migrate(settings, name))
        console.print(f"migrated [bold]{name}[/bold]")


@topics_app.command("create")
def topics_create() -> None:
    """Create leadflow's topics and their dead-letter topics (existing ones are kept)."""
    from shared.kafka.client import create_topics

    created = asyncio.run(create_topics(_settings()))
    console.print(f"created {len(created)} topic(s): {', '.join(created) or '(all existed)'}")


@config_app.command("check")
def config_check(
    path: Annotated[
        Path | None, typer.Argument(help="Config file (default: LEADFLOW_CONFIG or leadflow.yaml).")
    ] = None,
) -> None:
    """Validate the config file; every mistake is printed with its file and line."""
    target = path or _settings().config
    problems = []
    try:
        raw = load_config(target)
    except ConfigError as exc:
        problems = exc.problems
    else:
        for name in SERVICES:
            try:
                registry.config_loader(name)(raw)
            except ConfigError as exc:
                problems.extend(p for p in exc.problems if p not in problems)
    if problems:
        for problem in problems:
            err.print(str(problem), markup=False, highlight=False)
        err.print(f"[red]{len(problems)} problem(s)[/red] in {target}")
        raise typer.Exit(1)
    console.print(f"[green]ok[/green] {target}")


@db_app.command("revision")
def db_revision(service: str, message: Annotated[str, typer.Option("-m", "--message")]) -> None:
    """Autogenerate a migration for SERVICE from its tables."""
    import shared.db
    from shared.db.engine import Database
    from shared.db.migrate import revision, upgrade

    registry.check(service)
    target = registry.migrations_dir(service)
    template = Path(shared.db.__file__).parent / "alembic_template" / "script.py.mako"

    async def run(tmp: str) -> None:
        db = Database(f"sqlite+aiosqlite:///{tmp}/rev.db", service=service)
        try:
            await upgrade(db, target)
            await revision(db, target, message)
        finally:
            await db.dispose()

    shutil.copy(template, target / "script.py.mako")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            asyncio.run(run(tmp))
    finally:
        os.unlink(target / "script.py.mako")


def _mount_service_commands() -> None:
    """Each service's admin commands, from its own `services/<name>/cli.py`."""
    import importlib

    for name in SERVICES:
        module = importlib.import_module(f"services.{name}.cli")
        # A service may name its command group (insights → `leadflow report`).
        app.add_typer(module.app, name=getattr(module, "COMMAND_NAME", name))


_mount_service_commands()

from leadflow.dlq import app as dlq_app  # noqa: E402

app.add_typer(dlq_app, name="dlq")

if __name__ == "__main__":
    app()
