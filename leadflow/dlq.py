"""`leadflow dlq`: list, show and re-drive dead-lettered events."""

from __future__ import annotations

import asyncio
from typing import Annotated

import orjson
import typer
from rich.console import Console
from rich.table import Table

from shared.events.topics import TOPICS, dlq_topic
from shared.kafka.dlq import read_dead_letters, redrive
from shared.settings import Settings

app = typer.Typer(help="Dead-letter topics: list, show, re-drive.", no_args_is_help=True)
console = Console()


def _dlq_name(topic: str) -> str:
    return topic if topic.endswith(".dlq") else dlq_topic(topic)


@app.command("list")
def list_letters(
    topic: Annotated[
        str | None, typer.Argument(help="Topic (or its .dlq); default: every topic.")
    ] = None,
    limit: int = 100,
) -> None:
    """Dead letters with their error, handler and attempt count."""
    settings = Settings()
    table = Table(title="dead letters")
    for column in ("topic", "partition@offset", "event id", "type", "handler", "attempts", "error"):
        table.add_column(column)
    for name in [_dlq_name(topic)] if topic else [dlq_topic(t) for t in TOPICS]:
        for letter in asyncio.run(read_dead_letters(settings, name, limit)):
            table.add_row(
                letter.original_topic,
                f"{letter.partition}@{letter.offset}",
                letter.event_id or "-",
                letter.event_type or "-",
                letter.handler or "-",
                str(letter.attempts),
                (letter.error or "")[:80],
            )
    console.print(table)


@app.command()
def show(topic: str, event_id: str) -> None:
    """One dead letter in full (headers and body)."""
    letters = asyncio.run(read_dead_letters(Settings(), _dlq_name(topic)))
    for letter in letters:
        if letter.event_id == event_id:
            body = orjson.loads(letter.value) if letter.value else None
            console.print_json(orjson.dumps({**letter.summary(), "body": body}).decode())
            return
    console.print(f"no dead letter {event_id} in {_dlq_name(topic)}")
    raise typer.Exit(1)


@app.command("redrive")
def redrive_letters(
    topic: str,
    event_id: Annotated[
        list[str] | None, typer.Option("--event-id", help="Only these events (default: all).")
    ] = None,
) -> None:
    """Publish dead letters back to their topic; handlers that succeed now record them once."""
    settings = Settings()
    letters = asyncio.run(read_dead_letters(settings, _dlq_name(topic), limit=100_000))
    if event_id:
        wanted = set(event_id)
        letters = [letter for letter in letters if letter.event_id in wanted]
    count = asyncio.run(redrive(settings, letters))
    console.print(f"re-drove {count} event(s) to {topic.removesuffix('.dlq')}")
