"""`leadflow router …`: the delivery queue (list, show, re-drive) from the command line.

Dead letters of Kafka topics have their own command (`leadflow dlq`); this one
reads the router's database. A re-driven delivery is picked up by a running
router within its poll interval.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

import orjson
import typer
from rich.console import Console
from rich.table import Table

from services.router import messagebus, queries, store
from services.router.commands import RedriveDelivery
from shared.cli import Nouns, redrive_failed, run_with_bus, status_filter, status_option
from shared.messagebus import MessageBus

T = TypeVar("T")

app = typer.Typer(help="The router: its delivery queue.", no_args_is_help=True)
deliveries_app = typer.Typer(help="Deliveries to CRMs and reps: list, show, re-drive.")
app.add_typer(deliveries_app, name="deliveries", no_args_is_help=True)
console = Console()
REDRIVE_NOUNS = Nouns("delivery", "delivery", "deliveries")
STATUSES = (store.PENDING, store.DELIVERED, store.FAILED, store.CANCELLED)


def _run(work: Callable[[MessageBus], Awaitable[T]]) -> T:
    """Run `work` with the router's bus on its database (from the environment)."""
    return run_with_bus("router", store.outbox, store.inbox, messagebus.bus, work)


@deliveries_app.command("list")
def list_deliveries(
    status: Annotated[str, status_option(STATUSES)] = store.FAILED,
    destination: Annotated[str | None, typer.Option(help="Only this destination.")] = None,
    lead_id: Annotated[str | None, typer.Option(help="Only this lead.")] = None,
    limit: int = 100,
) -> None:
    """Deliveries (by default the failed ones), newest first."""
    only = status_filter(status, STATUSES)

    rows: list[Any] = _run(
        lambda bus: queries.list_deliveries(
            bus.uow_factory, status=only, destination=destination, lead_id=lead_id, limit=limit
        )
    )
    table = Table(title=f"deliveries ({status})")
    for column in ("delivery id", "lead id", "destination", "status", "attempts", "last error"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            row.delivery_id,
            row.lead_id,
            row.destination,
            row.status,
            str(row.attempts),
            (row.last_error or "")[:80],
        )
    console.print(table)


@deliveries_app.command()
def show(delivery_id: str) -> None:
    """One delivery in full."""
    row: Any = _run(lambda bus: queries.get_delivery(bus.uow_factory, delivery_id))
    if row is None:
        console.print(f"no delivery {delivery_id}")
        raise typer.Exit(1)
    console.print_json(
        orjson.dumps({str(k): v for k, v in row._asdict().items()}, default=str).decode()
    )


@deliveries_app.command("redrive")
def redrive(
    delivery_ids: Annotated[list[str] | None, typer.Argument(help="Failed deliveries.")] = None,
    all_failed: Annotated[bool, typer.Option("--all-failed", help="Every failed one.")] = False,
    destination: Annotated[
        str | None, typer.Option(help="With --all-failed: only this destination.")
    ] = None,
) -> None:
    """Queue failed deliveries again with a fresh attempt budget (after fixing the config)."""

    async def failed(bus: MessageBus) -> list[str]:
        rows = await queries.list_deliveries(
            bus.uow_factory, status=store.FAILED, destination=destination, limit=100_000
        )
        return [row.delivery_id for row in rows]

    redrive_failed(_run, delivery_ids, all_failed, failed, RedriveDelivery, REDRIVE_NOUNS)
