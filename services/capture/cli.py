"""`leadflow keys …`: API keys for lead vendors and server-to-server intake.

A command is a door like any other: it builds capture's `CreateApiKey` and hands it
to capture's bus (one unit of work, one commit).
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import typer
from rich.console import Console

from services.capture import messagebus
from services.capture.commands import CreateApiKey
from services.capture.domain import parse_cost
from shared.db.engine import Database
from shared.settings import Settings

# The command group's name under `leadflow` (capture's admin commands are its keys).
COMMAND_NAME = "keys"

app = typer.Typer(
    help="API keys for lead vendors and server-to-server intake.", no_args_is_help=True
)
console = Console()


def _handle(message: Any) -> Any:
    """Hand `message` to capture's bus on the database named in the environment."""

    async def main() -> Any:
        settings = Settings()
        db = Database(
            settings.database_url_for("capture"),
            service="capture",
            schema=settings.schema_for("capture"),
        )
        try:
            return await messagebus.bus(db, source="leadflow/cli").handle(message)
        finally:
            await db.dispose()

    return asyncio.run(main())


@app.command("create")
def create(
    name: Annotated[str, typer.Option(help="Who the key is for.")],
    source: Annotated[
        str,
        typer.Option(
            help="The lead source it reports as (channel rules can match utm_source=<source>)."
        ),
    ],
    cost: Annotated[
        str | None, typer.Option(help="Cost per lead, e.g. 12.50 (up to 4 decimals).")
    ] = None,
) -> None:
    """Issue an API key for `POST /v1/leads` and `/v1/erasure`; it is shown once."""
    try:
        cost_per_lead = parse_cost(cost) if cost is not None else None
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="'--cost'") from None
    key = _handle(CreateApiKey(name=name, source=source, cost_per_lead=cost_per_lead))
    console.print(key, markup=False, highlight=False, soft_wrap=True)
