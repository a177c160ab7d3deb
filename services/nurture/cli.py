"""`leadflow nurture …`: preview a step, list and re-drive emails, lift a suppression.

These read the nurture database named by LEADFLOW_DATABASE_URL; a running
nurture picks a re-driven email up within its poll interval.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from services.nurture import queries, store
from services.nurture import settings as nurture_settings
from services.nurture.commands import RedriveSend, Unsuppress
from services.nurture.messagebus import operator_bus
from services.nurture.rendering import (
    SAMPLE_LEAD,
    Templates,
    Tracking,
    build_message,
    message_id_for,
    to_bytes,
)
from shared.cli import Nouns, redrive_failed, run_with_bus, status_filter, status_option
from shared.config import ConfigError, load_config
from shared.messagebus import MessageBus
from shared.settings import Settings

T = TypeVar("T")

app = typer.Typer(
    help="Nurture: preview emails, the send queue, suppressions.", no_args_is_help=True
)
sends_app = typer.Typer(help="Emails in the send queue: list, re-drive.", no_args_is_help=True)
suppressions_app = typer.Typer(help="Addresses never emailed again.", no_args_is_help=True)
app.add_typer(sends_app, name="sends")
app.add_typer(suppressions_app, name="suppressions")
console = Console()
REDRIVE_NOUNS = Nouns("send", "email", "emails")
err = Console(stderr=True)
STATUSES = (
    store.SCHEDULED,
    store.SENDING,
    store.SENT,
    store.FAILED,
    store.CANCELLED,
    store.SUPPRESSED,
)


def _run(work: Callable[[MessageBus], Awaitable[T]]) -> T:
    """Run `work` with the bus of the nurture database named by the environment."""
    return run_with_bus("nurture", store.outbox, store.inbox, operator_bus, work)


@app.command()
def preview(
    sequence: Annotated[str, typer.Argument(help="Sequence id.")],
    step: Annotated[int, typer.Option(help="Step number (1 is the first).")] = 1,
    out: Annotated[
        Path | None,
        typer.Option(help="Write the message to this .eml file (open it in a mail app)."),
    ] = None,
    config: Annotated[Path | None, typer.Option(help="Config file (LEADFLOW_CONFIG).")] = None,
) -> None:
    """Render a step for a sample lead: subject, text part, and the whole message with --out."""
    settings = Settings()
    try:
        nurture = nurture_settings.load(load_config(config or settings.config))
    except ConfigError as exc:
        err.print(str(exc), markup=False, highlight=False)
        raise typer.Exit(2) from None
    chosen = nurture.sequences.get(sequence)
    if chosen is None:
        raise typer.BadParameter(
            f"no sequence {sequence!r} (one of {', '.join(nurture.sequences) or 'none'})",
            param_hint="SEQUENCE",
        )
    if not 1 <= step <= len(chosen.steps):
        raise typer.BadParameter(
            f"the sequence has steps 1 to {len(chosen.steps)}", param_hint="--step"
        )
    base = settings.public_base_of("nurture", nurture.public_url)
    tracking = Tracking(base, settings.secret_key.get_secret_value())
    send_id = uuid.uuid4().hex
    rendered = Templates(nurture).render_step(
        sequence, step, SAMPLE_LEAD, send_id=send_id, tracking=tracking
    )
    console.print(f"Subject: {rendered.subject}\n", markup=False, highlight=False)
    console.print(rendered.text, markup=False, highlight=False)
    if out is not None:
        message = build_message(
            nurture,
            rendered,
            to_email=SAMPLE_LEAD["email"],
            to_name=SAMPLE_LEAD["full_name"],
            message_id=message_id_for(nurture, send_id),
        )
        out.write_bytes(to_bytes(message))
        console.print(f"wrote {out}", markup=False, highlight=False)


@sends_app.command("list")
def list_sends(
    status: Annotated[str, status_option(STATUSES)] = store.FAILED,
    lead_id: Annotated[str | None, typer.Option(help="Only this lead.")] = None,
    limit: int = 100,
) -> None:
    """Emails (by default the failed ones), newest first."""
    only = status_filter(status, STATUSES)

    async def work(bus: MessageBus) -> list[Any]:
        return await queries.list_sends(bus.uow_factory, only, lead_id, limit)

    table = Table(title=f"emails ({status})")
    for column in ("send id", "lead id", "sequence", "step", "status", "attempts", "last error"):
        table.add_column(column)
    for row in _run(work):
        table.add_row(
            row.send_id,
            row.lead_id,
            row.sequence_id or "(confirmation)",
            str(row.step or ""),
            row.status,
            str(row.attempts),
            (row.last_error or "")[:80],
        )
    console.print(table)


@sends_app.command("redrive")
def redrive(
    send_ids: Annotated[list[str] | None, typer.Argument(help="Failed emails.")] = None,
    all_failed: Annotated[bool, typer.Option("--all-failed", help="Every failed one.")] = False,
) -> None:
    """Send failed emails again with a fresh attempt budget; their sequences resume."""

    async def failed(bus: MessageBus) -> list[str]:
        rows = await queries.list_sends(bus.uow_factory, store.FAILED, None, 100_000)
        return [row.send_id for row in rows]

    redrive_failed(_run, send_ids, all_failed, failed, RedriveSend, REDRIVE_NOUNS)


@suppressions_app.command("remove")
def suppressions_remove(
    email: Annotated[str, typer.Argument(help="The address, as the person gave it.")],
) -> None:
    """Lift an unsubscribe or bounce, at the person's own request only."""

    async def work(bus: MessageBus) -> bool:
        return await bus.handle(Unsuppress(email))  # type: ignore[no-any-return]

    if _run(work):
        console.print("removed from the suppression list")
    else:
        console.print("that address was not on the suppression list")
        raise typer.Exit(1)
